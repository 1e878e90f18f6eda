"""Reading datasets: every bad file gets a named error that says what is wrong."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bastion.data.dataset import Dataset
from bastion.data.schema import ColumnKind, FeatureSchema
from bastion.exceptions import DataError, EmptyDataError


def test_csv_and_parquet_read_the_same(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1, 2, 3], "b": [0.5, np.nan, 2.0], "y": ["x", "y", "x"]})
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.bin")  # detected by content, not by extension
    from_csv = Dataset.from_file(tmp_path / "d.csv", target="y")
    from_parquet = Dataset.from_file(tmp_path / "d.bin", target="y")
    pd.testing.assert_frame_equal(from_csv.frame, from_parquet.frame, check_dtype=False)
    assert from_csv.feature_names == ["a", "b"]
    assert list(from_csv.labels) == ["x", "y", "x"]
    expected = hashlib.sha256((tmp_path / "d.csv").read_bytes()).hexdigest()
    assert from_csv.sha256 == expected == from_csv.content_hash


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        Dataset.from_file(tmp_path / "nope.csv")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.csv").write_bytes(b"")
    with pytest.raises(EmptyDataError, match=r"e\.csv: file is empty"):
        Dataset.from_file(tmp_path / "e.csv")
    (tmp_path / "h.csv").write_text("a,b\n")
    with pytest.raises(EmptyDataError, match="header but no rows"):
        Dataset.from_file(tmp_path / "h.csv")


def test_ragged_rows_are_an_error_not_missing_values(tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_text("a,b,c\n1,2,3\n4,5\n")
    with pytest.raises(DataError, match="line 3 has 2 fields, the header has 3"):
        Dataset.from_file(tmp_path / "r.csv")
    (tmp_path / "l.csv").write_text("a,b\n1,2\n1,2,3\n")
    with pytest.raises(DataError, match="line 3 has 3 fields, the header has 2"):
        Dataset.from_file(tmp_path / "l.csv")


def test_non_utf8_file(tmp_path: Path) -> None:
    (tmp_path / "latin.csv").write_bytes("name,v\ncafé,1\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"not UTF-8 text \(byte 0xe9 at offset 10, line 2\)"):
        Dataset.from_file(tmp_path / "latin.csv")


def test_unknown_target_or_sensitive_column(tmp_path: Path) -> None:
    pd.DataFrame({"a": [1, 2]}).to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(DataError, match="column 'label' not found; columns are a"):
        Dataset.from_file(tmp_path / "d.csv", target="label")
    with pytest.raises(DataError, match="column 'sex' not found"):
        Dataset.from_file(tmp_path / "d.csv", sensitive=["sex"])
    wide = pd.DataFrame({**{f"pixel_{i}": [0] for i in range(64)}, "digit": [1]})
    wide.to_csv(tmp_path / "wide.csv", index=False)
    # the target of a wide table is named although it is the 65th column
    with pytest.raises(DataError, match=r"pixel_63, digit \(65 in all\)$"):
        Dataset.from_file(tmp_path / "wide.csv", target="target")


def test_non_features_are_not_model_inputs() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0], "band": ["a", "b"], "y": [0, 1]})
    ds = Dataset.from_frame(frame, target="y", sensitive=["band"], non_features=["band"])
    assert list(ds.features.columns) == ["x"]


def test_schema_inference() -> None:
    frame = pd.DataFrame({"age": [30, 40, 50], "bmi": [20.5, 30.1, np.nan], "sex": ["F", "M", "F"]})
    schema = FeatureSchema.infer(frame)
    assert schema.inferred
    assert schema["age"].kind is ColumnKind.INTEGER
    assert schema["age"].min == 30
    assert schema["bmi"].kind is ColumnKind.NUMERIC
    assert schema["bmi"].nullable
    assert schema["sex"].categories == ("F", "M")


def test_inferred_bounds_come_from_the_finite_values() -> None:
    """One infinite value (a ratio over zero) made the bound infinite, and a report holding
    the schema could not be written as JSON."""
    frame = pd.DataFrame({"ratio": [0.5, np.inf, 2.0, -np.inf, np.nan], "only": [np.inf] * 5})
    schema = FeatureSchema.infer(frame)
    assert (schema["ratio"].min, schema["ratio"].max) == (0.5, 2.0)
    assert (schema["only"].min, schema["only"].max) == (None, None)


def test_model_inputs_are_the_columns_a_model_names_and_a_missing_one_is_named() -> None:
    """ADV001 and EXT001 attack the columns a frame-fitted model reads (an id beside them is
    left out). A model input the dataset lacks was answered with every column, and an
    array of the same width read column 'd' as column 'c' (a review)."""
    import types

    frame = pd.DataFrame({"a": [1.0], "b": [2.0], "d": [3.0], "y": [0]})
    ds = Dataset.from_frame(frame, name="test", target="y")
    plain = types.SimpleNamespace()
    assert ds.model_inputs(plain) == ["a", "b", "d"]
    # scikit-learn keeps the names in a numpy array (a truth test of it was an error)
    named = types.SimpleNamespace(feature_names_in_=np.array(["b", "a"], dtype=object))
    assert ds.model_inputs(named) == ["b", "a"]
    ds.take_model_order(named, strict=False)  # no error; the extra column stays
    lacking = types.SimpleNamespace(feature_names_in_=np.array(["a", "c"], dtype=object))
    with pytest.raises(DataError, match="takes column 'c', which the dataset lacks"):
        ds.model_inputs(lacking)
    # a model input named a non-feature (or the target) is in the file: said so, not
    # "lacks" with a guess at another name (a review)
    aside = Dataset.from_frame(frame, name="test", target="y", non_features=("d",))
    reads_d = types.SimpleNamespace(feature_names_in_=np.array(["a", "d"], dtype=object))
    with pytest.raises(DataError, match="takes column 'd' as an input, which this run names a non"):
        aside.model_inputs(reads_d)
    reads_y = types.SimpleNamespace(feature_names_in_=np.array(["y", "a"], dtype=object))
    with pytest.raises(DataError, match="'y' as an input, which this run names the target"):
        ds.model_inputs(reads_y)
