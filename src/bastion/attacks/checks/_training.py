"""What the poisoning checks need from the training dataset: its labelled rows."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from bastion.data.dataset import Dataset

__all__ = ["labelled_rows"]


def labelled_rows(train: Dataset | None) -> tuple[Dataset, np.ndarray, np.ndarray] | str:
    """The training set with the positions and labels of its rows that carry a label, or the
    reason to skip (no training set, no target, no features, fewer than two classes)."""
    if train is None:
        return "needs the training dataset: set data.train"
    if train.target is None:
        return "the training dataset has no target column (set data.target)"
    if not train.feature_names:
        return f"dataset {train.name!r} has no feature columns"
    labelled = train.frame[train.target].notna().to_numpy()
    y = train.labels[labelled]
    n_classes = len(np.unique(y))
    if n_classes < 2:
        return f"the training labels hold {n_classes} class(es); need 2"
    return train, np.flatnonzero(labelled), y
