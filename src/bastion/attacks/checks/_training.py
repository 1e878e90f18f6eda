"""What the attack checks share: the training dataset's labelled rows, the model inputs it
lacks, and the finding of a detector stopped by its time budget."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from bastion.checks import Check, CheckContext
    from bastion.data.dataset import Dataset
    from bastion.exceptions import TimeBudgetError
    from bastion.findings import Finding, Status

__all__ = ["labelled_rows", "not_shown_status", "stopped_by_time", "train_lacks"]


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


def train_lacks(train: Dataset, names: list[str]) -> str | None:
    """The reason to skip when the training set lacks some of the model inputs ``names``
    (read from the test set), else None."""
    lacking = [c for c in names if c not in train.features.columns]
    if not lacking:
        return None
    return (
        f"The train dataset lacks test feature(s) {lacking[:5]}: name columns that are not "
        "model inputs in data.non_features."
    )


def stopped_by_time(
    check: Check, ctx: CheckContext, err: TimeBudgetError, max_seconds: float | None
) -> Finding:
    """An ``error`` finding for a detector that did not finish within its time budget
    (``max_seconds``, or a caller's deadline when None): it never looked at every row, so
    the gate must not read its silence as a pass."""
    from bastion.findings import Status

    budget = time_budget_text(max_seconds)
    key = f"{check.category}.{check.name}.max_seconds"
    return check.finding(
        ctx,
        Status.ERROR,
        f"Not finished: {err} ({budget}). Nothing is known about the rows it did not "
        f"reach: raise {key} in the policy{_flag_hint(check)}, or run it on a sample of the "
        "training rows.",
        evidence={"max_seconds": max_seconds},
    )


def time_budget_text(max_seconds: float | None) -> str:
    """The budget that stopped a stage: ``max_seconds 60``, or the caller's deadline where the
    check has none of its own (``max_seconds: null`` inside an outer ``wall_deadline``)."""
    return f"max_seconds {max_seconds:g}" if max_seconds is not None else "the run's deadline"


# checks whose max_seconds `bastion attack --max-seconds` sets (POI001 and POI003 have none)
_TIMED_BY_THE_CLI = frozenset({"ADV001", "EXT001", "POI002", "PRV001", "PRV002"})


def _flag_hint(check: Check) -> str:
    return " (--max-seconds with bastion attack)" if check.id in _TIMED_BY_THE_CLI else ""


def not_shown_status(limited: bool, stopped: str | None) -> Status:
    """The status of figures within their limits from an attack that stopped short (time
    budget, Ctrl-C): a limit set and not shown to hold fails closed (it warned, and the gate
    let the warning through); a report-only run warns; after Ctrl-C a warning too, which the
    runner makes an error (it makes any interrupted attack finding but a failure one)."""
    from bastion.findings import Status

    return Status.FAIL if limited and stopped != "interrupted" else Status.WARN
