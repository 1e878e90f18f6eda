"""The CLI: exit codes 0/1/2, reports written, and bad input that never leaves a partial report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bastion import __version__
from bastion.cli.main import run


def edit_policy(project: Path, **changes: object) -> Path:
    path = project / "bastion.yaml"
    policy = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        node = policy
        *parents, last = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"bastion {__version__}"
    assert run(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("init", "check", "demo", "data"):
        assert command in out
    assert run(["data", "--help"]) == 0
    assert "validate" in capsys.readouterr().out


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["check", "--fail-on", "severe"]) == 2
    assert run(["no-such-command"]) == 2


def test_init_writes_a_policy_and_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "bastion.yaml"
    assert run(["init", str(target)]) == 0
    assert "version: 1" in target.read_text()
    assert run(["init", str(target)]) == 2
    assert run(["init", str(target), "--force"]) == 0


def test_check_passes_and_writes_every_format(project: Path) -> None:
    out = project / "out"
    code = run(["check", "-c", str(project / "bastion.yaml"), "--out", str(out)])
    assert code in (0, 1)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["junit.xml", "report.html", "report.json", "report.sarif", "summary.md"]
    report = json.loads((out / "report.json").read_text())
    assert report["schema"] == "bastion.report/v1"
    assert (code == 0) is report["verdict"]["passed"]


def test_fail_on_and_format_options(project: Path) -> None:
    # an impossible accuracy bar makes MV001 (high) fail; --fail-on critical lets it through
    policy = edit_policy(project, checks__validation__performance={"min_accuracy": 0.999})
    out = project / "out"
    assert run(["check", "-c", str(policy), "--out", str(out), "-f", "json"]) == 1
    assert [p.name for p in out.iterdir()] == ["report.json"]
    code = run(
        ["check", "-c", str(policy), "--out", str(out), "-f", "json", "--fail-on", "critical"]
    )
    report = json.loads((out / "report.json").read_text())
    failing = {f["check_id"] for f in report["findings"] if f["status"] in ("fail", "error")}
    assert "MV001" in failing
    assert code == (1 if any(r for r in report["verdict"]["reasons"]) else 0)


def test_github_step_summary(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    summary = project / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    # written even when summary.md is not among the requested formats
    run(["check", "-c", str(project / "bastion.yaml"), "--out", str(project / "out"), "-f", "json"])
    assert "breast-cancer-diagnosis" in summary.read_text()


def _break_train_csv(project: Path, content: bytes) -> None:
    (project / "data" / "train.csv").write_bytes(content)


BAD_INPUTS = {
    "missing file": (lambda p: (p / "data" / "train.csv").unlink(), "train.csv: file not found"),
    "empty file": (lambda p: _break_train_csv(p, b""), "train.csv: file is empty"),
    "ragged rows": (
        lambda p: _break_train_csv(p, b"a,b,diagnosis\n1,2,0\n3,4\n"),
        "line 3 has 2 fields",
    ),
    "not utf-8": (
        lambda p: _break_train_csv(p, "a,diagnosis\ncaf\u00e9,1\n".encode("latin-1")),
        "not UTF-8 text",
    ),
    "unknown policy key": (
        lambda p: edit_policy(p, gate__fail_onn="high"),
        "bastion.yaml: gate.fail_onn: unknown key",
    ),
    "wrong policy type": (
        lambda p: edit_policy(p, checks__validation__calibration={"max_ece": "low"}),
        "checks.validation.calibration.max_ece: expected a number",
    ),
    "unknown target": (
        lambda p: edit_policy(p, data__target="outcome"),
        "column 'outcome' not found",
    ),
    "single-group sensitive feature": (
        lambda p: edit_policy(p, data__sensitive_features=["constant_group"]),
        "sensitive feature 'constant_group' has a single group",
    ),
    "pickle model refused": (
        lambda p: (
            # a protocol-0 pickle calling a name outside the allowlist: the scan refuses it
            (p / "m.pkl").write_bytes(b"cbastion_no_such_module\nThing\n)R."),
            edit_policy(p, model={"path": "m.pkl"}),
        ),
        "trust_pickle",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_exits_2_with_a_named_problem_and_no_report(
    case: str, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    breaker, expected = BAD_INPUTS[case]
    if case == "single-group sensitive feature":
        for name in ("train.csv", "test.csv"):
            path = project / "data" / name
            path.write_text(
                "\n".join(
                    line + ("," + ("constant_group" if i == 0 else "A"))
                    for i, line in enumerate(path.read_text().splitlines())
                )
                + "\n"
            )
    breaker(project)
    out = project / "out"
    code = run(["check", "-c", str(project / "bastion.yaml"), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert expected in err
    assert "Traceback" not in err
    assert not out.exists(), "a bad input must not leave a partial report"


def test_console_script_hides_tracebacks_unless_debug(tmp_path: Path) -> None:
    policy = tmp_path / "bastion.yaml"
    policy.write_text("seed: [1\n")
    base = [sys.executable, "-c", "import sys; from bastion.cli.main import run; sys.exit(run())"]
    plain = subprocess.run([*base, "check", "-c", str(policy)], capture_output=True, text=True)
    assert plain.returncode == 2
    assert "invalid YAML" in plain.stderr
    assert "Traceback" not in plain.stderr
    debug = subprocess.run(
        [*base, "--debug", "check", "-c", str(policy)], capture_output=True, text=True
    )
    assert debug.returncode == 2
    assert "Traceback" in debug.stderr


def test_data_profile_and_validate(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = project / "profile.json"
    assert run(["data", "profile", str(project / "data" / "test.csv"), "--json", str(summary)]) == 0
    assert "mean_radius" in capsys.readouterr().out
    assert "mean_radius" in json.loads(summary.read_text())["columns"]
    code = run(
        [
            "data",
            "validate",
            str(project / "data" / "test.csv"),
            "-c",
            str(project / "bastion.yaml"),
        ]
    )
    assert code in (0, 1)
    out = capsys.readouterr().out
    assert "DQ002" in out
    assert "MV001" not in out


def test_check_against_a_remote_oip_endpoint(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gate judges a deployed model through the Open Inference Protocol, token and all."""
    from bastion.gateway.oip import create_oip_app, run_in_thread
    from bastion.models.loading import load_model

    local = load_model(project / "model.onnx")
    monkeypatch.setenv("BASTION_TEST_TOKEN", "s3cret-token")
    app = create_oip_app({"diagnosis": local}, api_token="s3cret-token")
    with run_in_thread(app) as url:
        remote = {"url": url, "model_name": "diagnosis", "token_env": "BASTION_TEST_TOKEN"}
        policy = edit_policy(project, model={"remote": remote, "classes": [0, 1]})
        out = project / "out"
        code = run(["check", "-c", str(policy), "--out", str(out), "-f", "json"])
        report = json.loads((out / "report.json").read_text())
        assert code in (0, 1)
        assert report["model"]["format"] == "remote-oip"
        mv = {f["check_id"]: f for f in report["findings"]}["MV001"]
        assert mv["status"] == "pass"
        assert mv["metrics"]["accuracy"] > 0.9
        monkeypatch.setenv("BASTION_TEST_TOKEN", "wrong-token")
        assert run(["check", "-c", str(policy), "--out", str(project / "out2")]) == 2
        assert not (project / "out2").exists()


def test_trusted_pickle_loads_and_the_report_records_the_override(project: Path) -> None:
    import pickle

    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    train = pd.read_csv(project / "data" / "train.csv")
    X, y = train.drop(columns="diagnosis").to_numpy(), train["diagnosis"]
    # bytes after the pickle make the scan "suspicious" (a custom loader might read them);
    # pickle ignores them, so the file loads on explicit trust and the report says so
    model = pickle.dumps(LogisticRegression(max_iter=5000).fit(X, y))
    (project / "model.pkl").write_bytes(model + b"trailing bytes")
    policy = edit_policy(project, model={"path": "model.pkl", "trust_pickle": True})
    out = project / "out"
    assert run(["check", "-c", str(policy), "--out", str(out), "-f", "json", "-f", "html"]) in (
        0,
        1,
    )
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["format"] == "pickle"
    assert report["model"]["trusted_override"] is True
    assert "trust" in (out / "report.html").read_text().lower()


def test_names_with_brackets_print_literally(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rich markup in the user's names: "radius[/mm]" in a finding crashed the table after
    the reports were written (exit 2 whatever the verdict), "[bold red]" restyled it."""
    from types import SimpleNamespace

    from rich.console import Console

    from bastion.cli._console import findings_table
    from bastion.findings import Severity, Status

    finding = SimpleNamespace(
        check_id="PRV002", subject="model [bold red]x", status=Status.FAIL, waived=False,
        severity=Severity.HIGH, metrics={"advantage": 0.3}, threshold={"max_advantage": 0.1},
        message="The model leaks 'radius[/mm]'.",
    )  # fmt: skip
    report = SimpleNamespace(project="p[/q]", findings=[finding])
    console = Console(record=True, width=200)
    console.print(findings_table(report))  # type: ignore[arg-type]
    text = console.export_text()
    for literal in ("radius[/mm]", "model [bold red]x", "bastion check: p[/q]"):
        assert literal in text
    import pandas as pd

    frame = pd.DataFrame({"radius[/mm]": [1.0, 2.0], "[bold]kind": ["a", "[b]"]})
    frame.to_csv(tmp_path / "odd.csv", index=False)
    assert run(["data", "profile", str(tmp_path / "odd.csv")]) == 0
    out = capsys.readouterr().out
    assert "radius[/mm]" in out
    assert "[bold]kind" in out


def test_a_summary_without_passes_keeps_those_of_the_sections_named() -> None:
    """The demo leaves the Test pillar's passes out of its summary but shows every attack's
    figure: a review saw breast cancer's three passing attacks never reach the screen."""
    from types import SimpleNamespace

    from rich.console import Console

    from bastion.cli._console import findings_table
    from bastion.findings import Severity, Status

    def passed(check_id: str) -> SimpleNamespace:
        return SimpleNamespace(
            check_id=check_id, subject="model", status=Status.PASS, waived=False,
            severity=Severity.HIGH, metrics={"auc": 0.51}, threshold={}, message="ok",
        )  # fmt: skip

    report = SimpleNamespace(project="p", findings=[passed("MV001"), passed("PRV001")])
    console = Console(record=True, width=200)
    table = findings_table(report, show_passed=False, passes_shown_of=("privacy",))  # type: ignore[arg-type]
    console.print(table)
    text = console.export_text()
    assert "PRV001" in text
    assert "MV001" not in text


def test_a_policy_error_a_check_finds_as_it_runs_exits_2(project: Path) -> None:
    """An attribute that is not a column is known only when the check reads the data: it
    was an error finding and exit 1 (a failed gate), where a policy error exits 2."""
    policy = project / "attr.yaml"
    policy.write_text(
        "version: 1\nproject: p\ndata: {train: data/train.csv, test: data/test.csv, "
        "target: diagnosis}\nmodel: {path: model.onnx}\nreport: {formats: [json]}\n"
        "checks:\n  privacy:\n    attribute_inference: {attribute: no_such_column}\n"
    )
    out = project / "out"
    assert run(["check", "-c", str(policy), "-o", str(out), "-f", "json"]) == 2
    report = json.loads((out / "report.json").read_text())
    (finding,) = [f for f in report["findings"] if f["check_id"] == "PRV002"]
    assert finding["status"] == "error"
    assert finding["evidence"] == {"error": "config"}
    assert "no_such_column" in finding["message"]


def test_python_dash_m_bastion_is_the_command() -> None:
    """From a review: ``python -m bastion`` failed (no ``__main__``)."""
    done = subprocess.run(
        [sys.executable, "-m", "bastion", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert __version__ in done.stdout


def test_the_table_shows_the_metric_of_the_limit_crossed() -> None:
    """From a review: POI002, failed on backdoor success, showed ``accuracy_drop`` (within
    its limit), and ADV001 without a limit ``n_points``."""
    from bastion.cli._console import _key_metric

    poisoning = {"accuracy_drop": 0.0175, "backdoor_success_rate": 0.889, "n_poisoned": 20}
    limits = {"max_accuracy_drop": 0.05, "max_backdoor_success": 0.5}
    assert _key_metric(poisoning, limits) == "backdoor_success_rate=0.889"
    assert _key_metric({**poisoning, "accuracy_drop": 0.2}, limits) == "accuracy_drop=0.2"
    within = {**poisoning, "backdoor_success_rate": 0.1}
    assert _key_metric(within, limits) == "accuracy_drop=0.0175"  # the first limit's
    # the backdoor limit judges the lift, not the raw rate its name begins
    lifted = {**poisoning, "backdoor_success_rate": 0.2727, "backdoor_lift": 0.1111}
    assert _key_metric(lifted, {"max_backdoor_success": 0.2}) == "backdoor_lift=0.1111"
    evasion = {"n_points": 171, "clean_accuracy": 0.96, "robust_accuracy": 0.339}
    assert _key_metric(evasion, {"min_robust_accuracy": None}) == "robust_accuracy=0.339"
    assert _key_metric({"n_rows": 5, "psi": 0.3}, {"psi_limit": 0.2}) == "psi=0.3"
    assert _key_metric({"n_rows": 5}, {}) == "n_rows=5"
    # EXT001's query budget is a setting: with max_fidelity off, the headline figure shows
    extraction = {"budget": 100, "queries_used": 100, "fidelity": 0.9708}
    assert _key_metric(extraction, {"max_fidelity": None, "budget": 100}) == "fidelity=0.9708"
    # limits named by the metric's last part (fairness, data quality)
    fairness = {"demographic_parity_difference": 0.06, "demographic_parity_ratio": 0.87}
    limits = {"max_difference": 0.1, "min_ratio": 0.9}
    assert _key_metric(fairness, limits) == "demographic_parity_ratio=0.87"
    duplicates = {"n_rows": 1000, "duplicate_fraction": 0.08}
    assert _key_metric(duplicates, {"max_fraction": 0.05}) == "duplicate_fraction=0.08"
