"""Policy loading: validation errors name the file, key path, expectation and value."""

from __future__ import annotations

import datetime as dt
import re
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from bastion.checks import CHECKS
from bastion.config import load_policy, parse_policy
from bastion.exceptions import ConfigError
from bastion.findings import Severity


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bastion.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_starter_template_is_a_valid_policy() -> None:
    text = resources.files("bastion").joinpath("templates/bastion.yaml").read_text("utf-8")
    policy = parse_policy(yaml.safe_load(text), source="bastion.yaml")
    assert policy.spec.gate.fail_on is Severity.MEDIUM
    assert policy.spec.report.allow_raw_rows is False
    assert policy.spec.data.target == "label"


def test_the_issue_example_message() -> None:
    data = {"checks": {"fairness": {"demographic_parity": {"max_difference": "high"}}}}
    with pytest.raises(ConfigError) as info:
        parse_policy(data, source="bastion.yaml")
    assert str(info.value) == (
        "bastion.yaml: checks.fairness.demographic_parity.max_difference: "
        "expected a number between 0 and 1, got 'high'"
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"projekt": "x"},
            "bastion.yaml: projekt: unknown key; did you mean 'project'? expected one of: "
            "version, project",
        ),
        ({"zzz": 1}, "bastion.yaml: zzz: unknown key; expected one of: version, project"),
        ({"seed": "abc"}, "bastion.yaml: seed: expected an integer >= 0, got 'abc'"),
        ({"gate": {"fail_on": "severe"}}, "gate.fail_on: expected one of info, low, medium"),
        (
            {"checks": {"data": {"zzz": {}}}},
            "checks.data.zzz: unknown check 'zzz'; expected one of:",
        ),
        (
            {"checks": {"data": {"completeness": {"mostly": 1.5}}}},
            "checks.data.completeness.mostly: expected a number between 0 and 1, got 1.5",
        ),
        (
            {"checks": {"data": {"completeness": {"bogus": 1}}}},
            "checks.data.completeness.bogus: unknown key; expected one of: enabled, severity",
        ),
        (
            {"waivers": [{"check": "DQ001", "reason": "r", "owner": "o", "expires": "soon"}]},
            "waivers[0].expires: expected a date (YYYY-MM-DD), got 'soon'",
        ),
        (
            {"waivers": [{"check": "XX999", "reason": "r", "owner": "o", "expires": "2027-01-01"}]},
            "waivers[0].check: unknown check id 'XX999'",
        ),
        ({"waivers": [{"check": "DQ001"}]}, "waivers[0].reason: required key is missing"),
        ({"gate": {"required": ["NOPE1"]}}, "gate.required[0]: unknown check id 'NOPE1'"),
        (
            {"data": {"schem": {}}},
            "data.schem: unknown key; did you mean 'schema'? expected one of:",
        ),
        (
            {"waivers": [{"check": "dq005", "reason": "r", "owner": "o", "expires": "2027-01-01"}]},
            "unknown check id 'dq005'; did you mean 'DQ005'",
        ),
        ({"gate": {"required": ["adv001"]}}, "unknown check id 'adv001'; did you mean 'ADV001'"),
        (
            {"gate": {"required": ["ADV01"]}},
            "gate.required[0]: unknown check id 'ADV01'; did you mean 'ADV001'",
        ),
        (
            {"checks": {"data": {"completenes": {}}}},
            "unknown check 'completenes'; did you mean 'completeness'? expected one of:",
        ),
        (
            {"model": {"remote": {"url": "u", "model_name": "m", "timeout_s": 0}}},
            "model.remote.timeout_s: expected a number > 0, got 0",
        ),
        ([1, 2], "expected a mapping of keys at the top level"),
    ],
)
def test_errors_name_path_expectation_and_value(data: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_policy(data, source="bastion.yaml")
    assert message in str(info.value)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="policy file not found"):
        load_policy(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"bastion.yaml: line 2, column \d+: invalid YAML"):
        load_policy(write(tmp_path, "project: x\n  bad: [unclosed\n"))


def test_paths_resolve_against_the_policy_folder(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, "data:\n  train: data/train.csv\n  target: y\n"))
    assert policy.spec.data.train is not None
    assert policy.resolve(policy.spec.data.train.path) == tmp_path / "data" / "train.csv"


def test_checks_on_by_default_can_be_disabled_and_opt_in_checks_need_their_section() -> None:
    policy = parse_policy({"checks": {"data": {"duplicates": {"enabled": False}}}})
    enabled = {c.id for c in policy.enabled_checks()}
    by_default = {cls.id for cls in CHECKS if cls.enabled_by_default}
    assert enabled == by_default - {"DQ005"}
    opt_in = [cls for cls in CHECKS if not cls.enabled_by_default]
    if opt_in:  # attack checks run only when the policy names them
        cls = opt_in[0]
        named = parse_policy({"checks": {cls.category: {cls.name: None}}})
        assert cls.id in {c.id for c in named.enabled_checks()}


def test_severity_override_and_waiver_parsing() -> None:
    policy = parse_policy(
        {
            "checks": {"data": {"duplicates": {"severity": "critical"}}},
            "waivers": [
                {"check": "DQ005", "reason": "known", "owner": "me", "expires": "2027-01-31"}
            ],
        }
    )
    dup = next(c for c in policy.enabled_checks() if c.id == "DQ005")
    assert dup.effective_severity is Severity.CRITICAL
    assert policy.waivers[0].expires == dt.date(2027, 1, 31)


def test_readme_documents_every_check_and_option() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    rows = {
        line.split("|")[1].strip(): line for line in readme.splitlines() if line.startswith("| ")
    }
    for cls in CHECKS:
        row = rows.get(cls.id, "")
        assert f"`{cls.category}.{cls.name}`" in row, cls.id
        for option in cls.Config.model_fields:
            if option not in ("enabled", "severity"):
                assert f"`{option}` [" in row, f"{cls.id}.{option} missing from README"


def test_policy_model_formats_are_the_loaders() -> None:
    import typing

    from bastion.config import ModelSpec
    from bastion.models.loading import LOADABLE_FORMATS

    declared = set(typing.get_args(ModelSpec.model_fields["format"].annotation))
    assert declared == {"auto", "joblib", *LOADABLE_FORMATS}


def test_starter_template_attack_examples_are_valid_once_uncommented() -> None:
    text = resources.files("bastion").joinpath("templates/bastion.yaml").read_text("utf-8")
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if "Attack pillar is opt-in" in line)
    block = []
    for line in lines[start + 1 :]:
        if not line.startswith("  # "):
            break
        block.append("  " + line[4:])  # "  # robustness:" -> "  robustness:"
    policy = parse_policy(yaml.safe_load("checks:\n" + "\n".join(block)), source="template")
    assert {"ADV001", "EXT001", "PRV001", "PRV002", "POI001", "POI002"} <= {
        c.id for c in policy.enabled_checks()
    }


def test_readme_documents_every_policy_section_key() -> None:
    import re

    from bastion.config import LogInputsSection, PolicyModel, _model_in

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    rows: dict[str, str] = {}
    for line in readme.splitlines():
        cell = re.match(r"^\| (.*?) \| ", line)
        if cell:
            for key in re.findall(r"`([^`]+)`", cell.group(1)):
                rows[key] = line
    for name, field in PolicyModel.model_fields.items():
        section = _model_in(field.annotation)
        if name in rows or name == "checks":  # documented whole, or per check above
            continue
        assert section is not None, f"{name} missing from the README's bastion.yaml reference"
        for sub, info in section.model_fields.items():
            key = f"{name}.{info.alias or sub}"
            assert any(k == key or k.startswith(key + ".") for k in rows), f"{key} missing"
    for sub in LogInputsSection.model_fields:
        assert sub in rows["monitoring.log_inputs"], f"monitoring.log_inputs.{sub} missing"


@pytest.mark.parametrize("word", [True, False])
def test_a_boolean_is_no_number_in_a_check_option(word: bool) -> None:
    """YAML reads yes / no / on / off as booleans, and pydantic took them as 1 and 0:
    ``max_fidelity: yes`` was a limit of 1.0 that nothing fails (a review saw
    ``min_robust_accuracy: true`` read as 1.0). Options that are booleans still take them."""
    for section, option in (
        ({"extraction": {"extraction": {"max_fidelity": word}}}, "max_fidelity"),
        ({"robustness": {"evasion": {"min_robust_accuracy": word}}}, "min_robust_accuracy"),
        ({"robustness": {"evasion": {"n_points": word}}}, "n_points"),
    ):
        with pytest.raises(ConfigError, match=f"{option}: expected a number, got "):
            parse_policy({"checks": section})
    parse_policy({"checks": {"extraction": {"extraction": {"soft_labels": word}}}})
    parse_policy({"checks": {"robustness": {"evasion": {"enabled": word}}}})


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"robustness": {"evasion": {"min_robust_accuracy": "0.5"}}},
         "checks.robustness.evasion: min_robust_accuracy: expected a number, got the text '0.5'"),
        ({"privacy": {"membership": {"max_auc": "0.6"}}}, "max_auc: expected a number"),
        ({"robustness": {"evasion": {"eps_curve": [0.5, "1"]}}},
         "eps_curve: [1]: expected a number, got the text '1'"),
        ({"extraction": {"extraction": {"enabled": "no"}}},
         "enabled: expected true or false, got 'no'"),
        ({"extraction": {"extraction": {"enabled": 0}}}, "enabled: expected true or false, got 0"),
    ],
)  # fmt: skip
def test_numbers_as_text_and_switches_that_are_not_booleans_are_refused(
    section: dict[str, Any], message: str
) -> None:
    """pydantic read "0.5" as 0.5 and "no" or 0 as false: a quoted limit in a policy is a
    slip to show, and ``enabled: "no"`` turned a check off."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_policy({"checks": section})


def test_a_limit_on_a_disabled_check_is_refused() -> None:
    """The limit was dropped without a word and the gate passed (exit 0)."""
    section = {"evasion": {"enabled": False, "min_robust_accuracy": 0.99}}
    expected = r"evasion\.min_robust_accuracy: a gate limit of a disabled check \(ADV001"
    with pytest.raises(ConfigError, match=expected):
        parse_policy({"checks": {"robustness": section}})
    # any check's thresholds, and any option: nothing reads them
    performance = {"performance": {"enabled": False, "min_accuracy": 0.9}}
    with pytest.raises(ConfigError, match=r"performance\.min_accuracy: an option of a disabled"):
        parse_policy({"checks": {"validation": performance}})
    # disabled without a limit, or with the limit turned off, or a default limit: fine
    parse_policy({"checks": {"extraction": {"extraction": {"enabled": False}}}})
    off = {"evasion": {"enabled": False, "min_robust_accuracy": None}}
    parse_policy({"checks": {"robustness": off}})


def test_a_key_given_twice_is_refused_and_merge_keys_still_work(tmp_path: Path) -> None:
    """YAML lets the last of two equal keys win: a hand-merged policy lost its first
    evasion section (limit included), or kept the weaker of two max_auc values."""
    twice = "checks:\n  robustness:\n    evasion: {min_robust_accuracy: 0.9}\n    evasion: {}\n"
    with pytest.raises(ConfigError, match=r"line 4, column 5: .*key 'evasion' appears twice"):
        load_policy(write(tmp_path, twice))
    twice_inline = "checks:\n  privacy:\n    membership: {max_auc: 0.5, max_auc: 0.9}\n"
    with pytest.raises(ConfigError, match="key 'max_auc' appears twice"):
        load_policy(write(tmp_path, twice_inline))
    # a merge key's entries may be overridden beside it: that is what it is for
    merged = (
        "checks:\n  extraction:\n    extraction:\n      <<: {budget: 300, max_fidelity: 0.9}\n"
        "      budget: 400\n"
    )
    configs: Any = {c.id: c.config for c in load_policy(write(tmp_path, merged)).enabled_checks()}
    assert (configs["EXT001"].budget, configs["EXT001"].max_fidelity) == (400, 0.9)


def test_norm_2_as_a_yaml_number_and_budget_curve_checked_at_load(tmp_path: Path) -> None:
    policy = parse_policy({"checks": {"robustness": {"evasion": {"norm": 2}}}})
    configs: Any = {c.id: c.config for c in policy.enabled_checks()}
    assert configs["ADV001"].norm == "2"
    infinite = load_policy(write(tmp_path, "checks:\n  robustness:\n    evasion: {norm: .inf}\n"))
    assert [c.config.norm for c in infinite.enabled_checks() if c.id == "ADV001"] == ["inf"]
    with pytest.raises(ConfigError, match=r"budget_curve\[0\]: expected greater than or equal"):
        parse_policy({"checks": {"extraction": {"extraction": {"budget_curve": [0, 10]}}}})


def test_an_unhashable_key_is_a_yaml_error_and_nested_options_are_checked(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match=r"line 3, column \d+: invalid YAML \(found unhashable"):
        load_policy(write(tmp_path, "checks:\n  privacy:\n    membership: {[a, b]: 1}\n"))
    bootstrap = {"demographic_parity": {"bootstrap": {"confidence": "0.5"}}}
    with pytest.raises(ConfigError, match="bootstrap: confidence: expected a number, got the"):
        parse_policy({"checks": {"fairness": bootstrap}})


def test_booleans_for_numbers_inside_nested_options_and_lists_are_refused() -> None:
    """``bootstrap: {n_resamples: yes}`` was one resample reported as a 95% interval, and
    ``eps_curve: [yes, 0.5]`` a radius of 1.0."""
    bootstrap = {"demographic_parity": {"bootstrap": {"n_resamples": True}}}
    with pytest.raises(ConfigError, match="bootstrap: n_resamples: expected a number, got true"):
        parse_policy({"checks": {"fairness": bootstrap}})
    curve = {"evasion": {"eps_curve": [True, 0.5]}}
    with pytest.raises(ConfigError, match=r"eps_curve: \[0\]: expected a number, got true"):
        parse_policy({"checks": {"robustness": curve}})


def test_a_merged_mapping_that_overrides_its_own_merge_is_no_duplicate(tmp_path: Path) -> None:
    """PyYAML flattens a merged mapping when its parent is flattened: the key it overrides
    then appeared twice to a check made after that."""
    import yaml

    from bastion.config import _UniqueKeyLoader

    # strict overrides what it merges; a later mapping merges strict (the anchor sits deeper
    # than where it is used, so its parent is flattened first)
    text = (
        "defaults:\n  a:\n    b:\n      strict: &strict\n"
        "        <<: {max_auc: 0.6, n_shadows: 4}\n        max_auc: 0.55\n"
        "checks:\n  privacy:\n    membership:\n      <<: *strict\n"
    )
    loaded = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader
    assert loaded["checks"] == yaml.safe_load(text)["checks"]
    assert loaded["checks"]["privacy"]["membership"]["max_auc"] == 0.55


def test_switches_and_numbers_outside_the_checks_are_strict_too() -> None:
    """``model.trust_pickle: "yes"`` or ``1`` loaded pickles, and ``report.allow_raw_rows:
    "on"`` put raw rows in the report: the check options' rule holds everywhere."""
    cases = [
        ({"model": {"path": "m.onnx", "trust_pickle": "yes"}}, "model: trust_pickle: expected"),
        ({"report": {"allow_raw_rows": 1}}, "report: allow_raw_rows: expected true or false"),
        ({"seed": "3"}, "seed: expected a number, got the text '3'"),
    ]
    for data, message in cases:
        with pytest.raises(ConfigError, match=re.escape(message)):
            parse_policy(data)
    parse_policy({"model": {"path": "m.onnx", "trust_pickle": True}, "seed": 3})
