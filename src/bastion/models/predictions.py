"""One set of predictions on the test set, shared by every validation and fairness check."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from bastion.exceptions import DataError, ModelOutputError
from bastion.models.base import Capability

if TYPE_CHECKING:
    from bastion.data.dataset import Dataset
    from bastion.models.base import ModelAdapter

__all__ = ["Predictions", "check_labels_match", "predict_dataset"]


@dataclass(frozen=True)
class Predictions:
    """Labels, predictions and (when available) probabilities for one dataset.

    ``classes`` orders the columns of ``proba``. For binary problems ``positive_label`` is the
    class whose probability ``score`` returns; it defaults to the larger label, as in
    scikit-learn's ``pos_label=1`` convention.
    """

    y_true: np.ndarray
    y_pred: np.ndarray
    proba: np.ndarray | None
    classes: np.ndarray
    positive_label: Any

    @property
    def n(self) -> int:
        return int(self.y_true.shape[0])

    @property
    def is_binary(self) -> bool:
        return len(self.classes) == 2

    @property
    def score(self) -> np.ndarray | None:
        """Probability of the positive class (binary problems), else ``None``."""
        if self.proba is None or not self.is_binary:
            return None
        idx = int(np.flatnonzero(self.classes == self.positive_label)[0])
        return self.proba[:, idx]

    @property
    def y_true_binary(self) -> np.ndarray:
        return np.asarray(self.y_true == self.positive_label, dtype=np.int8)

    @property
    def y_pred_binary(self) -> np.ndarray:
        return np.asarray(self.y_pred == self.positive_label, dtype=np.int8)


def predict_dataset(model: ModelAdapter, data: Dataset, positive_label: Any = None) -> Predictions:
    """Query ``model`` once on ``data`` (predict, and predict_proba when declared)."""
    X = data.features
    y_true = data.labels
    _check_width(model, data)
    try:
        y_pred = model.predict(X)
        proba = model.predict_proba(X) if model.has(Capability.PREDICT_PROBA) else None
    except (ValueError, TypeError) as err:
        missing = _missing_by_column(X)
        where = f" ({data.path})" if data.path else ""
        if not missing:
            # only a failure to read text as numbers: a pipeline that encodes its own text
            # columns fails for other reasons (an unseen category), which stand as they are
            text = _text_by_column(X) if _CONVERSION.search(str(err)) else {}
            # the columns holding the value the error quotes, where it quotes one (a text
            # column the model encodes itself is no culprit)
            quoted = set(re.findall(r"'([^']*)'", str(err)))
            named = {c: v for c, v in text.items() if v[2] & quoted}
            text = named or text
            if not text:
                raise
            # a stray "F" in a numeric column: numpy's "could not convert string to float"
            # named neither the file nor the column, and read as an internal error
            listed = ", ".join(
                f"{c!r} ({v!r}, {n} rows)" for c, (v, n, _) in list(text.items())[:5]
            )
            raise DataError(
                f"dataset {data.name!r}{where}: model {model.info.name!r} refused text in "
                f"columns it reads as numbers: {listed}{' ...' if len(text) > 5 else ''}; "
                f"fix those values, or encode the column ({str(err).splitlines()[0]})"
            ) from err
        listed = ", ".join(f"{c!r} ({n} rows)" for c, n in list(missing.items())[:5])
        raise DataError(
            f"dataset {data.name!r}{where}: model {model.info.name!r} refused its missing "
            f"values, in {listed}{' ...' if len(missing) > 5 else ''}: impute them, drop those "
            f"rows, or use a model that takes missing values ({str(err).splitlines()[0]})"
        ) from err
    if model.classes_ is not None:
        classes = np.asarray(model.classes_)
        _check_labels_overlap(data, model, classes, y_true)
    else:
        _check_undeclared_labels(data, model, y_true, np.asarray(y_pred))
        classes = np.unique(np.concatenate([np.unique(y_true), np.unique(y_pred)]))
    unknown = np.setdiff1d(np.unique(y_pred), classes)
    if unknown.size:
        raise ModelOutputError(
            f"model {model.info.name!r} predicted label(s) {unknown[:5].tolist()} that are not "
            f"among its classes {classes.tolist()}"
        )
    if positive_label is None:
        positive_label = classes[-1]
    elif positive_label not in set(classes.tolist()):
        raise ModelOutputError(
            f"positive_label {positive_label!r} is not one of the model's classes "
            f"{classes.tolist()}"
        )
    return Predictions(y_true, y_pred, proba, classes, positive_label)


def _check_width(model: ModelAdapter, data: Dataset) -> None:
    """A model that declares how many feature columns it takes (an ONNX input of fixed
    width, a scikit-learn estimator fitted on an array) gets that many, or a message that
    names the dataset's columns and how to leave some out (ids, timestamps); a model that
    knows its columns by name picks them itself."""
    width = getattr(model, "n_features_in_", None)
    if not isinstance(width, int) or getattr(model, "feature_names_in_", None) is not None:
        return
    columns = [str(c) for c in getattr(data.features, "columns", [])]
    if not columns or len(columns) == width:
        return
    where = f" ({data.path})" if data.path else ""
    shown = ", ".join(repr(c) for c in columns[:6]) + (" ..." if len(columns) > 6 else "")
    hint = (
        "name the columns that are not model inputs (ids, timestamps) in data.non_features, "
        "or with --non-feature COLUMN on bastion attack"
        if len(columns) > width
        else "the dataset lacks some of the model's inputs"
    )
    raise DataError(
        f"dataset {data.name!r}{where} has {len(columns)} feature columns ({shown}) but model "
        f"{model.info.name!r} takes {width}: {hint}"
    )


_CONVERSION = re.compile(r"could not convert|convert .*(string|bytes)|invalid literal", re.I)


def _text_by_column(X: Any) -> dict[str, tuple[Any, int, set[str]]]:
    """Per column that holds values a number cannot be read from (beside numbers, or in a
    column of text), the first such value, how many rows hold one, and (up to 50 of) the
    distinct such values as text."""
    import pandas as pd

    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X))
    out: dict[str, tuple[Any, int, set[str]]] = {}
    for name in frame.columns:
        col = frame[name]
        if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            continue
        bad = pd.to_numeric(col, errors="coerce").isna() & col.notna()
        if bad.any():
            values = {str(v) for v in col[bad].unique()[:50]}
            out[str(name)] = (col[bad].iloc[0], int(bad.sum()), values)
    return out


def _missing_by_column(X: Any) -> dict[str, int]:
    """Count of missing values per feature column that has any."""
    import pandas as pd

    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X))
    counts = frame.isna().sum()
    return {str(c): int(n) for c, n in counts.items() if n}


def check_labels_match(
    data: Dataset, model: ModelAdapter, y_true: np.ndarray, X: Any = None
) -> None:
    """Raise :class:`~bastion.exceptions.DataError` (declared classes) or
    :class:`~bastion.exceptions.ModelOutputError` (none declared) when ``data``'s labels
    ``y_true`` share nothing with what ``model`` answers (one query of the rows ``X``,
    default ``data``'s features, when it declares no classes): a check comparing predictions
    with labels would find no match and read that as nothing to report (POI003 passed a
    backdoored torch model given string labels it never predicts)."""
    if model.classes_ is not None:
        _check_labels_overlap(data, model, np.asarray(model.classes_), y_true)
        return
    rows = data.features if X is None else X
    _check_undeclared_labels(data, model, y_true, np.asarray(model.predict(rows)))
    if model.has(Capability.PREDICT_PROBA):
        _check_labels_are_columns(data, model, y_true, rows)


def _check_labels_are_columns(
    data: Dataset, model: ModelAdapter, y_true: np.ndarray, X: Any
) -> None:
    """A model that declares no classes answers with its score columns 0..k-1: whole-number
    labels past them (1 and 2 for a two-output torch model) share one value with its
    answers, pass the overlap test, and are read shifted (a review saw a backdoored model
    pass POI003 with labels 1 and 2, and fail with 0 and 1)."""
    import pandas as pd

    labels = pd.unique(pd.Series(y_true).dropna())
    numbers = pd.to_numeric(pd.Series(labels), errors="coerce")
    if numbers.isna().any() or not np.all(np.mod(numbers.to_numpy(dtype=float), 1) == 0):
        return  # text labels: the overlap test above judges them
    take = X.iloc[:1] if hasattr(X, "iloc") else np.asarray(X)[:1]
    width = max(int(np.asarray(model.predict_proba(take)).shape[1]), 2)
    outside = sorted(v for v in numbers.astype(int).tolist() if not 0 <= v < width)
    if outside:
        raise ModelOutputError(
            f"model {model.info.name!r} declares no classes, so its answers are its score "
            f"columns 0..{width - 1}; labels {outside[:5]} of dataset {data.name!r} are not: "
            "declare the model's classes (model.classes, --classes) in the order of its "
            "outputs"
        )


def _check_undeclared_labels(
    data: Dataset, model: ModelAdapter, y_true: np.ndarray, y_pred: np.ndarray
) -> None:
    """A model that declares no classes must still answer with labels: fractional outputs
    (a regressor), or answers that share no value with the dataset's labels, would be taken
    for classes and judged as a classifier that is always wrong."""
    if y_pred.dtype.kind == "f" and not np.all(np.mod(y_pred[np.isfinite(y_pred)], 1) == 0):
        raise ModelOutputError(
            f"model {model.info.name!r} predicts fractional values (e.g. "
            f"{y_pred[:3].tolist()}), not class labels: a regressor? the checks need a "
            "classifier"
        )
    import pandas as pd

    # on the distinct values (object labels make np.isin quadratic in the rows); a test set
    # of one class that the model always misses is a valid, failing model, not a bad input
    answers = np.asarray(pd.unique(pd.Series(y_pred)))
    labels = np.asarray(pd.unique(pd.Series(y_true).dropna()))
    if len(labels) >= 2 and len(answers) and not np.isin(answers, labels).any():
        raise ModelOutputError(
            f"model {model.info.name!r} declares no classes and none of its answers (e.g. "
            f"{answers[:3].tolist()}) is a label of dataset {data.name!r} (e.g. "
            f"{labels[:3].tolist()})"
        )


def _check_labels_overlap(
    data: Dataset, model: ModelAdapter, classes: np.ndarray, y_true: np.ndarray
) -> None:
    """Labels that share nothing with the model's classes ("benign" against 0/1) would make
    every row misclassified and every attack figure empty, under a passing verdict."""
    import pandas as pd

    given = pd.unique(pd.Series(y_true).dropna())
    known = set(classes.tolist())
    if len(given) and not any(label in known for label in given.tolist()):
        where = f" ({data.path})" if data.path else ""
        raise DataError(
            f"dataset {data.name!r}{where}: its labels {given[:5].tolist()} share nothing with "
            f"the classes of model {model.info.name!r}, {classes[:5].tolist()}: is "
            f"{data.target!r} the right target, encoded as the model was trained?"
        )
