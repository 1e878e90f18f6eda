"""ColumnEdges: every column's histogram bins at once, equal to a searchsorted per column."""

from __future__ import annotations

import numpy as np
import pytest

from bastion.data.binning import ColumnEdges


@pytest.mark.parametrize("rows", [1, 7, 5000])
def test_bins_equal_searchsorted_per_column(rows: int) -> None:
    rng = np.random.default_rng(rows)
    edges = [np.sort(rng.normal(size=n)) for n in (1, 5, 19, 3)]
    X = rng.normal(size=(rows, len(edges)))
    X[0, 0] = edges[0][0]  # a value on an edge goes right, as side="right"
    X[-1, 2] = edges[2][-1]
    got = ColumnEdges(edges).bins(X)
    for j, e in enumerate(edges):
        np.testing.assert_array_equal(got[:, j], np.searchsorted(e, X[:, j], side="right"))


def test_nan_is_bin_zero_and_chunks_cover_every_row(monkeypatch: pytest.MonkeyPatch) -> None:
    import bastion.data.binning as binning

    monkeypatch.setattr(binning, "_CHUNK_CELLS", 10)  # several rows per chunk, many chunks
    edges = [np.array([0.0, 1.0]), np.array([-1.0, 0.0, 2.0])]
    X = np.array([[np.nan, 3.0], [0.5, -2.0], [1.0, 0.0], [-5.0, np.nan], [2.0, 2.0]])
    assert ColumnEdges(edges).bins(X).tolist() == [[0, 3], [1, 0], [2, 2], [0, 0], [2, 3]]


def test_no_columns() -> None:
    assert ColumnEdges([]).bins(np.zeros((3, 0))).shape == (3, 0)
