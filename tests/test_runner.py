"""The gate runner: bad inputs raise before any check, crashing checks become error findings,
raw rows are redacted, and the same seed gives the same report."""

from __future__ import annotations

import dataclasses
import datetime as dt
import sys
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from bastion.checks import CHECKS, Check, CheckContext, Scope
from bastion.config import parse_policy
from bastion.data.dataset import Dataset
from bastion.exceptions import DataError, ModelOutputError
from bastion.findings import Finding, Status
from bastion.models.callable import CallableAdapter
from bastion.models.sklearn import SklearnAdapter
from bastion.report import validate_report_dict
from bastion.runner import load_inputs, run_gate

TODAY = dt.date(2026, 11, 26)


@pytest.fixture(scope="module")
def split() -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = load_breast_cancer(as_frame=True).frame
    frame["group"] = np.where(np.arange(len(frame)) % 3 == 0, "a", "b")
    train, test = train_test_split(frame, test_size=0.3, random_state=0, stratify=frame["target"])
    return train.reset_index(drop=True), test.reset_index(drop=True)


def datasets(split: tuple[pd.DataFrame, pd.DataFrame]) -> tuple[Dataset, Dataset]:
    train, test = split
    kw = {"target": "target", "sensitive": ["group"], "non_features": ["group"]}
    return Dataset.from_frame(train, name="train", **kw), Dataset.from_frame(
        test, name="test", **kw
    )


def fitted(train: Dataset) -> SklearnAdapter:
    model = LogisticRegression(max_iter=5000).fit(train.features.to_numpy(), train.labels)
    return SklearnAdapter(model)


POLICY = {"data": {"target": "target", "sensitive_features": ["group"]}}


def test_full_run_produces_a_valid_report(split: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, test = datasets(split)
    policy = parse_policy(POLICY)
    inputs = load_inputs(policy, train=train, test=test, model=fitted(train), from_policy=False)
    report = run_gate(policy, inputs=inputs, today=TODAY)
    validate_report_dict(report.to_dict())
    ran = {f.check_id for f in report.findings}
    assert {"DQ002", "MV001", "FA001"} <= ran
    assert report.by_status(Status.ERROR) == []
    assert set(report.timings) >= {"load_s", "profile_s", "predict_s", "checks_s", "total_s"}
    assert all(f.duration_s >= 0 for f in report.findings)
    # one set of model queries serves every model check
    assert inputs.model is not None
    assert inputs.model.n_calls == 2


def test_same_seed_same_report(split: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    def once() -> list[dict[str, object]]:
        train, test = datasets(split)
        policy = parse_policy({**POLICY, "seed": 3})
        inputs = load_inputs(policy, train=train, test=test, model=fitted(train), from_policy=False)
        report = run_gate(policy, inputs=inputs, today=TODAY)
        return [{**f.to_dict(), "duration_s": 0} for f in report.findings]

    assert once() == once()


def test_nan_predictions_raise_before_any_report(split: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, test = datasets(split)
    nan_model = CallableAdapter(predict=lambda X: np.full(len(X), np.nan), name="nan-model")
    policy = parse_policy(POLICY)
    inputs = load_inputs(policy, train=train, test=test, model=nan_model, from_policy=False)
    with pytest.raises(ModelOutputError, match=r"nan-model.*NaN"):
        run_gate(policy, inputs=inputs)


def test_wrong_output_shape_raises(split: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, test = datasets(split)
    bad = CallableAdapter(
        predict=lambda X: np.zeros(len(X), dtype=int),
        predict_proba=lambda X: np.full((len(X), 3), 1 / 3),
        classes=[0, 1],
        name="bad-shape",
    )
    policy = parse_policy(POLICY)
    inputs = load_inputs(policy, train=train, test=test, model=bad, from_policy=False)
    with pytest.raises(ModelOutputError, match=r"bad-shape.*shape \(\d+, 3\).*expected \(\d+, 2\)"):
        run_gate(policy, inputs=inputs)


def test_single_group_sensitive_feature_is_a_data_error(
    split: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    train, test = split
    test = test.assign(group="a")
    policy = parse_policy(POLICY)
    kw = {"target": "target", "sensitive": ["group"], "non_features": ["group"]}
    with pytest.raises(DataError, match="sensitive feature 'group' has a single group"):
        load_inputs(
            policy,
            train=Dataset.from_frame(train, name="train", **kw),
            test=Dataset.from_frame(test, name="test", **kw),
            from_policy=False,
        )


class _Crashes(Check):
    id: ClassVar[str] = "ZZ901"
    name: ClassVar[str] = "crashes"
    title: ClassVar[str] = "Always crashes"
    category = "data"
    scope = Scope.DATASET

    def run(self, ctx: CheckContext) -> Finding:
        raise RuntimeError("boom")


class _LeaksRows(Check):
    id: ClassVar[str] = "ZZ902"
    name: ClassVar[str] = "leaks_rows"
    title: ClassVar[str] = "Puts raw rows in its evidence"
    category = "data"
    scope = Scope.DATASET

    def run(self, ctx: CheckContext) -> Finding:
        assert ctx.dataset is not None
        rows = ctx.dataset.frame.head(2).to_dict(orient="records")
        return self.finding(ctx, Status.FAIL, "x", evidence={"samples": rows, "n": 2})


@pytest.fixture
def extra_checks() -> object:
    CHECKS.register(_Crashes)
    CHECKS.register(_LeaksRows)
    yield
    CHECKS._by_id.pop("ZZ901")
    CHECKS._by_id.pop("ZZ902")


@pytest.mark.usefixtures("extra_checks")
@pytest.mark.parametrize("allow", [False, True])
def test_crash_becomes_error_and_rows_are_redacted(
    split: tuple[pd.DataFrame, pd.DataFrame], allow: bool
) -> None:
    train, test = datasets(split)
    policy = parse_policy({**POLICY, "report": {"allow_raw_rows": allow}})
    inputs = load_inputs(policy, train=train, test=test, from_policy=False)
    report = run_gate(policy, inputs=inputs, categories=["data"], today=TODAY)
    crashed = [f for f in report.findings if f.check_id == "ZZ901"]
    assert [f.status for f in crashed] == [Status.ERROR, Status.ERROR]
    assert "RuntimeError: boom" in crashed[0].message
    assert not report.passed  # errors fail closed
    leaky = next(f for f in report.findings if f.check_id == "ZZ902")
    assert ("samples" in leaky.evidence) is allow
    assert leaky.evidence.get("samples_redacted", False) is (not allow)
    assert ('"samples"' in report.to_json()) is allow


def test_model_checks_skip_without_a_model(split: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, test = datasets(split)
    policy = parse_policy({**POLICY, "gate": {"required": ["MV001"]}})
    inputs = load_inputs(policy, train=train, test=test, from_policy=False)
    report = run_gate(policy, inputs=inputs, today=TODAY)
    mv = next(f for f in report.findings if f.check_id == "MV001")
    assert mv.status is Status.SKIPPED
    assert "no model" in mv.message
    assert not report.passed
    assert any("MV001 is required" in r for r in report.verdict.reasons)


def test_probabilities_outside_0_1_raise(split: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, test = datasets(split)
    bad = CallableAdapter(
        predict=lambda X: np.zeros(len(X), dtype=int),
        predict_proba=lambda X: np.tile([1.5, -0.5], (len(X), 1)),
        classes=[0, 1],
        name="scores-not-probabilities",
    )
    policy = parse_policy(POLICY)
    inputs = load_inputs(policy, train=train, test=test, model=bad, from_policy=False)
    with pytest.raises(ModelOutputError, match=r"outside \[0, 1\] \(min -0.5, max 1.5\)"):
        run_gate(policy, inputs=inputs)


def test_check_level_sensitive_feature_is_validated_up_front(
    split: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    train, test = datasets(split)
    policy = parse_policy(
        {**POLICY, "checks": {"fairness": {"demographic_parity": {"sensitive_features": ["x"]}}}}
    )
    with pytest.raises(DataError, match="sensitive feature 'x' not found"):
        load_inputs(policy, train=train, test=test, from_policy=False)


def test_datasets_must_have_different_names(split: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, test = split
    policy = parse_policy(POLICY)
    with pytest.raises(DataError, match="both named 'data'"):
        load_inputs(
            policy,
            train=Dataset.from_frame(train, target="target"),
            test=Dataset.from_frame(test, target="target"),
            from_policy=False,
        )


def test_report_profiles_suppress_rare_category_values(
    split: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    # an email column is a raw row in disguise: no value may reach any report format
    train, test = split
    train = train.assign(email=[f"person{i}@corp.example" for i in range(len(train))])
    test = test.assign(email=[f"other{i}@corp.example" for i in range(len(test))])
    kw = {"target": "target", "non_features": ["email", "group"]}
    policy = parse_policy({"data": {"target": "target"}})
    inputs = load_inputs(
        policy,
        train=Dataset.from_frame(train, name="train", **kw),
        test=Dataset.from_frame(test, name="test", **kw),
        from_policy=False,
    )
    report = run_gate(policy, inputs=inputs, today=TODAY)
    from bastion.reporting.writers import FORMATS, render

    for fmt in FORMATS:
        assert "@corp.example" not in render(report, fmt), fmt
    groups = report.profiles["train"]["columns"]["group"]["top"]
    assert {g["value"] for g in groups} == {"a", "b"}  # common categories stay visible


def test_attack_checks_report_their_progress(split: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    class Bar:
        def __init__(self, total: int) -> None:
            self.details: list[str] = []

        def advance(self, label: str = "") -> None: ...

        def detail(self, label: str) -> None:
            self.details.append(label)

        def close(self) -> None: ...

    bars: list[Bar] = []

    def factory(total: int) -> Bar:
        bars.append(Bar(total))
        return bars[-1]

    train, test = datasets(split)
    policy = parse_policy(
        {**POLICY, "checks": {"privacy": {"membership": {"attack": "threshold"}}}}
    )
    inputs = load_inputs(policy, train=train, test=test, model=fitted(train), from_policy=False)
    run_gate(policy, inputs=inputs, categories=["privacy"], progress=factory, today=TODAY)
    assert any(d.startswith("PRV001 membership: ") and "queries" in d for d in bars[0].details)


def test_attacks_cannot_reach_hosts_other_than_the_endpoint(
    split: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    import socket

    calls = []

    def phoning_home(X: object) -> np.ndarray:
        # a model (or attack code) that tries to send data out once the attack is running
        calls.append(1)
        if len(calls) > 1:
            socket.create_connection(("127.0.0.1", 9), timeout=1)
        return np.zeros(len(X), dtype=int)  # type: ignore[arg-type]

    train, test = datasets(split)
    policy = parse_policy({**POLICY, "checks": {"extraction": {"extraction": {"budget": 50}}}})
    leaky = CallableAdapter(predict=phoning_home, classes=[0, 1], name="leaky")
    inputs = load_inputs(policy, train=train, test=test, from_policy=False)
    inputs.model = leaky
    report = run_gate(policy, inputs=inputs, categories=["extraction"], today=TODAY)
    ext = next(f for f in report.findings if f.check_id == "EXT001")
    assert ext.status is Status.ERROR
    assert "refused during an attack" in ext.message


def test_features_follow_the_order_the_model_names(
    split: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    """A model fitted on a frame, a test file with its columns in another order: the checks
    that hand the model arrays see the model's order (they used to see the file's, and
    reported the accuracy of a scrambled model), and a column the model takes is required."""
    train_frame, test_frame = split
    kw = {"target": "target", "sensitive": ["group"], "non_features": ["group"]}
    train = Dataset.from_frame(train_frame, name="train", **kw)
    features = train.feature_names
    model = SklearnAdapter(
        LogisticRegression(max_iter=5000).fit(train.features, train.labels)  # fitted on names
    )
    reordered = test_frame[["target", *features[::-1], "group"]]
    test = Dataset.from_frame(reordered, name="test", **kw)
    policy = parse_policy(POLICY)
    inputs = load_inputs(policy, train=train, test=test, model=model, from_policy=False)
    assert inputs.test is not None
    assert inputs.test.feature_names == features
    expected = model.estimator.predict(test_frame[features])
    assert np.array_equal(model.predict(inputs.test.features.to_numpy()), expected)
    short = Dataset.from_frame(reordered.drop(columns=[features[3]]), name="test", **kw)
    with pytest.raises(DataError, match=f"takes column '{features[3]}'"):
        load_inputs(policy, train=train, test=short, model=model, from_policy=False)


def test_missing_feature_values_the_model_refuses_are_named(
    split: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    train, test = datasets(split)
    frame = test.frame.copy()
    frame.loc[[0, 5], "mean radius"] = np.nan
    holey = Dataset.from_frame(
        frame, name="test", target="target", sensitive=["group"], non_features=["group"]
    )
    policy = parse_policy(POLICY)
    inputs = load_inputs(policy, train=train, test=holey, model=fitted(train), from_policy=False)
    with pytest.raises(DataError, match=r"refused its missing values, in 'mean radius' \(2 rows\)"):
        run_gate(policy, inputs=inputs, today=TODAY)


def test_text_in_a_numeric_feature_the_model_refuses_is_named(
    split: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    """A stray "F" in a numeric column gave numpy's "could not convert string to float",
    which named neither the file nor the column and read as an internal error."""
    train, test = datasets(split)
    frame = test.frame.copy().astype({"mean radius": object})
    frame.loc[[2, 7, 9], "mean radius"] = "F"
    typo = Dataset.from_frame(
        frame, name="test", target="target", sensitive=["group"], non_features=["group"]
    )
    policy = parse_policy(POLICY)
    inputs = load_inputs(policy, train=train, test=typo, model=fitted(train), from_policy=False)
    with pytest.raises(DataError, match=r"refused text in columns it reads as numbers: "
                                        r"'mean radius' \('F', 3 rows\)"):  # fmt: skip
        run_gate(policy, inputs=inputs, today=TODAY)


def test_a_model_that_encodes_its_own_text_keeps_its_error() -> None:
    """Only a failure to read text as numbers is named as such: a pipeline whose encoder
    meets an unseen category failed with "refused text in columns it reads as numbers",
    naming a value it handles (and every row) instead of the category."""
    from sklearn.compose import make_column_transformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from bastion.models.predictions import predict_dataset

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=60), "color": rng.choice(["red", "blue"], 60)})
    frame["y"] = (frame["x"] > 0).astype(int)
    encode = make_column_transformer((OneHotEncoder(), ["color"]), remainder="passthrough")
    model = make_pipeline(encode, LogisticRegression()).fit(frame[["x", "color"]], frame["y"])
    unseen = frame.copy()
    unseen.loc[4, "color"] = "green"
    data = Dataset.from_frame(unseen, name="test", target="y")
    with pytest.raises(ValueError, match="unknown categories") as info:
        predict_dataset(SklearnAdapter(model), data)
    assert not isinstance(info.value, DataError)


def test_text_in_a_numeric_column_beside_an_encoded_text_column_names_only_the_culprit() -> None:
    """A stray "F" in ``x`` beside a text column the pipeline encodes itself: the message
    named ``color`` too."""
    from sklearn.compose import make_column_transformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from bastion.models.predictions import predict_dataset

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=60), "color": rng.choice(["red", "blue"], 60)})
    frame["y"] = (frame["x"] > 0).astype(int)
    encode = make_column_transformer((OneHotEncoder(), ["color"]), remainder="passthrough")
    model = make_pipeline(encode, LogisticRegression()).fit(frame[["x", "color"]], frame["y"])
    typo = frame.astype({"x": object})
    typo.loc[7, "x"] = "F"
    with pytest.raises(DataError, match=r"as numbers: 'x' \('F', 1 rows\); fix") as info:
        predict_dataset(SklearnAdapter(model), Dataset.from_frame(typo, name="t", target="y"))
    assert "color" not in str(info.value)


def test_labels_that_share_nothing_with_the_model_classes_are_refused(
    split: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    """Text labels against a 0/1 model: every row would count as misclassified and every
    attack figure be empty, under a passing verdict."""
    train, test = datasets(split)
    frame = test.frame.copy()
    frame["target"] = np.where(frame["target"] == 1, "benign", "malignant")
    named = Dataset.from_frame(
        frame, name="test", target="target", sensitive=["group"], non_features=["group"]
    )
    policy = parse_policy(POLICY)
    inputs = load_inputs(policy, train=train, test=named, model=fitted(train), from_policy=False)
    with pytest.raises(DataError, match="share nothing with the classes of model"):
        run_gate(policy, inputs=inputs, today=TODAY)


def test_the_first_query_of_an_attacking_run_is_guarded_too(
    split: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    """The up-front predictions ran before the guard: a model could phone home there."""
    import socket

    outcomes: list[str] = []
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]

    def phoning_home(X: object) -> np.ndarray:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            outcomes.append("connected")
        except PermissionError:
            outcomes.append("refused")
        return np.zeros(len(X), dtype=int)  # type: ignore[arg-type]

    try:
        train, test = datasets(split)
        policy = parse_policy({**POLICY, "checks": {"extraction": {"extraction": {"budget": 50}}}})
        inputs = load_inputs(policy, train=train, test=test, from_policy=False)
        inputs.model = CallableAdapter(predict=phoning_home, classes=[0, 1], name="leaky")
        run_gate(policy, inputs=inputs, categories=["extraction"], today=TODAY)
        assert outcomes
        assert set(outcomes) == {"refused"}  # from the first call on
        outcomes.clear()
        run_gate(policy, inputs=inputs, categories=["data"], today=TODAY)  # no attack
        assert set(outcomes) == {"connected"}
    finally:
        server.close()


def test_an_attack_checks_time_budget_bounds_model_requests(
    split: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    """Inside an attack check, model requests see the check's max_seconds as their deadline
    (a remote endpoint retries no further); outside (the up-front predictions), none."""
    import time

    from bastion.attacks.budget import request_deadline

    seen: list[float | None] = []

    def predict(X: object) -> np.ndarray:
        deadline = request_deadline()
        seen.append(None if deadline is None else deadline - time.monotonic())
        return np.zeros(len(X), dtype=int)  # type: ignore[arg-type]

    train, test = datasets(split)
    policy = parse_policy(
        {**POLICY, "checks": {"extraction": {"extraction": {"budget": 50, "max_seconds": 7}}}}
    )
    inputs = load_inputs(policy, train=train, test=test, from_policy=False)
    inputs.model = CallableAdapter(predict=predict, classes=[0, 1], name="timed")
    run_gate(policy, inputs=inputs, categories=["extraction"], today=TODAY)
    assert seen[0] is None  # the run's up-front predictions
    inside = seen[1:]
    assert inside
    assert all(left is not None and 0 < left <= 7 for left in inside)
    assert request_deadline() is None


def test_loading_the_model_of_an_attacking_run_is_guarded_too(
    split: tuple[pd.DataFrame, pd.DataFrame],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Loading a model runs the user's code (here a ``module:factory``), which ran before the
    network rule: a factory could phone home there, or start a thread that did later (the
    thread was outside the attack's rule, having started before it). A run without attacks
    loads freely."""
    import socket

    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    outcomes = tmp_path / "outcomes.txt"
    # make() phones home at once, and starts a thread that phones home during the attack
    # (the first forward pass after loading): a thread started while loading must stay
    # under the rule once loading is done
    factory = f"""
import socket
import threading
import torch

ATTACKING = threading.Event()
DONE = threading.Event()


def phone(outcomes):
    try:
        socket.create_connection(("127.0.0.1", {port}), timeout=1).close()
        outcome = "connected"
    except PermissionError:
        outcome = "refused"
    with open(outcomes, "a") as fh:
        fh.write(outcome + "\\n")


def later():
    if ATTACKING.wait(60):
        phone({str(outcomes)!r})
    DONE.set()


class Net(torch.nn.Sequential):
    def forward(self, x):
        ATTACKING.set()
        return super().forward(x)


def make():
    phone({str(outcomes)!r})
    ATTACKING.clear()
    DONE.clear()
    threading.Thread(target=later, daemon=True).start()
    return Net(torch.nn.Linear(30, 2))
"""
    (tmp_path / "bastion_phoning_factory.py").write_text(factory)
    monkeypatch.syspath_prepend(str(tmp_path))
    weights = tmp_path / "net.safetensors"
    save_file(torch.nn.Sequential(torch.nn.Linear(30, 2)).state_dict(), weights)
    train, test = split
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    policy = parse_policy(
        {
            "data": {
                "train": {"path": str(tmp_path / "train.csv")},
                "test": {"path": str(tmp_path / "test.csv")},
                "target": "target",
                "non_features": ["group"],
            },
            "model": {
                "path": str(weights),
                "factory": "bastion_phoning_factory:make",
                "classes": [0, 1],
            },
            "checks": {"extraction": {"extraction": {"budget": 50}}},
        }
    )
    try:
        run_gate(policy, categories=iter(["extraction"]), today=TODAY)
        factory_module = sys.modules["bastion_phoning_factory"]
        assert factory_module.DONE.wait(30)
        assert outcomes.read_text().split() == ["refused", "refused"]
        outcomes.write_text("")
        run_gate(policy, categories=["data"], today=TODAY)  # no attack: no rule
        assert factory_module.DONE.wait(30)
        assert outcomes.read_text().split() == ["connected", "connected"]
    finally:
        server.close()


class _Interrupted(_Crashes):
    id: ClassVar[str] = "ZZ903"
    name: ClassVar[str] = "interrupted"
    title: ClassVar[str] = "Ctrl-C lands in it"

    def run(self, ctx: CheckContext) -> Finding:
        raise KeyboardInterrupt


def test_ctrl_c_in_a_check_still_writes_the_report(
    split: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    """A check that cannot stop cleanly on its own (poisoning retraining, say): Ctrl-C ended
    the run with exit 130 and no report."""
    CHECKS.register(_Interrupted)
    try:
        train, test = datasets(split)
        policy = parse_policy(POLICY)
        inputs = load_inputs(policy, train=train, test=test, from_policy=False)
        report = run_gate(policy, inputs=inputs, categories=["data"], today=TODAY)
    finally:
        CHECKS._by_id.pop("ZZ903")
    validate_report_dict(report.to_dict())
    first = next(f for f in report.findings if f.check_id == "ZZ903")
    assert first.status is Status.ERROR
    assert "interrupted (Ctrl-C)" in first.message
    after = report.findings[report.findings.index(first) + 1 :]
    assert after
    assert all(f.status is Status.SKIPPED and "interrupted" in f.message for f in after)
    assert not report.passed


def test_a_model_without_classes_must_answer_with_labels(
    split: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    """A regressor loaded as a model (a pickle): its outputs were taken for classes, and an
    info-only attack run passed with "0 correctly classified"."""
    train, test = datasets(split)
    policy = parse_policy(POLICY)
    inputs = load_inputs(policy, train=train, test=test, from_policy=False)
    inputs.model = CallableAdapter(predict=lambda X: np.full(len(X), 0.37), name="regressor")
    with pytest.raises(ModelOutputError, match=r"predicts fractional values .* a regressor"):
        run_gate(policy, inputs=inputs, today=TODAY)
    inputs.model = CallableAdapter(predict=lambda X: np.full(len(X), 7), name="elsewhere")
    with pytest.raises(ModelOutputError, match="none of its answers"):
        run_gate(policy, inputs=inputs, today=TODAY)
    inputs.model = CallableAdapter(predict=lambda X: np.ones(len(X)), name="floats")  # 1.0
    run_gate(policy, inputs=inputs, today=TODAY)  # whole numbers are labels


def test_legitimate_setups_the_new_input_checks_must_not_refuse(
    split: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    train, test = datasets(split)
    policy = parse_policy(POLICY)
    # a test set of one class that a model without declared classes always misses: a
    # valid, failing model (the answers are labels, just wrong ones)
    ones = Dataset.from_frame(
        test.frame[test.frame["target"] == 1].reset_index(drop=True), name="test", target="target"
    )
    inputs = load_inputs(policy, train=train, test=ones, from_policy=False)
    inputs.model = CallableAdapter(predict=lambda X: np.zeros(len(X), dtype=int), name="zeros")
    run_gate(policy, inputs=inputs, today=TODAY)
    # a model that names its inputs, and a test file with one unused column more
    extra = Dataset.from_frame(
        test.frame.assign(scored_at=1.0),
        name="test",
        target="target",
        sensitive=["group"],
        non_features=["group"],
    )
    named = SklearnAdapter(LogisticRegression(max_iter=5000).fit(train.features, train.labels))
    inputs = load_inputs(policy, train=train, test=extra, model=named, from_policy=False)
    run_gate(policy, inputs=inputs, today=TODAY)


def test_an_attack_that_stops_cleanly_on_ctrl_c_stops_the_run_and_never_passes(
    split: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    """Attacks catch Ctrl-C and return a partial result: the run went on with the next
    checks, and a partial figure could pass the gate."""
    train, test = datasets(split)
    clf = LogisticRegression(max_iter=5000).fit(train.features.to_numpy(), train.labels)
    calls = {"n": 0}

    def predict(X: object) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 4:  # inside the extraction's query loop
            raise KeyboardInterrupt
        return np.asarray(clf.predict(np.asarray(X)))

    checks = {
        "extraction": {"extraction": {"budget": 200, "max_fidelity": 1.0}},
        "privacy": {"attribute_inference": {"attribute": "mean radius"}},
    }
    policy = parse_policy({**POLICY, "checks": checks})
    inputs = load_inputs(policy, train=train, test=test, from_policy=False)
    inputs.model = CallableAdapter(predict=predict, classes=[0, 1], name="m")
    report = run_gate(policy, inputs=inputs, categories=["extraction", "privacy"], today=TODAY)
    ext = next(f for f in report.findings if f.check_id == "EXT001")
    assert ext.status is Status.ERROR
    assert "Interrupted (Ctrl-C): partial result" in ext.message
    prv = next(f for f in report.findings if f.check_id == "PRV002")
    assert prv.status is Status.SKIPPED
    assert "interrupted" in prv.message
    assert not report.passed


def test_only_positional_models_refuse_train_and_test_in_different_column_orders() -> None:
    """An ONNX or torch model gets bare arrays: test columns in another order than the
    training file's would be read scrambled (a named error, tested on the CLI). A callable
    gets the frame itself and may pick its columns by name: no error for it (a review)."""
    from bastion.runner import _train_has_the_test_features

    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0], "y": [0, 1]})
    train = Dataset.from_frame(frame, name="train", target="y")
    test = Dataset.from_frame(frame[["b", "a", "y"]], name="test", target="y")

    def by_name(X: Any) -> np.ndarray:
        return (X["a"] > 1.5).to_numpy().astype(int)

    _train_has_the_test_features(train, test, CallableAdapter(predict=by_name, name="byname"))

    class Positional(CallableAdapter):
        pass

    positional = Positional(predict=by_name, name="arrays")
    positional.info = dataclasses.replace(positional.info, format="onnx")
    with pytest.raises(DataError, match="takes its inputs by position"):
        _train_has_the_test_features(train, test, positional)
