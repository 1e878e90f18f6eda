"""The ``ModelAdapter`` interface: declared capabilities, validated outputs and a query counter.

Checks and attacks never touch a framework's model directly. They call an adapter, which
declares what it can do (``predict``, ``predict_proba``, ``logits``, ``loss_gradient``,
``trainable``), validates every output (no NaN, one row per input row) and counts queries: the
attack pillar budgets and reports them.
"""

from __future__ import annotations

import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd

from bastion.exceptions import CapabilityError, DataError, ModelOutputError

__all__ = [
    "PROBA_TOLERANCE",
    "ArrayLike",
    "Capability",
    "ModelAdapter",
    "ModelInfo",
    "refuse_misordered_columns",
    "row_shape",
    "same_label",
    "two_class_columns",
]

ArrayLike = np.ndarray | pd.DataFrame
PROBA_TOLERANCE = 1e-5


def same_label(a: Any, b: Any) -> bool:
    """Whether two class labels are one: two texts when equal; two numbers when equal
    exactly (0.0, 0 and False: a model fitted on float or bool labels; 2**53 and 2**53 + 1
    differ, which floats would merge); a text and a number when the text spells that number
    ("0" and 0: a policy's labels are text; not "007", " 1" or "1_0" for 7, 1 or 10, nor
    "007" for "7", which a comparison through floats took for one, from a review)."""
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if str(a) == str(b):  # the shortest spelling of a float32 0.1 is "0.1"
        return True
    x, y = _label_value(a), _label_value(b)
    if x is None or y is None:
        return False
    for text, other in ((a, b), (b, a)):
        if isinstance(text, str) and isinstance(other, float | np.floating):
            # a float label is the float nearest the text ("0.10" and "1e-1" for 0.1, which
            # is not exactly 1/10)
            return float(text) == float(other)
    return x == y


def row_shape(model: Any) -> tuple[int, ...] | None:
    """The shape of one input row as the model reads it (an image's ``(1, 8, 8)``): a torch
    model's ``input_shape``, an ONNX graph's ``row_shape``; None when neither says."""
    shape = getattr(model, "input_shape", None) or getattr(model, "row_shape", None)
    return tuple(int(d) for d in shape) if shape else None


def two_class_columns(proba: np.ndarray) -> np.ndarray:
    """A two-class model's probabilities as two columns: one column (or a flat vector, a
    sigmoid's, Keras style) is the second class's, as an ONNX graph's single probability
    column is read (from a review: refused, so that Square attacked such a model only
    without classes); anything else as it is."""
    if proba.ndim == 1 or (proba.ndim == 2 and proba.shape[1] == 1):
        p = proba.reshape(-1).astype(np.float64)
        return np.stack((1.0 - p, p), axis=1)
    return proba


def _label_value(label: Any) -> Fraction | None:
    """A label's exact numeric value (None: not a number, or not finite)."""
    if isinstance(label, bool | np.bool_ | int | np.integer):
        return Fraction(int(label))
    if isinstance(label, float | np.floating):
        return Fraction(float(label)) if math.isfinite(label) else None
    if isinstance(label, Fraction):
        return label
    if isinstance(label, Decimal):
        return Fraction(label) if label.is_finite() else None
    if isinstance(label, str):
        digits = label.lstrip("+-")
        if (
            not label.isascii()  # "٣" is no spelling of 3 in a label
            or "_" in label
            or label != label.strip()
            or (digits[:1] == "0" and digits[1:2].isdigit())
        ):
            return None  # a grouping, spaces, a leading zero: not the number's spelling
        try:
            value = Decimal(label)
        except InvalidOperation:
            return None
        return Fraction(value) if value.is_finite() else None
    return None


class Capability(StrEnum):
    PREDICT = "predict"
    PREDICT_PROBA = "predict_proba"
    LOGITS = "logits"
    LOSS_GRADIENT = "loss_gradient"
    TRAINABLE = "trainable"


@dataclass(frozen=True)
class ModelInfo:
    """What a report says about the model: where it came from and how it was loaded."""

    name: str
    format: str
    path: str | None = None
    sha256: str | None = None
    trusted_override: bool = False  # loaded a pickle-family file on the user's explicit trust
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "format": self.format,
            "path": self.path,
            "sha256": self.sha256,
            "trusted_override": self.trusted_override,
            "details": dict(self.details),
        }


class ModelAdapter(ABC):
    """Uniform access to a classifier.

    Subclasses implement ``_predict`` and, where they can, ``_predict_proba``; the public
    methods count queries and validate shapes. ``classes_`` holds the label of each
    probability column.

    Example::

        adapter = SklearnAdapter(fitted_estimator)
        adapter.require(Capability.PREDICT_PROBA)
        proba = adapter.predict_proba(X)
        adapter.n_queries   # rows sent to the model so far
    """

    capabilities: frozenset[Capability] = frozenset({Capability.PREDICT})

    def __init__(self, info: ModelInfo, classes: Iterable[Any] | None = None) -> None:
        self.info = info
        self.classes_: np.ndarray | None = None if classes is None else np.asarray(list(classes))
        self._lock = threading.Lock()
        self.n_queries = 0  # rows sent to the model
        self.n_calls = 0  # calls made

    # -- to implement -------------------------------------------------------------------
    @abstractmethod
    def _predict(self, X: ArrayLike) -> np.ndarray: ...

    def _predict_proba(self, X: ArrayLike) -> np.ndarray:
        raise CapabilityError(f"model {self.info.name!r} does not provide predict_proba")

    # -- public API ---------------------------------------------------------------------
    def has(self, capability: Capability) -> bool:
        return capability in self.capabilities

    def require(self, *capabilities: Capability, by: str = "this operation") -> None:
        """Raise :class:`CapabilityError` unless every capability is declared."""
        missing = [c.value for c in capabilities if c not in self.capabilities]
        if missing:
            have = ", ".join(sorted(c.value for c in self.capabilities))
            raise CapabilityError(
                f"{by} needs {', '.join(missing)} but model {self.info.name!r} ({self.info.format})"
                f" provides only {have}"
            )

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predicted labels, one per row."""
        n = self._count(X)
        out = np.asarray(self._predict(X))
        if out.ndim == 2 and out.shape[1] == 1:
            out = out[:, 0]
        if out.ndim != 1 or out.shape[0] != n:
            raise ModelOutputError(
                f"model {self.info.name!r}: predict returned shape {out.shape} for {n} rows; "
                f"expected ({n},)"
            )
        if out.dtype.kind == "f" and np.isnan(out).any():
            raise ModelOutputError(
                f"model {self.info.name!r}: predict returned {int(np.isnan(out).sum())} NaN "
                f"value(s) for {n} rows"
            )
        return out

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Class probabilities, shape (rows, classes), columns ordered as ``classes_``."""
        self.require(Capability.PREDICT_PROBA, by="predict_proba")
        n = self._count(X)
        return self._probability_rows(
            self._predict_proba(X), "the probabilities predict_proba returned", n
        )

    def _probability_rows(self, raw: Any, source: str, rows: int | None = None) -> np.ndarray:
        """``raw`` probabilities as a (rows, classes) float64 array in ``classes_`` order, a
        two-class model's single column read as the second class's; anything else refused
        by name (``source``, a plural noun: what they are): text, ragged rows, another
        width or row count, NaN (which also hid logits from the range check) and values
        outside [0, 1]. One reading for ``predict_proba`` and for labels read from
        probabilities (:meth:`_labels_of`), which had drifted apart (reviews)."""
        name = self.info.name
        try:
            out = np.asarray(raw, dtype=np.float64)
        except (TypeError, ValueError) as err:  # text, ragged rows: said as the others are
            raise ModelOutputError(f"model {name!r}: {source} are not numbers: {err}") from err
        k = None if self.classes_ is None else len(self.classes_)
        if k == 2:
            out = two_class_columns(out)
        if (
            out.ndim != 2
            or (rows is not None and out.shape[0] != rows)
            or (k is not None and out.shape[1] != k)
        ):
            n = rows if rows is not None else (out.shape[0] if out.ndim else "rows")
            expected = f"({n}, {k if k is not None else 'n_classes'}), one column per class"
            raise ModelOutputError(
                f"model {name!r}: {source} have shape {out.shape}; expected {expected}"
            )
        if not np.isfinite(out).all():
            bad = int((~np.isfinite(out)).any(axis=1).sum())
            raise ModelOutputError(
                f"model {name!r}: {source} hold NaN or infinite values in {bad} of {len(out)} rows"
            )
        if out.size and (out.min() < -PROBA_TOLERANCE or out.max() > 1 + PROBA_TOLERANCE):
            # float32 runtimes (ONNX) round a little past the ends; anything more is not a
            # probability
            raise ModelOutputError(
                f"model {name!r}: {source} hold values outside [0, 1] (min {out.min():.6g}, "
                f"max {out.max():.6g}): these look like logits or scores, not probabilities "
                "(export the model with its final softmax or sigmoid, or name the probability "
                "output)"
            )
        return out

    def _labels_of(self, proba: Any) -> np.ndarray:
        """Labels read from a model's raw probabilities (for adapters that predict by them):
        the most probable of ``classes_``, read as :meth:`predict_proba` reads them (from a
        review: predict took the argmax of a two-class model's single column, class 0 for
        every row, while predict_proba read it as the second class's)."""
        if self.classes_ is None:
            return np.asarray(proba)
        out = self._probability_rows(proba, "its probabilities (read for predict)")
        return np.asarray(self.classes_[np.argmax(out, axis=1)])

    def logits(self, X: ArrayLike) -> np.ndarray:
        """Raw scores before softmax; adapters that have them override this."""
        self.require(Capability.LOGITS, by="logits")
        raise CapabilityError(f"model {self.info.name!r} declares logits but lacks the method")

    def loss_gradient(self, X: ArrayLike, y: np.ndarray) -> np.ndarray:
        """Gradient of the loss with respect to the input; white-box adapters override this."""
        self.require(Capability.LOSS_GRADIENT, by="loss_gradient")
        raise CapabilityError(
            f"model {self.info.name!r} declares loss_gradient but lacks the method"
        )

    def close(self) -> None:  # noqa: B027 - optional hook, most adapters hold nothing
        """Release connections or sessions; adapters that hold some override this."""

    def reset_counter(self) -> None:
        with self._lock:
            self.n_queries = 0
            self.n_calls = 0

    def _count(self, X: ArrayLike) -> int:
        n = n_rows(X)
        with self._lock:
            self.n_queries += n
            self.n_calls += 1
        return n


def n_rows(X: Any) -> int:
    """Rows of an array, a frame or a plain list of rows (a list has no ``shape``)."""
    shape = getattr(X, "shape", None)
    return int(shape[0]) if shape is not None else len(X)


def input_names(model: Any) -> list[str]:
    """The inputs ``model`` names (``feature_names_in_``: a scikit-learn estimator fitted on
    a frame), as text; empty when it names none. scikit-learn keeps them in a numpy array,
    whose truth value is an error: a user's adapter that did the same crashed every test of
    ``if model.feature_names_in_``."""
    names = getattr(model, "feature_names_in_", None)
    return [] if names is None else [str(c) for c in names]


def first_misplaced(have: list[str], want: list[str]) -> int | None:
    """The position of the first column of ``have`` out of ``want``'s order, where both
    hold the same names in another order (None: the same order, or other names, which are
    left to whoever reads them)."""
    if have == want or sorted(have) != sorted(want):
        return None
    return next(i for i, (a, b) in enumerate(zip(have, want, strict=True)) if a != b)


def refuse_misordered_columns(X: Any, model: Any, what: str = "X") -> None:
    """Refuse a DataFrame whose columns hold the inputs ``model`` names
    (``feature_names_in_``) in another order. Attacks turn rows into arrays, which an
    adapter pairs with the model's inputs by position: every value would reach the wrong
    input, and the attack would report on a scrambled model (a review saw EXT001 pass a
    model it should fail). Other column differences are left to the adapter.

    Raises:
        DataError: naming the first column out of place and how to reorder.
    """
    want = input_names(model)
    if not want or not isinstance(X, pd.DataFrame):
        return
    have = [str(c) for c in X.columns]
    at = first_misplaced(have, want)
    if at is None:
        return
    raise DataError(
        f"{what}'s columns hold the model's inputs in another order (column {at} is "
        f"{have[at]!r}, where the model takes {want[at]!r}): pass "
        f"{what}[model.feature_names_in_], and constraints built in that order"
    )
