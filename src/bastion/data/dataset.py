"""Datasets: a frame plus its target, sensitive features, feature schema and content hash."""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bastion._names import known_names
from bastion.data.schema import FeatureSchema
from bastion.exceptions import DataError, EmptyDataError
from bastion.models.formats import sha256_file  # one hashing path for data and model files

__all__ = ["Dataset", "sha256_file"]


@dataclass(eq=False)
class Dataset:
    """A table with its target column, sensitive features and schema.

    Build one with :meth:`from_file` (CSV or Parquet) or :meth:`from_frame`.

    Example::

        train = Dataset.from_file("train.csv", target="diagnosis", name="train")
        X, y = train.features, train.labels
    """

    name: str
    frame: pd.DataFrame
    target: str | None = None
    sensitive: tuple[str, ...] = ()
    schema: FeatureSchema = field(default_factory=FeatureSchema)
    sha256: str | None = None
    path: Path | None = None
    # columns that are not model inputs (row ids, a derived age band used only for fairness)
    non_features: tuple[str, ...] = ()
    # the model's input order of the feature columns, when the model names its inputs and the
    # file holds them in another order (set by the runner; empty: the file's order)
    feature_order: tuple[str, ...] = ()
    _row_hash_cache: dict[tuple[str, ...], np.ndarray] = field(
        default_factory=dict, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        # a non-feature may be in one file only (an id column in the test file): the runner
        # checks that each is in some dataset
        named = (self.target, *self.sensitive)
        missing = [c for c in named if c and c not in self.frame.columns]
        if missing:
            where = f" ({self.path})" if self.path else ""
            raise DataError(
                f"dataset {self.name!r}{where}: column {missing[0]!r} not found; "
                f"{known_names(missing[0], self.frame.columns)}"
            )
        if self.target is not None and self.target in self.sensitive:
            raise DataError(
                f"dataset {self.name!r}: target {self.target!r} cannot also be sensitive"
            )

    @property
    def n_rows(self) -> int:
        return len(self.frame)

    def take_model_order(self, model: Any, strict: bool = True) -> None:
        """Feature columns in the order ``model`` names its inputs (``feature_names_in_``: a
        scikit-learn estimator fitted on a frame): checks that hand the model arrays would
        otherwise pair each value with whatever input holds its position, and report figures
        of a scrambled model. A model input this dataset lacks is a named error when
        ``strict`` (else the order is left alone); extra columns are left to the checks."""
        from bastion.models.base import input_names

        expected = input_names(model)
        if not expected:
            return
        have = self.feature_names
        if have == expected:
            return
        missing = [c for c in expected if c not in have]
        if missing:
            if not strict:
                return
            raise self._lacks(model, missing, have)
        # applied by feature_names only where the feature columns are exactly these
        self.feature_order = tuple(expected)

    def _lacks(self, model: Any, missing: list[str], have: list[str]) -> DataError:
        where = f" ({self.path})" if self.path else ""
        name = getattr(getattr(model, "info", None), "name", "the model")
        set_aside = [c for c in missing if c == self.target or c in self.non_features]
        if set_aside:
            # the file holds it: "lacks" and a guess at another name misled (a review)
            role = "the target" if set_aside[0] == self.target else "a non-feature column"
            return DataError(
                f"dataset {self.name!r}{where}: the model {name!r} takes column "
                f"{set_aside[0]!r} as an input, which this run names {role}; a model input "
                "can be neither"
            )
        return DataError(
            f"dataset {self.name!r}{where}: the model {name!r} takes column "
            f"{missing[0]!r}, which the dataset lacks"
            + (f" ({len(missing)} missing in all)" if len(missing) > 1 else "")
            + f"; {known_names(missing[0], have)}"
        )

    def model_inputs(self, model: Any) -> list[str]:
        """The feature columns ``model`` reads: all of them, or, where it names its inputs
        (``feature_names_in_``), those, in its order. A column it does not read (a record
        id) is left out, as its own ``predict`` leaves it out; the attacks, which hand the
        model arrays, failed on it deep inside.

        Raises:
            DataError: the model names an input the dataset lacks (every column was taken
                instead, and an array of the same width read one column as another).
        """
        from bastion.models.base import input_names

        names = self.feature_names
        wanted = input_names(model)
        if not wanted:
            return names
        missing = [c for c in wanted if c not in set(names)]
        if missing:
            raise self._lacks(model, missing, names)
        return wanted

    @property
    def feature_names(self) -> list[str]:
        """The model's input columns: everything but the target and ``non_features``."""
        excluded = {self.target, *self.non_features}
        names = [str(c) for c in self.frame.columns if c not in excluded]
        if self.feature_order and sorted(self.feature_order) == sorted(names):
            return list(self.feature_order)
        return names

    @property
    def features(self) -> pd.DataFrame:
        """The model's input columns as a frame."""
        if self.target is None and not self.non_features:
            return self.frame
        return self.frame[self.feature_names]

    @property
    def labels(self) -> np.ndarray:
        if self.target is None:
            raise DataError(f"dataset {self.name!r} has no target column declared")
        return self.frame[self.target].to_numpy()

    def row_hashes(self, columns: Sequence[str]) -> np.ndarray:
        """A uint64 hash per row over ``columns``, computed once per column list.

        Duplicates, conflicting labels and the content hash all read rows by these hashes,
        so the frame is hashed once however many of them run. Datasets are treated as
        immutable once built.
        """
        key = tuple(columns)
        if key not in self._row_hash_cache:
            from bastion.data.rowhash import row_hashes

            (self._row_hash_cache[key],) = row_hashes([self.frame], key)
        return self._row_hash_cache[key]

    @property
    def row_columns(self) -> list[str]:
        """The columns that make a row what it is: the features plus the target (row ids and
        other ``non_features`` would make every row unique)."""
        cols = self.feature_names
        return [*cols, self.target] if self.target is not None else cols

    @cached_property
    def content_hash(self) -> str:
        """sha256 of the file when read from one, else of the frame's row hashes.

        A frame's hash reuses the row hashes the row-level checks compute, so it costs no
        extra pass; it covers every column, names included.
        """
        if self.sha256 is not None:
            return self.sha256
        # the non-features this frame holds (one may be in another dataset only)
        present = tuple(c for c in self.non_features if c in self.frame.columns)
        columns = self.row_columns + [str(c) for c in present]
        digest = hashlib.sha256("\x1f".join(columns).encode())
        digest.update(self.row_hashes(self.row_columns).tobytes())
        if present:
            digest.update(self.row_hashes(present).tobytes())
        return digest.hexdigest()

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        name: str = "data",
        target: str | None = None,
        sensitive: Sequence[str] = (),
        schema: FeatureSchema | None = None,
        non_features: Sequence[str] = (),
    ) -> Dataset:
        if frame.empty:
            raise EmptyDataError(f"dataset {name!r} holds no rows")
        if not all(isinstance(c, str) for c in frame.columns):
            # names are strings everywhere else (feature_names, schemas, reports): a frame
            # with integer column labels could not be selected by them (a KeyError); the
            # columns the caller names are read the same way
            frame = frame.rename(columns=str)
            target = None if target is None else str(target)
            sensitive = [str(c) for c in sensitive]
            non_features = [str(c) for c in non_features]
        return cls(
            name=name,
            frame=frame,
            target=target,
            sensitive=tuple(sensitive),
            schema=schema or FeatureSchema(),
            non_features=tuple(non_features),
        )

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        *,
        name: str | None = None,
        target: str | None = None,
        sensitive: Sequence[str] = (),
        schema: FeatureSchema | None = None,
        non_features: Sequence[str] = (),
    ) -> Dataset:
        """Read a CSV or Parquet file (chosen by content: Parquet files start with ``PAR1``).

        Raises
        ------
        DataError
            The file is missing, unreadable, not UTF-8, ragged, or lacks a named column.
        EmptyDataError
            The file holds no rows.
        """
        p = Path(path)
        frame = read_table(p)
        return cls(
            name=name or p.stem,
            frame=frame,
            target=target,
            sensitive=tuple(sensitive),
            schema=schema or FeatureSchema(),
            sha256=sha256_file(p),
            path=p,
            non_features=tuple(non_features),
        )


def read_table(path: Path) -> pd.DataFrame:
    """Read CSV or Parquet with errors that name the file and the problem."""
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a CSV or Parquet file")
    if path.stat().st_size == 0:
        raise EmptyDataError(f"{path}: file is empty")
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic == b"PAR1":
        return _read_parquet(path)
    return _read_csv(path)


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises many types; all mean "unreadable"
        raise DataError(f"{path}: not a readable Parquet file ({err})") from err
    if frame.empty:
        raise EmptyDataError(f"{path}: Parquet file holds no rows")
    return frame


def _read_csv(path: Path) -> pd.DataFrame:
    # pyarrow's reader is multi-threaded and strict: ragged rows and invalid UTF-8 are errors,
    # where pandas would pad short rows with NaN and silently lose the corruption.
    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    except pa.ArrowInvalid as err:
        text = str(err)
        if "Empty CSV file" in text:
            raise EmptyDataError(f"{path}: CSV file has no header and no rows") from err
        _raise_if_not_utf8(path)
        detail = _ragged_detail(path) or text.split(":")[0]
        raise DataError(f"{path}: malformed CSV: {detail}") from err
    # pyarrow falls back to a binary column for invalid UTF-8 instead of failing
    if any(pa.types.is_binary(t) or pa.types.is_large_binary(t) for t in table.schema.types):
        _raise_if_not_utf8(path)
    if table.num_rows == 0:
        raise EmptyDataError(f"{path}: CSV file has a header but no rows")
    frame: pd.DataFrame = table.to_pandas()
    return frame


def _raise_if_not_utf8(path: Path) -> None:
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataError(
            f"{path}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}, "
            f"line {line}); re-encode it as UTF-8"
        ) from err


def _ragged_detail(path: Path) -> str | None:
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            return None
        width = len(header)
        for row in reader:
            if row and len(row) != width:
                return f"line {reader.line_num} has {len(row)} fields, the header has {width}"
    return None
