"""Simulated training-data poisoning: label flips and backdoors, then retraining.

What it measures
    How much a model trained by the user's own procedure suffers when a fraction ``rate`` of
    its training rows is poisoned (MITRE ATLAS AML.T0020 "Poison training data"; OWASP ML02;
    backdoor triggers AML.T0043.004):

    - **label flipping** (Biggio, Nelson and Laskov, ICML 2012): ``random`` flips give each
      chosen row another class uniformly; ``targeted`` flips move rows of a ``source`` class
      (or of any class) to a ``target`` class.
    - **backdoor** (Gu, Dolan-Gavitt and Garg, "BadNets", 2017; Chen et al. 2017 for tabular
      triggers): chosen rows of other classes get a trigger (a few features set to fixed
      values, inside the feasibility constraints) and the target label. The default trigger
      sets ``n_trigger_features`` features to their upper bound, preferring features whose
      bound lies furthest above their median, in standard deviations floored at the median
      standard deviation of all features: values rare in clean data make the trigger
      learnable from few rows, as a real attacker would choose, and the floor keeps a
      nearly constant feature from winning with a change too small for a model that does
      not standardize its inputs to notice.

    Poisoned rows replace the original rows (the training set keeps its size).

Metrics (REFERENCE.md "Attack metrics")
    ``clean_accuracy`` and ``poisoned_accuracy`` on the clean test set, for the model trained
    on clean and on poisoned data with the same procedure and seed; ``accuracy_drop`` =
    clean - poisoned; ``backdoor_success_rate`` = Pr[f(x + trigger) = target | y != target]
    over test rows (``y = source`` for a one-to-one backdoor), for the poisoned model;
    ``clean_trigger_rate``, the same rate for the clean model, tells how much of it the
    trigger achieves without any poison.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from bastion.attacks.budget import report_stage
from bastion.attacks.constraints import FeatureConstraints
from bastion.attacks.poisoning._common import (
    as_float_matrix,
    check_rate,
    jsonable,
    label_array,
    make_rng,
    numeric_columns,
    poison_count,
    take_rows,
)
from bastion.attacks.poisoning._training import TrainFn, resolve_trainer
from bastion.exceptions import ConfigError, DataError, ModelOutputError
from bastion.models.base import n_rows

__all__ = [
    "PoisoningSimulation",
    "add_backdoor",
    "apply_trigger",
    "default_trigger",
    "flip_labels",
    "simulate_poisoning",
]

Kind = Literal["label_flip", "backdoor"]
FlipMode = Literal["random", "targeted"]
KINDS: tuple[str, ...] = ("label_flip", "backdoor")


@dataclass(frozen=True)
class PoisoningSimulation:
    """What a simulated poisoning did to a retrained model.

    Attributes
    ----------
    kind, rate:
        ``label_flip`` or ``backdoor``, and the share of training rows asked for.
    n_poisoned:
        Training rows poisoned: ``rate`` of them rounded half up, at least one
        (:func:`~bastion.attacks.poisoning._common.poison_count`).
    n_train:
        Training rows in all; ``applied_rate`` = ``n_poisoned / n_train`` is the share
        actually poisoned (``poison_rate`` among the metrics), which the rounding and the
        minimum of one row move away from ``rate`` on small data.
    poisoned_indices:
        Their positions in the training set (for detection precision and recall).
    clean_accuracy, poisoned_accuracy, accuracy_drop:
        Test accuracy of the models trained on clean and on poisoned data, and the difference.
    backdoor_success_rate, clean_trigger_rate:
        Backdoor only (``None`` otherwise): share of triggered test rows of other classes that
        the poisoned (clean) model sends to the target class.
    n_triggered:
        Backdoor only: the test rows those shares are of (0 otherwise).
    target_class, trigger:
        The backdoor's target class and trigger (feature position -> value), or the targeted
        flip's target.
    X_poisoned, y_poisoned:
        The poisoned training data (``X_poisoned`` is the training features themselves for
        label flips).
    poisoned_model:
        The model retrained on the poisoned data (for detectors that read a model, such as
        activation clustering).
    elapsed_s:
        Wall time, both trainings included.
    """

    kind: str
    rate: float
    n_poisoned: int
    poisoned_indices: np.ndarray
    clean_accuracy: float
    poisoned_accuracy: float
    accuracy_drop: float
    backdoor_success_rate: float | None = None
    clean_trigger_rate: float | None = None
    target_class: Any = None
    trigger: Mapping[int, float] = field(default_factory=dict)
    y_poisoned: np.ndarray = field(default_factory=lambda: np.zeros(0))
    X_poisoned: Any = None
    elapsed_s: float = 0.0
    n_train: int = 0
    poisoned_model: Any = field(default=None, repr=False, compare=False)
    n_triggered: int = 0

    @property
    def applied_rate(self) -> float:
        """The share of the training rows actually poisoned."""
        return self.n_poisoned / self.n_train if self.n_train else float(self.rate)

    def metrics(self) -> dict[str, float | int | None]:
        """Stable metric names for findings and JSON output."""
        return {
            "clean_accuracy": self.clean_accuracy,
            "poisoned_accuracy": self.poisoned_accuracy,
            "accuracy_drop": self.accuracy_drop,
            "backdoor_success_rate": self.backdoor_success_rate,
            "clean_trigger_rate": self.clean_trigger_rate,
            "poison_rate": self.applied_rate,
            "requested_rate": self.rate,
            "n_poisoned": self.n_poisoned,
            "triggered_rows": self.n_triggered if self.kind == "backdoor" else None,
        }


def flip_labels(
    y: Any,
    rate: float,
    *,
    mode: FlipMode = "random",
    source: Any = None,
    target: Any = None,
    rng: np.random.Generator | int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Flip the labels of ``round(rate * rows)`` rows (at least one).

    Parameters:
        y: labels.
        rate: share of all rows to flip, in (0, 1).
        mode: ``random`` (each chosen row gets another class, uniformly) or ``targeted``
            (rows of ``source``, or of any class but ``target`` when ``source`` is None,
            become ``target``).
        source, target: classes for ``targeted``; ``target`` is required there.
        rng: generator or seed.

    Returns:
        ``(y_poisoned, flipped_indices)``; indices sorted ascending.

    Raises:
        ConfigError: a bad ``rate`` or ``mode``, a missing or unknown ``target`` /
            ``source``, fewer than two classes, or more flips asked than eligible rows.

    Example::

        >>> y_p, idx = flip_labels(np.array([0, 1] * 50), 0.1, rng=0)
        >>> len(idx), int((y_p != np.array([0, 1] * 50)).sum())
        (10, 10)
    """
    labels = label_array(y)
    rate = check_rate(rate)
    gen = make_rng(rng)
    classes = np.unique(labels)
    if len(classes) < 2:
        raise ConfigError(f"label flipping needs at least two classes; y has {len(classes)}")
    n_flip = poison_count(rate, len(labels))
    out = labels.copy()
    if mode == "random":
        chosen = np.sort(gen.choice(len(labels), size=n_flip, replace=False))
        current = np.searchsorted(classes, labels[chosen])
        # a uniform other class: shift by 1..K-1 positions
        shift = gen.integers(1, len(classes), size=n_flip)
        out[chosen] = classes[(current + shift) % len(classes)]
        return out, chosen
    if mode != "targeted":
        raise ConfigError(f"mode must be 'random' or 'targeted'; received {mode!r}")
    if target is None:
        raise ConfigError("targeted label flipping needs target= (the class flipped to)")
    _require_class(target, classes, "target")
    if source is not None:
        _require_class(source, classes, "source")
        if source == target:
            raise ConfigError(f"source and target must differ; both are {source!r}")
        eligible = np.flatnonzero(labels == source)
    else:
        eligible = np.flatnonzero(labels != target)
    if n_flip > len(eligible):
        which = f"labelled {source!r}" if source is not None else f"not labelled {target!r}"
        raise ConfigError(
            f"rate {rate} asks for {n_flip} flips but only {len(eligible)} rows are eligible "
            f"({which})"
        )
    chosen = np.sort(gen.choice(eligible, size=n_flip, replace=False))
    out[chosen] = target
    return out, chosen


def default_trigger(
    X: Any,
    constraints: FeatureConstraints | None = None,
    *,
    n_features: int = 3,
    rng: np.random.Generator | int | None = None,
) -> dict[int, float]:
    """A trigger of ``n_features`` features set to their upper bound.

    Features that are immutable, in a one-hot group or without a finite bound are left out.
    The bound is the constraint's upper bound (rounded down for integer features), else the
    training maximum. Features whose bound lies furthest above their median, in standard
    deviations floored at the median standard deviation of the usable features, come first
    (rare, large values make a stealthy, learnable trigger); ties are broken at random.

    Parameters:
        X: training features.
        constraints: feasibility constraints of the features.
        n_features: how many features the trigger sets.
        rng: breaks ties.

    Returns:
        Feature position -> value.

    Raises:
        ConfigError: ``n_features`` is below 1 or above the number of usable features.
    """
    data, usable = _numeric_in_place(X)
    d = data.shape[1]
    gen = make_rng(rng)
    upper = data.max(axis=0) if len(data) else np.full(d, np.nan)
    if constraints is not None:
        _check_constraints_width(constraints, d)
        usable &= ~constraints.immutable
        for group in constraints.one_hot_groups:
            usable[group] = False
        # a declared bound is a value inputs may take (a pixel's 255); an inferred one is
        # the data's range widened by a margin, which no real input reaches: the data's max
        declared = np.array([source == "declared" for source in constraints.bound_source])
        use = declared & np.isfinite(constraints.upper)
        upper = np.where(use, constraints.upper, upper)
        upper = np.where(constraints.integer, np.floor(upper), upper)
    usable &= np.isfinite(upper)
    if not 1 <= n_features <= int(usable.sum()):
        raise ConfigError(
            f"n_trigger_features must be in [1, {int(usable.sum())}] (mutable features with a "
            f"finite upper bound); received {n_features}"
        )
    median = np.median(data, axis=0) if len(data) else np.zeros(d)
    std = data.std(axis=0) if len(data) else np.ones(d)
    positive = std[usable & (std > 0)]
    floor = float(np.median(positive)) if len(positive) else 1.0
    spread = np.maximum(std, floor)
    rarity = np.where(usable, (upper - median) / spread, -np.inf)
    tie_break = np.asarray(gen.random(d))
    order = np.lexsort((tie_break, -rarity))
    chosen = sorted(int(j) for j in order[:n_features])
    return {j: float(upper[j]) for j in chosen}


def _numeric_in_place(X: Any) -> tuple[np.ndarray, np.ndarray]:
    """``X`` as floats in its own column positions (those :func:`apply_trigger` stamps), and
    which columns a trigger may use: a DataFrame's text columns stay in place, as zeros, and
    unusable (one-hot encoding them, as the detectors do, would move every column after)."""
    if not isinstance(X, pd.DataFrame):
        data = as_float_matrix(X)
        return data, np.ones(data.shape[1], dtype=bool)
    numeric = numeric_columns(X)
    data = np.zeros((len(X), X.shape[1]))
    if numeric.any():
        data[:, numeric] = as_float_matrix(X.loc[:, numeric])
    return data, numeric


def apply_trigger(X: Any, trigger: Mapping[int, float], rows: np.ndarray | None = None) -> Any:
    """A copy of ``X`` with the trigger stamped on ``rows`` (all rows when None).

    Parameters:
        X: features, an array (or a list of rows) or a DataFrame (a DataFrame comes back as
            a DataFrame, anything else as an array).
        trigger: feature position -> value.
        rows: row positions to stamp.

    Returns:
        The stamped copy.

    Raises:
        ConfigError: a trigger position is out of range or names a non-numeric column.
        DataError: ``X`` is not a table of rows.
    """
    if not isinstance(X, pd.DataFrame):
        X = np.asarray(X)  # a plain list of rows too (it has no shape: an AttributeError)
        if X.ndim < 2:
            raise DataError(
                f"X must have one row per point (2 or more dimensions); shape {X.shape}"
            )
    d = X.shape[1] if X.ndim == 2 else int(np.prod(X.shape[1:]))
    for j in trigger:
        if not 0 <= int(j) < d:
            raise ConfigError(f"trigger feature position {j} is out of range for {d} features")
    where = slice(None) if rows is None else np.asarray(rows, dtype=np.intp)
    if isinstance(X, pd.DataFrame):
        out = X.copy()
        for j, value in trigger.items():
            col = out.columns[int(j)]
            dtype = out[col].dtype
            if pd.api.types.is_bool_dtype(dtype):
                if float(value) in (0.0, 1.0):  # a flag: True or False
                    out.iloc[where, int(j)] = bool(value)
                    continue
                out[col] = out[col].astype(np.float64)
            elif not pd.api.types.is_numeric_dtype(dtype):
                raise ConfigError(f"trigger feature {col!r} is not numeric")
            elif pd.api.types.is_integer_dtype(dtype) and not _holds(dtype, value):
                out[col] = out[col].astype(np.float64)
            out.iloc[where, int(j)] = value
        return out
    arr = np.asarray(X)
    # a row-major copy: reshaping a transposed view (NHWC images made NCHW) copies, and the
    # trigger was written into that copy and lost (a review saw the "backdoor" become a plain
    # label flip, its success 0.09 for 1.0)
    out_arr = np.array(
        arr, dtype=np.result_type(arr.dtype, np.float64) if arr.dtype.kind in "iub" else None,
        order="C", copy=True,
    )  # fmt: skip
    flat = out_arr.reshape(out_arr.shape[0], -1)
    assert np.shares_memory(flat, out_arr)  # a view: the writes below land in the result
    for j, value in trigger.items():
        flat[where, int(j)] = value
    return out_arr


def _holds(dtype: Any, value: float) -> bool:
    """Whether an integer column of ``dtype`` holds ``value`` exactly (uint8 holds 255, not
    255.5 or 267)."""
    if float(value) != int(value):
        return False
    info = np.iinfo(np.dtype(getattr(dtype, "numpy_dtype", dtype)))
    return bool(info.min <= int(value) <= info.max)


def add_backdoor(
    X: Any,
    y: Any,
    rate: float,
    *,
    trigger: Mapping[int, float] | None = None,
    target_class: Any = None,
    rng: np.random.Generator | int | None = None,
    constraints: FeatureConstraints | None = None,
    n_trigger_features: int = 3,
    source_class: Any = None,
) -> tuple[Any, np.ndarray, np.ndarray]:
    """Stamp a trigger on ``round(rate * rows)`` rows of other classes and relabel them.

    Parameters:
        X, y: training features and labels.
        rate: share of all rows poisoned, in (0, 1).
        trigger: feature position -> value; default :func:`default_trigger`.
        target_class: the class triggered inputs should get; default the most frequent class
            (poison hides best in the crowd).
        rng: generator or seed.
        constraints: the trigger must satisfy them (bounds, immutability, integrality,
            no one-hot member).
        n_trigger_features: size of the default trigger.
        source_class: poison only rows of this class (a one-to-one backdoor, as in Tran et
            al.); default every class but the target (all-to-one).

    Returns:
        ``(X_poisoned, y_poisoned, poisoned_indices)``.

    Raises:
        ConfigError: the trigger breaks the constraints, the target is unknown, or the rate
            asks for more rows than other classes hold.

    Example::

        >>> X = np.zeros((20, 4)); y = np.array([0, 1] * 10)
        >>> Xp, yp, idx = add_backdoor(X, y, 0.2, trigger={3: 1.0}, target_class=1, rng=0)
        >>> Xp[idx, 3].tolist(), yp[idx].tolist()
        ([1.0, 1.0, 1.0, 1.0], [1, 1, 1, 1])
    """
    labels = label_array(y)
    rate = check_rate(rate)
    gen = make_rng(rng)
    if n_rows(X) != len(labels):
        raise DataError(f"X has {n_rows(X)} rows but y has {len(labels)} labels")
    classes, counts = np.unique(labels, return_counts=True)
    if target_class is None:
        # the most frequent class, other than the source when one is named
        candidates = np.ones(len(classes), dtype=bool)
        if source_class is not None:
            candidates = classes != source_class
        if not candidates.any():
            raise ConfigError(f"no class other than source_class {source_class!r} to target")
        target_class = classes[candidates][int(np.argmax(counts[candidates]))]
    _require_class(target_class, classes, "target_class")
    if trigger is None:
        trigger = default_trigger(X, constraints, n_features=n_trigger_features, rng=gen)
    trigger = {int(j): float(v) for j, v in trigger.items()}
    if not trigger:
        raise ConfigError("trigger must set at least one feature")
    if constraints is not None:
        _check_trigger(trigger, constraints)
    if source_class is None:
        eligible = np.flatnonzero(labels != target_class)
        which = f"not of the target class {target_class!r}"
    else:
        _require_class(source_class, classes, "source_class")
        if source_class == target_class:
            raise ConfigError(
                f"source_class and target_class must differ; both are {target_class!r}"
            )
        eligible = np.flatnonzero(labels == source_class)
        which = f"of the source class {source_class!r}"
    n_poison = poison_count(rate, len(labels))
    if n_poison > len(eligible):
        raise ConfigError(
            f"rate {rate} asks for {n_poison} poisoned rows but only {len(eligible)} rows are "
            f"{which}"
        )
    chosen = np.sort(gen.choice(eligible, size=n_poison, replace=False))
    X_p = apply_trigger(X, trigger, chosen)
    y_p = labels.copy()
    y_p[chosen] = target_class
    return X_p, y_p, chosen


def simulate_poisoning(
    train_fn: TrainFn | Any,
    X_train: Any,
    y_train: Any,
    X_test: Any,
    y_test: Any,
    *,
    kind: Kind = "label_flip",
    rate: float = 0.05,
    mode: FlipMode = "random",
    source: Any = None,
    target: Any = None,
    trigger: Mapping[int, float] | None = None,
    target_class: Any = None,
    source_class: Any = None,
    n_trigger_features: int = 3,
    constraints: FeatureConstraints | None = None,
    seed: int = 0,
    clean_model: Any = None,
) -> PoisoningSimulation:
    """Poison the training data, retrain, and compare with the clean retrained model.

    Parameters:
        train_fn: a callable ``(X, y) -> fitted model with predict``; a scikit-learn
            estimator (cloned, then fitted); a ``SklearnAdapter``; or a trainable
            ``TorchAdapter`` (see :func:`~bastion.attacks.poisoning._training.resolve_trainer`).
        X_train, y_train, X_test, y_test: the data (arrays or DataFrames).
        kind: ``label_flip`` or ``backdoor``.
        rate: share of training rows poisoned.
        mode, source, target: label flipping options (:func:`flip_labels`).
        trigger, target_class, source_class, n_trigger_features, constraints: backdoor
            options (:func:`add_backdoor`).
        seed: poison selection and retraining.
        clean_model: a model already trained on the clean ``X_train`` with the same recipe
            (anything with ``predict``, e.g. the model under test); skips the clean training.

    Returns:
        :class:`PoisoningSimulation`.

    Raises:
        ConfigError: an unknown ``kind`` or a bad poisoning option.
        CapabilityError: ``train_fn`` is a model that cannot be retrained.

    Example::

        >>> from sklearn.datasets import load_breast_cancer
        >>> from sklearn.tree import DecisionTreeClassifier
        >>> X, y = load_breast_cancer(return_X_y=True)
        >>> sim = simulate_poisoning(DecisionTreeClassifier(max_depth=3), X[:400], y[:400],
        ...                          X[400:], y[400:], kind="label_flip", rate=0.1)
        >>> sim.n_poisoned
        40
    """
    if kind not in KINDS:
        raise ConfigError(f"kind must be one of {', '.join(KINDS)}; received {kind!r}")
    started = time.perf_counter()
    train = resolve_trainer(train_fn, seed=seed)
    labels = label_array(y_train, "y_train")
    test_labels = label_array(y_test, "y_test")
    if n_rows(X_train) != len(labels):
        raise DataError(f"X_train has {n_rows(X_train)} rows but y_train has {len(labels)}")
    if n_rows(X_test) != len(test_labels):
        raise DataError(f"X_test has {n_rows(X_test)} rows but y_test has {len(test_labels)}")
    rng = np.random.default_rng(seed)
    used_trigger: dict[int, float] = {}
    if kind == "label_flip":
        X_p: Any = X_train
        y_p, idx = flip_labels(labels, rate, mode=mode, source=source, target=target, rng=rng)
        goal = target if mode == "targeted" else None
    else:
        if trigger is None:
            trigger = default_trigger(X_train, constraints, n_features=n_trigger_features, rng=rng)
        used_trigger = {int(j): float(v) for j, v in trigger.items()}
        X_p, y_p, idx = add_backdoor(
            X_train,
            labels,
            rate,
            trigger=used_trigger,
            target_class=target_class,
            rng=rng,
            constraints=constraints,
            source_class=source_class,
        )
        goal = y_p[idx[0]]
    if clean_model is None:
        report_stage("retraining on the clean data")
        clean_model = train(X_train, labels)
    # the clean model is judged before the poisoned one trains: a recipe that fits one
    # shared estimator in place (``return MODEL.fit(X, y)``) turned the clean reference into
    # the poisoned model, and the check passed at a drop of 0 (a review)
    clean_right = _correct(clean_model, X_test, test_labels)
    stamped = None
    baseline: float | None = None
    if kind == "backdoor":
        # a one-to-one backdoor is judged on its source class, as in the papers
        victims = test_labels == source_class if source_class is not None else test_labels != goal
        others = np.flatnonzero(victims)
        if len(others):
            stamped = apply_trigger(take_rows(X_test, others), used_trigger)
            baseline = float(np.mean(_predicted(clean_model, stamped) == goal))
    report_stage(f"retraining on the poisoned data ({len(idx)} rows poisoned)")
    poisoned_model = train(X_p, y_p)
    if poisoned_model is clean_model:
        raise ConfigError(
            "the training recipe returned the clean model's own object for the poisoned "
            "data: it fits one shared model in place, which is now the poisoned one. Make "
            "train_fn build a new model on each call"
        )
    poisoned_right = _correct(poisoned_model, X_test, test_labels)
    n_test = len(test_labels)
    clean_acc, poisoned_acc = clean_right / n_test, poisoned_right / n_test
    success: float | None = None
    if stamped is not None:
        success = float(np.mean(_predicted(poisoned_model, stamped) == goal))
    return PoisoningSimulation(
        kind=kind,
        rate=float(rate),
        n_poisoned=len(idx),
        poisoned_indices=idx,
        clean_accuracy=clean_acc,
        poisoned_accuracy=poisoned_acc,
        # from the counts: a drop of exactly the limit must not read 0.050000000000000044
        accuracy_drop=(clean_right - poisoned_right) / n_test,
        backdoor_success_rate=success,
        clean_trigger_rate=baseline,
        target_class=jsonable(goal),
        trigger=used_trigger,
        y_poisoned=y_p,
        X_poisoned=X_p,
        elapsed_s=time.perf_counter() - started,
        n_train=len(labels),
        poisoned_model=poisoned_model,
        n_triggered=0 if stamped is None else len(others),
    )


# -- internals ---------------------------------------------------------------------------------


def _require_class(value: Any, classes: np.ndarray, name: str) -> None:
    if value not in set(classes.tolist()):
        raise ConfigError(f"{name} {value!r} is not one of the classes {classes.tolist()[:20]}")


def _check_constraints_width(constraints: FeatureConstraints, d: int) -> None:
    if constraints.n_features != d:
        raise ConfigError(f"constraints describe {constraints.n_features} features but X has {d}")


def _check_trigger(trigger: Mapping[int, float], constraints: FeatureConstraints) -> None:
    """Raise unless every trigger value is feasible under ``constraints``."""
    in_group = {int(j) for group in constraints.one_hot_groups for j in group}
    for j, value in trigger.items():
        if not 0 <= j < constraints.n_features:
            raise ConfigError(
                f"trigger feature position {j} is out of range for "
                f"{constraints.n_features} features"
            )
        name = constraints.names[j]
        if constraints.immutable[j]:
            raise ConfigError(f"trigger feature {name!r} is immutable")
        if j in in_group:
            raise ConfigError(f"trigger feature {name!r} belongs to a one-hot group")
        lo, hi = constraints.lower[j], constraints.upper[j]
        if not lo <= value <= hi:
            raise ConfigError(
                f"trigger value {value} for feature {name!r} is outside its bounds [{lo}, {hi}]"
            )
        if constraints.integer[j] and value != np.rint(value):
            raise ConfigError(f"trigger value {value} for integer feature {name!r} is fractional")


def _correct(model: Any, X: Any, y: np.ndarray) -> int:
    """How many test rows ``model`` gets right."""
    if len(y) == 0:
        raise DataError("the test set is empty")
    return int(np.sum(_predicted(model, X) == y))


def _predicted(model: Any, X: Any) -> np.ndarray:
    """One label per row of ``X``: a column of labels (n, 1) is flattened (compared with
    (n,) labels it broadcast to n x n pairs: accuracies above 100%, a negative drop that
    passed the gate); any other shape is an error."""
    pred = label_array(model.predict(X), "the retrained model's predictions")
    if len(pred) != n_rows(X):
        raise ModelOutputError(
            f"the retrained model returned {len(pred)} labels for {n_rows(X)} rows"
        )
    return pred
