"""CallableAdapter, and the output validation every adapter inherits."""

from __future__ import annotations

import numpy as np
import pytest

from bastion.exceptions import CapabilityError, ConfigError, ModelOutputError
from bastion.models.base import Capability
from bastion.models.callable import CallableAdapter

X = np.arange(12, dtype=float).reshape(6, 2)


def test_predict_and_proba() -> None:
    def proba(rows: np.ndarray) -> np.ndarray:
        p = 1 / (1 + np.exp(-(rows[:, 0] - 5)))
        return np.stack([1 - p, p], axis=1)

    model = CallableAdapter(
        predict=lambda rows: (rows[:, 0] > 5).astype(int), predict_proba=proba, classes=[0, 1]
    )
    assert model.predict(X).tolist() == [0, 0, 0, 1, 1, 1]
    np.testing.assert_allclose(model.predict_proba(X), proba(X))
    assert model.capabilities == frozenset({Capability.PREDICT, Capability.PREDICT_PROBA})
    assert model.info.format == "callable"
    assert model.n_queries == 12


def test_labels_from_probabilities_and_classes() -> None:
    model = CallableAdapter(
        predict_proba=lambda rows: np.tile([0.2, 0.8], (len(rows), 1)), classes=["no", "yes"]
    )
    assert model.predict(X).tolist() == ["yes"] * 6


@pytest.mark.parametrize("shape", ["column", "flat"])
def test_one_probability_column_of_two_classes_is_the_second_class(shape: str) -> None:
    """A sigmoid's single column (Keras style), as an ONNX graph's is read; refused before,
    so that Square attacked such a model only without classes (from a review)."""
    from bastion.attacks.evasion.square import Square, SquareConfig

    def proba(rows: np.ndarray) -> np.ndarray:
        p = 1 / (1 + np.exp(-(np.asarray(rows)[:, 0] - 5)))
        return p[:, None] if shape == "column" else p

    model = CallableAdapter(predict_proba=proba, classes=["neg", "pos"])
    p = proba(X).reshape(-1)
    np.testing.assert_allclose(model.predict_proba(X), np.stack([1 - p, p], axis=1))
    assert model.predict(X).tolist() == ["neg"] * 3 + ["pos"] * 3
    result = Square(SquareConfig(n_queries=50)).run(
        model, X, model.predict(X), eps=3.0, norm="inf", seed=0
    )
    assert result.success.sum() >= 1
    three = CallableAdapter(predict_proba=proba, classes=["a", "b", "c"])
    with pytest.raises(ModelOutputError, match=r"expected \(6, 3\)"):
        three.predict_proba(X)
    # nor does predict read them (a review: the probabilities came back as labels)
    with pytest.raises(ModelOutputError, match=r"expected \(6, 3\), one column per class"):
        three.predict(X)
    # a NaN row hid logits from the range check, and got a label itself (a review)
    logits = CallableAdapter(
        predict_proba=lambda rows: np.r_[np.nan, np.arange(len(rows) - 1) - 2.0],
        classes=["neg", "pos"],
    )
    with pytest.raises(ModelOutputError, match="NaN or infinite values in 1 of 6 rows"):
        logits.predict(X)
    ragged = CallableAdapter(predict_proba=lambda rows: [[0.5, 0.5]] + [[1.0]] * (len(rows) - 1),
                             classes=["a", "b"])  # fmt: skip
    with pytest.raises(ModelOutputError, match="predict_proba returned are not numbers"):
        ragged.predict_proba(X)
    # a scalar, text: refused by name, not a bare TypeError / ValueError (a ninth review)
    for answer in (0.7, np.array(["x", "y"] * 3, dtype=object)):
        odd = CallableAdapter(predict_proba=lambda rows, a=answer: a, classes=["neg", "pos"])
        with pytest.raises(ModelOutputError, match=r"its probabilities \(read for predict\)"):
            odd.predict(X)
    wide = CallableAdapter(
        predict_proba=lambda rows: np.full((len(rows), 3), 2.0), classes=["a", "b", "c"]
    )
    with pytest.raises(ModelOutputError, match=r"\(read for predict\) hold values outside"):
        wide.predict(X)


def test_predict_only_has_no_proba() -> None:
    model = CallableAdapter(predict=lambda rows: np.zeros(len(rows)), name="zeros")
    with pytest.raises(CapabilityError, match="'zeros'"):
        model.predict_proba(X)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "neither"),
        ({"predict": 3}, "predict must be callable"),
        ({"predict_proba": lambda rows: rows}, "needs classes"),
    ],
)
def test_configuration_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CallableAdapter(**kwargs)  # type: ignore[arg-type]


def test_nan_outputs_are_refused() -> None:
    model = CallableAdapter(
        predict=lambda rows: np.where(rows[:, 0] > 4, np.nan, 1.0),
        predict_proba=lambda rows: np.full((len(rows), 2), np.nan),
        classes=[0, 1],
    )
    with pytest.raises(ModelOutputError, match="3 NaN"):
        model.predict(X)
    with pytest.raises(ModelOutputError, match="NaN or infinite values in 6 of 6 rows"):
        model.predict_proba(X)


def test_wrong_shapes_are_refused() -> None:
    model = CallableAdapter(
        predict=lambda rows: np.zeros(len(rows) - 1),
        predict_proba=lambda rows: np.full((len(rows), 3), 1 / 3),
        classes=[0, 1],
    )
    with pytest.raises(ModelOutputError, match=r"expected \(6,\)"):
        model.predict(X)
    with pytest.raises(ModelOutputError, match=r"expected \(6, 2\)"):
        model.predict_proba(X)


def test_labels_past_the_score_columns_of_a_model_without_classes_are_named() -> None:
    """A model that declares no classes answers with its columns 0..k-1: labels 1 and 2
    share the value 1 with its answers and passed, read shifted (a review saw a backdoored
    torch model pass POI003 with labels 1 and 2, and fail with 0 and 1)."""
    import pandas as pd

    from bastion.data.dataset import Dataset
    from bastion.models.predictions import check_labels_match

    X = np.linspace(-1, 1, 8).reshape(-1, 1)

    def proba(A: object) -> np.ndarray:
        p = 1 / (1 + np.exp(-4 * np.asarray(A, dtype=float)[:, 0]))
        return np.stack([1 - p, p], axis=1)

    model = CallableAdapter(
        predict=lambda A: (proba(A)[:, 1] > 0.5).astype(int), predict_proba=proba
    )
    frame = pd.DataFrame({"x": X[:, 0], "y": [0, 0, 0, 0, 1, 1, 1, 1]})
    ok = Dataset.from_frame(frame, name="train", target="y")
    check_labels_match(ok, model, ok.labels)
    shifted = Dataset.from_frame(frame.assign(y=frame["y"] + 1), name="train", target="y")
    with pytest.raises(ModelOutputError, match=r"columns 0\.\.1; labels \[2\]"):
        check_labels_match(shifted, model, shifted.labels)
    named = Dataset.from_frame(frame.assign(y=frame["y"].map({0: "a", 1: "b"})), name="t",
                               target="y")  # fmt: skip
    with pytest.raises(ModelOutputError, match="none of its answers"):
        check_labels_match(named, model, named.labels)
