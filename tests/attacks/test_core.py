"""The Attack pillar's core: constraints, budgets, per-sample results and low-FPR metrics."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from bastion.attacks.budget import Budget, BudgetTracker
from bastion.attacks.constraints import FeatureConstraints
from bastion.attacks.results import EvasionResult, low_fpr_metrics, merge_worst_case
from bastion.data.schema import ColumnKind, ColumnSpec, FeatureSchema
from bastion.exceptions import ConfigError, DataError

REFERENCE = pd.DataFrame(
    {"age": [20.0, 40.0, 60.0, 80.0], "dose": [0.0, 1.0, 2.0, 4.0], "flag": [0, 1, 0, 1]}
)


def test_declared_bounds_are_kept_and_the_rest_inferred_with_a_margin() -> None:
    declared = FeatureSchema({"dose": ColumnSpec("dose", ColumnKind.NUMERIC, min=0, max=10)})
    schema = declared.merged_over(FeatureSchema.infer(REFERENCE))
    cons = FeatureConstraints.from_schema(schema, ["age", "dose", "flag"], REFERENCE)
    assert cons.bound_source == ("inferred", "declared", "inferred")
    assert cons.lower[0] == pytest.approx(20 - 0.05 * 60)  # inferred: train range + 5%
    assert (cons.lower[1], cons.upper[1]) == (0, 10)  # declared: exactly as written
    assert cons.scale[0] == pytest.approx(REFERENCE["age"].std(ddof=0))


def test_an_inferred_margin_never_crosses_zero_where_the_data_does_not() -> None:
    reference = pd.DataFrame(
        {"count": [0.0, 3.0, 10.0], "debt": [-8.0, -2.0, 0.0], "shift": [-1.0, 0.5, 1.0]}
    )
    cons = FeatureConstraints.from_schema(FeatureSchema(), list(reference.columns), reference)
    assert (cons.lower[0], cons.upper[0]) == pytest.approx((0.0, 10.5))
    assert (cons.lower[1], cons.upper[1]) == pytest.approx((-8.4, 0.0))
    assert (cons.lower[2], cons.upper[2]) == pytest.approx((-1.1, 1.1))  # crosses: padded


def test_projection_enforces_every_constraint() -> None:
    schema = FeatureSchema(
        {
            "age": ColumnSpec("age", ColumnKind.INTEGER, min=18.5, max=90.5, immutable=False),
            "sex": ColumnSpec("sex", ColumnKind.NUMERIC, immutable=True),
            "a": ColumnSpec("a", ColumnKind.NUMERIC, min=0, max=1, one_hot_group="g"),
            "b": ColumnSpec("b", ColumnKind.NUMERIC, min=0, max=1, one_hot_group="g"),
        }
    )
    cons = FeatureConstraints.from_schema(schema, ["age", "sex", "a", "b"], None)
    x0 = np.array([[30.0, 1.0, 1.0, 0.0], [50.0, 0.0, 0.0, 1.0]])
    wild = np.array([[5.0, 0.0, 0.2, 0.7], [99.7, 1.0, 0.6, 0.1]])
    out = cons.project(wild, x0)
    assert cons.violations(out, x0) == 0
    assert out[:, 0].tolist() == [19.0, 90.0]  # whole numbers inside [18.5, 90.5]
    assert out[:, 1].tolist() == [1.0, 0.0]  # immutable: the original value
    assert out[:, 2:].tolist() == [[0.0, 1.0], [1.0, 0.0]]  # one member of the group
    assert cons.violations(wild, x0) == 2


def test_a_one_hot_member_that_may_not_be_on_never_wins() -> None:
    """A member whose upper bound is 0 (a category the training data never holds) won a
    tie of clipped values (argmax takes the first) and was set to 1, past its bound."""
    schema = FeatureSchema(
        {
            "a": ColumnSpec("a", ColumnKind.NUMERIC, min=0, max=0, one_hot_group="g"),
            "b": ColumnSpec("b", ColumnKind.NUMERIC, min=0, max=1, one_hot_group="g"),
            "c": ColumnSpec("c", ColumnKind.NUMERIC, min=0, max=1, one_hot_group="g"),
        }
    )
    cons = FeatureConstraints.from_schema(schema, ["a", "b", "c"], None)
    x0 = np.array([[0.0, 0.0, 1.0]])
    out = cons.project(np.array([[0.9, -0.3, -0.2]]), x0)  # clipped: 0, 0, 0
    assert out.tolist() == [[0.0, 1.0, 0.0]]  # the first member that may be on
    assert cons.violations(out, x0) == 0


def test_what_never_moves_keeps_its_value_in_bounds_or_not() -> None:
    """An immutable value outside its bounds stays (it was clipped to the bound); a one-hot
    group holding an immutable member is fixed whole (a category switch would change it)."""
    schema = FeatureSchema(
        {
            "radius": ColumnSpec("radius", ColumnKind.NUMERIC, min=7, max=20, immutable=True),
            "a": ColumnSpec("a", ColumnKind.NUMERIC, min=0, max=1, one_hot_group="g"),
            "b": ColumnSpec("b", ColumnKind.NUMERIC, min=0, max=1, one_hot_group="g",
                            immutable=True),
            "c": ColumnSpec("c", ColumnKind.NUMERIC, min=0, max=1, one_hot_group="g"),
            "x": ColumnSpec("x", ColumnKind.NUMERIC, min=0, max=1),
        }
    )  # fmt: skip
    cons = FeatureConstraints.from_schema(schema, ["radius", "a", "b", "c", "x"], None)
    assert cons.fixed_columns().tolist() == [True, True, True, True, False]
    x0 = np.array([[21.5, 1.0, 0.0, 0.0, 0.5]])
    wild = np.array([[15.0, 0.1, 0.3, 0.9, 1.7]])
    out = cons.project(wild, x0)
    assert out.tolist() == [[21.5, 1.0, 0.0, 0.0, 1.0]]
    assert cons.violations(out, x0) == 0  # the bounds judge what may move
    moved = out.copy()
    moved[0, 3], moved[0, 1] = 1.0, 0.0  # another category: the fixed group moved
    assert cons.violations(moved, x0) == 1
    # a fixed group with no member on (its dropped reference category) and a fixed integer
    # holding a fraction, left as they were: no break (both were counted, untouched; a review)
    dropped = np.array([[21.5, 0.0, 0.0, 0.0, 0.5]])
    assert cons.violations(dropped, dropped) == 0
    aged = FeatureConstraints.from_schema(
        FeatureSchema({"age": ColumnSpec("age", ColumnKind.INTEGER, immutable=True)}), ["age"], None
    )
    assert aged.violations(np.array([[30.5]]), np.array([[30.5]])) == 0
    assert aged.violations(np.array([[31.0]]), np.array([[30.5]])) == 1
    # a NaN where the original held a value is a break (every comparison passed it)
    x = np.array([[21.5, 1.0, 0.0, 0.0, 0.5]])
    assert cons.violations(np.array([[21.5, 1.0, 0.0, 0.0, np.nan]]), x) == 1


def test_each_rows_bounds_hold_its_own_value() -> None:
    cons = FeatureConstraints.box(2, 0.0, 1.0)
    x0 = np.array([[1.5, 0.5], [-0.2, 0.5]])  # past the range on feature 0
    lower, upper = cons.row_bounds(x0)
    assert lower.tolist() == [[0.0, 0.0], [-0.2, 0.0]]
    assert upper.tolist() == [[1.5, 1.0], [1.0, 1.0]]
    out = cons.project(np.array([[1.7, 1.2], [-0.5, -0.1]]), x0)
    assert out.tolist() == [[1.5, 1.0], [-0.2, 0.0]]  # toward the range, never past the value
    assert cons.violations(out, x0) == 0
    assert cons.violations(np.array([[1.6, 0.5], [-0.2, 0.5]]), x0) == 1


def test_a_bound_declared_on_one_side_only_infers_the_other() -> None:
    schema = FeatureSchema({"age": ColumnSpec("age", ColumnKind.NUMERIC, min=0)})
    cons = FeatureConstraints.from_schema(schema, ["age"], REFERENCE)
    assert cons.lower[0] == 0  # declared
    assert np.isfinite(cons.upper[0])  # from the data (it was +inf, labelled declared)
    assert cons.upper[0] >= REFERENCE["age"].max()
    assert cons.bound_source == ("inferred",)


def test_a_feature_without_spread_is_held_and_never_scaled_to_rounding_noise() -> None:
    """eps standard deviations of a constant feature is no move: it is held immutable with
    scale 1, not scaled by 1e-12 (whose float64 round trip was 1e-3 std of noise); a
    one-hot member never taken stays movable at scale 1e-6; a tiny-unit feature with a real
    spread keeps its own standard deviation."""
    ref = pd.DataFrame(
        {
            "fee": np.full(50, 37.3),
            "zero": np.zeros(50),
            "tiny": np.linspace(1e-13, 5e-12, 50),
            "cat_a": np.ones(50),
            "cat_b": np.zeros(50),
        }
    )
    schema = FeatureSchema(
        {
            "fee": ColumnSpec("fee", ColumnKind.NUMERIC, min=0, max=100),
            **{
                f"cat_{k}": ColumnSpec(f"cat_{k}", ColumnKind.NUMERIC, one_hot_group="cat")
                for k in "ab"
            },
        }
    )
    cons = FeatureConstraints.from_schema(schema, list(ref.columns), ref)
    assert cons.no_spread == ("fee", "zero")
    # held by the attacks, not immutable (a poisoning trigger may set a blank pixel)
    assert cons.fixed_columns().tolist() == [True, True, False, False, False]
    assert not cons.immutable.any()
    assert cons.scale[:2].tolist() == [1.0, 1.0]
    assert cons.scale[2] == pytest.approx(ref["tiny"].std(ddof=0))
    assert cons.scale[3:].tolist() == [1e-6, 1e-6]
    assert cons.describe()["no_spread"] == ["fee", "zero"]
    x = np.array([[37.3, 0.0, 2e-12, 1.0, 0.0]])
    moved = cons.project(x + 0.4, x)
    assert moved[0, :2].tolist() == [37.3, 0.0]  # held
    assert moved[0, 2] > x[0, 2]  # moves (to its inferred bound)
    # a constant declared immutable is immutable, not "without spread" (ADV001 told users
    # to declare its range to attack it; a review); all constants: still std units
    declared = FeatureSchema({"fee": ColumnSpec("fee", ColumnKind.NUMERIC, immutable=True)})
    both = FeatureConstraints.from_schema(declared, ["fee", "zero"], ref)
    assert both.no_spread == ("zero",)
    assert both.immutable.tolist() == [True, False]
    assert both.describe()["eps_unit"] == "std"


def test_bad_constraints_are_named() -> None:
    bad = FeatureSchema({"x": ColumnSpec("x", ColumnKind.NUMERIC, min=2, max=1)})
    with pytest.raises(DataError, match="'x': declared range is empty"):
        FeatureConstraints.from_schema(bad, ["x"], None)
    with pytest.raises(DataError, match="'zzz' is not in the reference"):
        FeatureConstraints.from_schema(FeatureSchema(), ["zzz"], REFERENCE)
    with pytest.raises(ConfigError, match="margin"):
        FeatureConstraints.from_schema(FeatureSchema(), ["age"], REFERENCE, margin=-1)


def test_budget_tracker_stops_on_queries_and_time() -> None:
    tracker = BudgetTracker(Budget(max_queries=10))
    assert tracker.allow(6) == 6
    tracker.spend(6)
    assert tracker.allow(6) == 4
    tracker.spend(4)
    assert tracker.allow(1) == 0
    assert tracker.exhausted_reason == "query budget"
    assert tracker.seconds_left() is None
    assert not tracker.out_of_time()  # queries spent, no time budget
    timed = BudgetTracker(Budget(max_seconds=0.01))
    assert 0 < timed.seconds_left() <= 0.01  # type: ignore[operator]
    assert not timed.out_of_time()
    time.sleep(0.02)
    assert timed.seconds_left() == 0
    assert timed.out_of_time()
    assert timed.allow(1) == 0
    assert timed.exhausted_reason == "time budget"
    interrupted = BudgetTracker(Budget())
    interrupted.interrupt()
    assert interrupted.allow(1) == 0
    with pytest.raises(ConfigError, match="max_queries must be >= 1"):
        Budget(max_queries=0)


def _result(name: str, success: list[bool], queries: list[int]) -> EvasionResult:
    n = len(success)
    ok = np.array(success)
    return EvasionResult(
        attack=name,
        x_adv=np.zeros((n, 2)),
        y_true=np.array([0, 0, 1, 1]),
        clean_pred=np.array([0, 0, 1, 0]),  # the last point is wrong before any attack
        adv_pred=np.where(ok, 1, 0),
        success=ok,
        perturbation=np.where(ok, 0.5, np.nan),
        queries=np.array(queries),
        eps=1.0,
        norm="inf",
        elapsed_s=0.1,
    )


def test_metrics_follow_the_reference_definitions() -> None:
    r = _result("pgd", [True, False, False, False], [3, 5, 5, 1])
    m = r.metrics()
    assert m["clean_accuracy"] == 0.75
    assert m["robust_accuracy"] == 0.5  # wrong-before points are not robust
    assert m["attack_success_rate"] == pytest.approx(1 / 3)  # over points correct before
    assert m["median_perturbation"] == 0.5  # successful points only
    assert (m["median_queries"], m["max_queries"]) == (4.0, 5)


def test_worst_case_over_an_ensemble() -> None:
    first = _result("apgd-ce", [True, False, False, False], [3, 5, 5, 1])
    second = _result("square", [False, True, False, False], [0, 7, 7, 0])
    merged = merge_worst_case([first, second])
    assert merged.success.tolist() == [True, True, False, False]
    assert merged.queries.tolist() == [3, 12, 12, 1]
    assert merged.metrics()["robust_accuracy"] == 0.25


def test_low_fpr_metrics_read_the_roc_as_sklearn_builds_it() -> None:
    rng = np.random.default_rng(0)
    members = np.r_[np.ones(2000, bool), np.zeros(2000, bool)]
    scores = np.round(rng.normal(members * 0.5, 1.0), 1)  # many ties
    out = low_fpr_metrics(scores, members)
    fpr, tpr, _ = roc_curve(members, scores, drop_intermediate=False)
    assert out["auc"] == pytest.approx(roc_auc_score(members, scores))
    assert out["tpr_at_1pct_fpr"] == pytest.approx(tpr[fpr <= 0.01].max())
    assert out["advantage"] == pytest.approx(np.max(tpr - fpr))
    few = low_fpr_metrics(scores[1900:2100], members[1900:2100])
    assert few["tpr_at_0.1pct_fpr"] is None  # 100 non-members cannot measure 0.1% FPR


def test_tpr_at_low_fpr_reads_operating_points_on_a_straight_stretch_of_the_roc() -> None:
    """Four top tie groups of 1 non-member and 5 members each lie on one straight line of the
    ROC: ``roc_curve``'s default drops the middle ones, and reading it would give the point
    at FPR 0.5% (TPR 2.5%) instead of the threshold that reaches FPR 1% exactly (TPR 5%)."""
    rng = np.random.default_rng(0)
    top = np.repeat([1.0, 0.9, 0.8, 0.7], 6)
    top_members = np.tile([False, True, True, True, True, True], 4)
    scores = np.r_[top, rng.uniform(0.0, 0.5, 376)]
    members = np.r_[top_members, np.ones(180, bool), np.zeros(196, bool)]
    assert low_fpr_metrics(scores, members)["tpr_at_1pct_fpr"] == pytest.approx(0.05)
    above = scores >= 0.9  # the threshold itself: FPR 2/200, TPR 10/200
    assert (above & ~members).sum() / 200 == 0.01
    assert (above & members).sum() / 200 == 0.05
    fpr, tpr, _ = roc_curve(members, scores)  # the default curve skips that point
    assert tpr[fpr <= 0.01].max() == pytest.approx(0.025)


def test_progress_of_a_budgeted_attack_is_reported() -> None:
    from bastion.attacks.budget import report_progress

    seen: list[str] = []
    tracker = BudgetTracker(Budget(max_queries=100, max_seconds=60))
    with report_progress(seen.append):
        tracker.spend(10)
    tracker.spend(10)  # outside the block: nobody listens
    assert seen == ["10 of 100 queries, 0 s of 60 s"]


def test_stages_of_long_work_are_reported_to_the_listener_only() -> None:
    from bastion.attacks.budget import report_progress, report_stage

    seen: list[str] = []
    with report_progress(seen.append):
        report_stage("retraining on the poisoned data")
    report_stage("nobody listens")
    assert seen == ["retraining on the poisoned data"]


def test_an_attacks_time_budget_bounds_the_models_retries_from_python_too() -> None:
    """Every attack's ``run`` opens ``wall_deadline(budget.max_seconds)``: a remote model
    inside it retries no further (the gate's runner opens one per check; an attack run from
    Python had none). Without a time budget, no deadline."""
    from bastion.attacks.base import ATTACKS
    from bastion.attacks.budget import request_deadline
    from bastion.models.callable import CallableAdapter

    seen: list[float | None] = []

    def predict(X: np.ndarray) -> np.ndarray:
        deadline = request_deadline()
        seen.append(None if deadline is None else deadline - time.monotonic())
        return (np.asarray(X)[:, 0] > 0.5).astype(int)

    model = CallableAdapter(predict=predict, classes=[0, 1], name="timed")
    X = np.random.default_rng(0).random((20, 3))
    y = (X[:, 0] > 0.5).astype(int)
    attack = ATTACKS.get("hopskipjump")()
    attack.run(model, X, y, eps=0.3, budget=Budget(max_queries=400, max_seconds=9))
    assert seen
    assert all(left is not None and 0 < left <= 9 for left in seen)
    seen.clear()
    attack.run(model, X, y, eps=0.3, budget=Budget(max_queries=400))
    assert seen
    assert set(seen) == {None}
    assert request_deadline() is None


def test_work_without_queries_stops_between_stages_at_the_wall_deadline() -> None:
    """Detectors spend no queries: they ask stop_at_deadline between their stages, which
    raises (naming the stage) once the innermost deadline has passed, and never without one."""
    from bastion._deadline import stop_at_deadline, wall_deadline
    from bastion.exceptions import TimeBudgetError

    stop_at_deadline("fold 1 of 5")  # no deadline: no limit
    with wall_deadline(60):
        stop_at_deadline("fold 1 of 5")
        with wall_deadline(1e-9):  # nested: the earlier deadline wins
            time.sleep(0.001)
            with pytest.raises(TimeBudgetError, match="ran out before fold 2 of 5"):
                stop_at_deadline("fold 2 of 5")
        stop_at_deadline("fold 3 of 5")  # the outer one again
    assert issubclass(TimeBudgetError, TimeoutError)


def test_invalid_rows_name_the_breaks_an_attack_would_have_to_repair() -> None:
    """Rows an attack must repair before it can move them: a fraction in a movable integer
    feature, a movable one-hot group without exactly one 1. Immutable features are never
    repaired, and float32's trace on a whole number (2e-6) costs nothing to repair."""
    import dataclasses

    base = FeatureConstraints.unconstrained(5)
    cons = dataclasses.replace(
        base,
        integer=np.array([True, False, False, False, True]),
        one_hot_groups=(np.array([1, 2]),),
    )
    x = np.array(
        [
            [3.0, 1.0, 0.0, 0.5, 7.0],  # valid
            [3.5, 1.0, 0.0, 0.5, 7.0],  # a fraction
            [3.0, 0.0, 0.0, 0.5, 7.0],  # no member on (drop_first's reference category)
            [3.0 + 2e-6, 1.0, 0.0, 0.5, 7.0 - 2e-6],  # a float32 trace
            [2020.2, 1.0, 0.0, 0.5, 500000.5],  # large values keep their fractions
            [3e7 + 1.5, 1.0, 0.0, 0.5, 7.0],  # past 2^24 float32 holds no fraction to see
            [1e6 + 0.5, 1.0, 0.0, 0.5, 7.0],  # below it, a fraction float32 holds exactly
            # a whole number scaled and unscaled in float32: 51355 comes back as 51355.0039
            [_scaled_and_back(51355.0, 365.0187839310152), 1.0, 0.0, 0.5, 7.0],
        ]
    )
    found = cons.invalid_rows(x)
    assert found["integer"].tolist() == [False, True, False, False, True, False, True, False]
    assert found["one_hot"].tolist() == [False, False, True, False, False, False, False, False]
    held = dataclasses.replace(cons, immutable=np.array([True, True, False, False, True]))
    assert held.invalid_rows(x) == {}  # immutable: never repaired, never a reason to leave out


def _scaled_and_back(value: float, scale: float) -> float:
    """``value`` divided by ``scale`` and multiplied back, both in float32."""
    return float(np.float32(np.float32(value) / np.float32(scale)) * np.float32(scale))
