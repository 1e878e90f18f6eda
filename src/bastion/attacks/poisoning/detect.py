"""Poisoned or mislabelled training rows, found from the data and out-of-sample predictions.

Two detectors of label issues (label flipping, AML.T0020; OWASP ML02), both model-agnostic:

- **Confident learning** (Northcutt, Jiang and Chuang, "Confident Learning: Estimating
  Uncertainty in Dataset Labels", JAIR 2021). From out-of-sample class probabilities
  (cross-validated), each class gets a threshold, the mean probability of that class over
  the rows labelled with it; a row counts towards the *confident joint* cell (given label,
  class it confidently belongs to). The joint is calibrated to the label counts, and for
  each off-diagonal cell (given i, true j) the rows labelled i with the largest margin
  ``p_j - p_i`` are pruned ("prune by noise rate"); rows whose given label is still the
  prediction are kept. With ``refits`` > 0 (default 1) the probabilities are estimated
  again with the flagged rows left out of every training fold, and the pruning repeats
  with the original labels: the model that judges a row no longer learns from the flips.
  The refit ranks the rows: each cell's candidates are the larger of the rounds' noise
  counts (a refit's own counts fall on small sets), and each class keeps at most as many
  rows as the first round flagged, those the refit finds most suspicious. Measured with
  10% random flips over 8 seeds (precision, then recall, cleanlab -> one refit): breast
  cancer P 0.84 -> 0.89, R 0.87 -> 0.91; digits 0.78 -> 0.85, 0.88 -> 0.94; wine (178
  rows) 0.84 -> 0.90, 0.88 -> 0.90; iris 0.65 -> 0.71, 0.88 -> 0.89; a synthetic 1,000-row
  set (``make_classification``, 6 informative features), balanced 0.57 -> 0.57, 0.80 ->
  0.81, 90/10 0.830 -> 0.827, 0.807 -> 0.805 (the one setting a hair below cleanlab,
  within the seeds' spread; with 5% flips 0.64 -> 0.64, 0.79 -> 0.80). The refit's larger
  counts alone, without the cap, gained recall there but lost precision (0.74 and 0.53),
  and flagged 3.4% of the clean 90/10 set where cleanlab flags 2.6%. No class ever flags
  more rows than cleanlab on the same probabilities (``benchmarks/bench_poisoning.py
  --seeds 8``, and ``--rate 0`` for clean labels; the 5% and uncapped figures came from a
  one-off script over the same folds).
  ``refits=0`` is the paper's single pass and flags exactly what cleanlab's
  ``find_label_issues`` (``filter_by="prune_by_noise_rate"``) flags on the same
  probabilities (tested).
- **kNN label consistency**: on standardized features, the share of a row's ``k`` nearest
  neighbours (itself excluded) whose label differs; a row is flagged when another class
  outvotes its own label among its neighbours.

Exact copies of a row count as rows: copies of a flipped row vouch for each other (in each
other's training folds, and as each other's nearest neighbours). Rules that set them apart
failed on tables of discrete features or could be switched by adding copies (reviews);
the data-quality duplicates check (DQ005) reports them.

Metrics: ``precision = |flagged ∩ poisoned| / |flagged|`` and ``recall = |flagged ∩
poisoned| / |poisoned|`` over training rows (REFERENCE.md "Attack metrics").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from bastion._deadline import stop_at_deadline
from bastion.attacks.budget import report_stage
from bastion.attacks.poisoning._common import (
    as_float_matrix,
    encode_labels,
    jsonable,
    seed_estimator,
    take_rows,
)
from bastion.exceptions import ConfigError, DataError
from bastion.models.base import n_rows

__all__ = [
    "LabelIssues",
    "confident_learning",
    "default_estimator",
    "find_label_issues",
    "knn_label_consistency",
    "out_of_sample_proba",
    "precision_recall",
]

Method = Literal["confident_learning", "knn"]
METHODS: tuple[str, ...] = ("confident_learning", "knn")

# the paper's (and cleanlab's) tolerance when comparing a probability with its threshold
_TOLERANCE = 1e-6


@dataclass(frozen=True)
class LabelIssues:
    """Rows a detector flags as mislabelled or poisoned.

    Attributes
    ----------
    method:
        ``confident_learning``, ``knn``, ``spectral_signatures`` or ``activation_clustering``.
    flagged:
        Row positions (0-based), most suspicious first.
    scores:
        One suspicion score per row, higher is more suspicious (``1 - p(given label)`` for
        confident learning, the share of disagreeing neighbours for kNN, the outlier score
        for spectral signatures).
    details:
        Method-specific, JSON-compatible diagnostics (thresholds, confident joint ...).
    """

    method: str
    flagged: np.ndarray
    scores: np.ndarray
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def n_flagged(self) -> int:
        return len(self.flagged)

    @property
    def n_rows(self) -> int:
        return len(self.scores)

    @property
    def mask(self) -> np.ndarray:
        """A boolean per row: flagged or not."""
        out = np.zeros(self.n_rows, dtype=bool)
        out[self.flagged] = True
        return out

    def counts_by_class(self, y: Any) -> dict[Any, int]:
        """How many flagged rows carry each given label (labels as in ``y``)."""
        labels = np.asarray(y)[self.flagged]
        values, counts = np.unique(labels, return_counts=True)
        return {jsonable(v): int(c) for v, c in zip(values, counts, strict=True)}


def precision_recall(
    flagged: Iterable[int] | np.ndarray, truly_poisoned: Iterable[int] | np.ndarray
) -> tuple[float | None, float | None]:
    """Precision and recall of flagged rows against the rows known to be poisoned.

    Parameters:
        flagged: row positions a detector flagged (or a boolean mask over the rows).
        truly_poisoned: row positions that were poisoned, from a simulation (or a mask).

    Returns:
        ``(precision, recall)``; precision is ``None`` when nothing was flagged and recall
        is ``None`` when nothing was poisoned (0/0 is not a rate).

    Example::

        >>> precision_recall([1, 2, 3, 4], [2, 3, 9])
        (0.5, 0.6666666666666666)
    """
    found = _index_set(flagged)
    truth = _index_set(truly_poisoned)
    hits = len(found & truth)
    precision = hits / len(found) if found else None
    recall = hits / len(truth) if truth else None
    return precision, recall


def default_estimator(seed: int = 0) -> Any:
    """The default probability model: standardization then logistic regression.

    Fast, well calibrated enough for confident learning and stable on small data; the
    regularization keeps it from memorising the flipped labels.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, random_state=seed))


def out_of_sample_proba(
    estimator: Any,
    X: Any,
    y: Any,
    *,
    cv: int = 5,
    seed: int = 0,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Cross-validated class probabilities: each row is scored by a model that never saw it.

    Parameters:
        estimator: an unfitted scikit-learn classifier with ``predict_proba`` (cloned per
            fold).
        X: features (array or DataFrame, passed to the estimator as given).
        y: labels.
        cv: number of folds (stratified when every class has at least ``cv`` rows).
        seed: shuffles the folds.
        exclude: boolean mask of rows never used for training (they are still scored).

    Returns:
        Probabilities of shape (rows, classes), columns in sorted label order; a class that a
        training fold lacks gets probability 0 in that fold.

    Raises:
        ConfigError: ``cv`` is below 2 or above the number of rows, or the estimator has no
            ``predict_proba``.

    Example::

        >>> proba = out_of_sample_proba(default_estimator(), X, y, cv=5)  # doctest: +SKIP
    """
    return _cross_validated_proba(estimator, X, y, cv=cv, seed=seed, exclude=exclude)[0]


def _cross_validated_proba(
    estimator: Any,
    X: Any,
    y: Any,
    *,
    cv: int,
    seed: int,
    exclude: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`out_of_sample_proba`, and which classes the model that scored each row was
    trained on (rows, classes): a class a fold's training rows lack gets probability 0 there,
    which says nothing about it."""
    from sklearn.base import clone

    if not hasattr(estimator, "predict_proba"):
        # said before the first fold's fit, not as an AttributeError from inside it
        raise ConfigError(
            f"label-issue detection scores rows by out-of-sample probabilities; estimator "
            f"{type(estimator).__name__} has no predict_proba (an SVC needs probability=True; "
            "a LinearSVC can be wrapped in CalibratedClassifierCV)"
        )
    classes, idx = encode_labels(y)
    n = len(idx)
    if n_rows(X) != n:
        raise DataError(f"X has {n_rows(X)} rows but y has {n} labels")
    if len(classes) < 2:
        only = classes.tolist()[0]
        raise DataError(f"label-issue detection needs at least 2 classes; every label is {only!r}")
    proba = np.zeros((n, len(classes)))
    seen = np.zeros((n, len(classes)), dtype=bool)
    keep = np.ones(n, dtype=bool) if exclude is None else ~np.asarray(exclude, dtype=bool)
    folds = _folds(idx, cv, seed)
    for k, (train, test) in enumerate(folds, start=1):
        stage = f"cross-validated probabilities: fold {k} of {len(folds)}"
        stop_at_deadline(stage)  # the folds' training spends no queries: the time budget
        report_stage(stage)
        fit_rows = train[keep[train]]
        if len(np.unique(idx[fit_rows])) < 2:
            fit_rows = train  # a fold left with one class cannot be fitted: keep its rows
        if len(np.unique(idx[fit_rows])) < 2:
            # still one class (a binary minority of fewer rows than folds, all in this
            # fold's test rows): no model to score them; they stay unscored, as a class
            # a fold lacks does (from a review: the fit's ValueError ended the check)
            continue
        model = clone(estimator).fit(take_rows(X, fit_rows), classes[idx[fit_rows]])
        fold_proba = np.asarray(model.predict_proba(take_rows(X, test)), dtype=np.float64)
        _refuse_non_finite(fold_proba, f"{type(estimator).__name__}.predict_proba in fold {k}")
        columns = np.searchsorted(classes, np.asarray(model.classes_))
        proba[np.ix_(test, columns)] = fold_proba
        seen[np.ix_(test, columns)] = True
    return proba, seen


def confident_learning(
    y: Any, pred_probs: np.ndarray, *, classes: Iterable[Any] | None = None
) -> LabelIssues:
    """Label issues by confident learning ("prune by noise rate") on given probabilities.

    Parameters:
        y: given labels, one per row.
        pred_probs: out-of-sample probabilities, shape (rows, classes).
        classes: label of each probability column; defaults to the sorted distinct labels
            of ``y``.

    Returns:
        :class:`LabelIssues` with ``method="confident_learning"``; ``details`` holds the
        per-class thresholds and the calibrated confident joint (rows: given label,
        columns: estimated true label).

    Raises:
        DataError: shapes disagree, or a label is not one of ``classes``.

    Example::

        >>> issues = confident_learning(y, proba)  # doctest: +SKIP
        >>> issues.flagged[:5]  # doctest: +SKIP
    """
    probs = np.asarray(pred_probs, dtype=np.float64)
    labels, class_list = _label_indices(y, classes, probs)
    return _prune_by_noise_rate(labels, class_list, probs)[0]


def _prune_by_noise_rate(
    labels: np.ndarray,
    class_list: list[Any],
    probs: np.ndarray,
    at_least: np.ndarray | None = None,
    seen: np.ndarray | None = None,
    earlier: np.ndarray | None = None,
) -> tuple[LabelIssues, np.ndarray]:
    """Confident learning on label indices: the issues, and the per-cell prune counts used
    (``prune[j, i]``: rows given label i whose true class is estimated to be j).

    ``at_least`` holds an earlier round's counts: each cell prunes at least as many rows as
    it did then (see :func:`find_label_issues`). ``seen`` (rows, classes) says which classes
    the model that scored each row was trained on: a class's threshold is the mean over its
    rows scored by a model that saw it (none: the class is never confident)."""
    n, k = probs.shape
    counts = np.bincount(labels, minlength=k)

    # per-class threshold: the mean self-confidence of the rows labelled with the class
    thresholds = np.full(k, 2.0)  # an absent class is never confident
    # a class no training fold held when its rows were scored (one row, or a small class
    # left out by unstratified folds) reads probability 0 there: a threshold of 0 made every
    # row "confident" in it (from a review: one extra row of a new class on clean iris gave
    # 48 estimated issues and 6 flagged rows)
    scored = np.ones(n, dtype=bool) if seen is None else seen[np.arange(n), labels]
    judged = np.bincount(labels[scored], minlength=k)
    present = judged > 0
    sums = np.zeros(k)
    np.add.at(sums, labels[scored], probs[np.arange(n), labels][scored])
    thresholds[present] = np.maximum(sums[present] / judged[present], 2 * _TOLERANCE)
    unscored = [class_list[c] for c in np.flatnonzero((counts > 0) & ~present).tolist()]

    confident = probs >= thresholds - _TOLERANCE
    n_confident = confident.sum(axis=1)
    # a row scored by a model that never saw its own label cannot be judged: its
    # self-confidence of 0 says nothing (from a review: a correct row of a new class was
    # flagged first)
    any_confident = (n_confident > 0) & scored
    guess = np.where(n_confident > 1, probs.argmax(axis=1), confident.argmax(axis=1))
    joint = np.zeros((k, k), dtype=np.int64)
    np.add.at(joint, (labels[any_confident], guess[any_confident]), 1)
    np.fill_diagonal(joint, np.maximum(joint.diagonal(), 1))
    calibrated = _calibrate(joint, counts)

    # prune-by-noise-rate counts per (true j, given i), at least one row kept per class
    prune = _keep_one_per_class(calibrated.T)
    if at_least is not None:
        prune = np.maximum(prune, at_least)
    flagged = np.zeros(n, dtype=bool)
    for i in range(k):
        # unjudged rows (probability 0 for their own label) would rank first and take the
        # cell's slots, then be dropped (from a review: a refit flagged none of 1 due)
        rows = np.flatnonzero((labels == i) & scored)
        if len(rows) <= 1:
            continue
        for j in range(k):
            m = int(prune[j, i])
            if j == i or m <= 0:
                continue
            margin = probs[rows, j] - probs[rows, i]
            order = np.argsort(-margin)
            flagged[rows[order[:m]]] = True
    # a row whose given label is still the prediction is not an issue
    nudged = probs.copy()
    nudged[np.arange(n), labels] += _TOLERANCE
    flagged &= (nudged.argmax(axis=1) != labels) & scored
    if earlier is not None:
        # a refit that left a small class out of a fold cannot judge that fold's rows of it:
        # the earlier round's verdict stands
        flagged = np.where(scored, flagged, earlier)
    if at_least is not None:
        # each cell's count keeps one row per class, but the larger of two rounds' counts
        # could take a whole class (7 of 7 rows, where one round took 6): its row most
        # confidently of its label stays
        for cls in np.flatnonzero(counts > 0).tolist():
            members = np.flatnonzero(labels == cls)
            if flagged[members].all():
                flagged[members[np.argmax(probs[members, cls])]] = False

    scores = 1.0 - probs[np.arange(n), labels]
    issues = LabelIssues(
        method="confident_learning",
        flagged=_ranked(np.flatnonzero(flagged), scores),
        scores=scores,
        details={
            "classes": [jsonable(c) for c in class_list],
            "thresholds": [float(t) for t in thresholds],
            "confident_joint": calibrated.tolist(),
            "estimated_issues": int(calibrated.sum() - np.trace(calibrated)),
            # classes no model saw while scoring their own rows (never anyone's true class)
            "unscored_classes": [jsonable(c) for c in unscored],
            "unjudged_rows": int((~scored).sum()),
        },
    )
    return issues, prune


def knn_label_consistency(X: Any, y: Any, *, k: int = 10) -> LabelIssues:
    """Label issues by disagreement with the nearest neighbours.

    Features are standardized (text columns one-hot encoded); each row's ``k`` nearest
    neighbours exclude the row itself; its exact copies come first, and rows tied at the
    last distance share its votes in proportion (so that no verdict hangs on the order of
    the rows). A row is flagged when some other class gets more of its neighbours' votes
    than its own label.

    Parameters:
        X: features.
        y: given labels.
        k: neighbours per row (at most rows - 1).

    Returns:
        :class:`LabelIssues` with ``method="knn"``; scores are the share of neighbours with
        a different label.

    Raises:
        ConfigError: ``k`` is below 1 or not below the number of rows.

    Example::

        >>> knn_label_consistency(X, y, k=10).n_flagged  # doctest: +SKIP
    """
    from sklearn.preprocessing import StandardScaler

    classes, labels = encode_labels(y)
    Z = as_float_matrix(X)
    n = len(labels)
    if Z.shape[0] != n:
        raise DataError(f"X has {Z.shape[0]} rows but y has {n} labels")
    if not 1 <= k < n:
        raise ConfigError(f"k must be in [1, {n - 1}] for {n} rows; received {k}")
    Z = StandardScaler().fit_transform(Z)
    copies = _copies(Z)
    m = int(copies.max()) + 1
    first = np.full(m, n, dtype=np.intp)
    np.minimum.at(first, copies, np.arange(n))
    counts = np.zeros((m, len(classes)))
    np.add.at(counts, (copies, labels), 1.0)
    sizes = counts.sum(axis=1)
    # a row's own copies are its nearest rows: they vote first
    own_copies = sizes - 1
    # own copies past k vote in proportion: the row's k nearest are k of its copies, and
    # which k (the first in file order, as kneighbors breaks ties) must not decide (a
    # review: a clean cell read flagged or not by the order of the file)
    own_votes = np.minimum(own_copies, k)
    scale = own_votes / np.maximum(own_copies, 1.0)
    other_votes, other_weight = _nearest_votes(Z[first], sizes, counts, k - own_votes, k)
    votes = (
        other_votes[copies]
        + (counts[copies] - np.eye(len(classes))[labels]) * scale[copies][:, None]
    )
    total = (own_votes + other_weight)[copies]
    own = votes[np.arange(n), labels]
    others = votes.copy()
    others[np.arange(n), labels] = -1
    # a margin against the float sums' last bits (shares of 1/3 add to 0.9999999999999999)
    flagged = others.max(axis=1) > own + 1e-9
    scores = np.clip(np.where(total > 0, 1.0 - own / np.maximum(total, 1e-12), 0.0), 0.0, 1.0)
    return LabelIssues(
        method="knn",
        flagged=_ranked(np.flatnonzero(flagged), scores),
        scores=scores,
        details={
            "k": k,
            "classes": [jsonable(c) for c in classes],
            "distinct_rows": m,
        },
    )


def _nearest_votes(
    points: np.ndarray, weights: np.ndarray, ballots: np.ndarray, need: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per distinct point, the votes of the nearest other points until ``need`` votes are
    cast (``weights``: each point's votes, ``ballots``: their label counts): points nearer
    than the last one needed vote in full, points tied at its distance share what is left
    in proportion to their weights, so that ties never go by file order. Returns the votes
    (points, classes) and their number (``need``, or fewer where fewer points exist)."""
    from sklearn.neighbors import NearestNeighbors

    m = len(points)
    votes = np.zeros((m, ballots.shape[1]))
    cast = np.zeros(m)
    fetch = min(m, 3 * k + 1)  # room for ties at the last distance needed
    if fetch < 2:
        return votes, cast
    index = NearestNeighbors(n_neighbors=fetch).fit(points)
    # the search costs time in the square of the points (brute force past 15 features): in
    # chunks, with the time budget looked at between them
    for start in range(0, m, _KNN_CHUNK):
        stop = min(start + _KNN_CHUNK, m)
        stage = f"kNN label consistency: points {start + 1}-{stop} of {m}"
        stop_at_deadline(stage)
        report_stage(stage)
        dist, found = index.kneighbors(points[start:stop])
        rows = np.arange(start, stop)
        keep = _not_self(found, rows)
        dist = dist[keep].reshape(len(rows), fetch - 1)
        found = found[keep].reshape(len(rows), fetch - 1)
        want = need[rows]
        votes[rows], cast[rows], cut = _shared_votes(dist, found, weights, ballots, want)
        cut_rows = np.flatnonzero(cut)
        if fetch < m and len(cut_rows):
            # a tie that runs past the points fetched: every point at that distance shares
            # (from a review: a one-hot column of 50 levels, all equidistant, read by which
            # of them the search happened to return). One search for the chunk's such rows
            # (one per row took 408 s on 50,000 rows; a review), each row then keeping the
            # points within its own reach, by the tie test's own tolerance
            reach = dist[cut_rows, -1] + 1e-9 * np.maximum(1.0, dist[cut_rows, -1])
            far, near = index.radius_neighbors(
                points[rows[cut_rows]], radius=float(reach.max()) * (1 + 1e-12)
            )
            for j, i in enumerate(cut_rows.tolist()):
                p = int(rows[i])
                order = np.argsort(far[j], kind="stable")
                d_all, f_all = far[j][order], near[j][order]
                mine = (f_all != p) & (d_all <= reach[j])
                one = _shared_votes(
                    d_all[mine][None, :], f_all[mine][None, :], weights, ballots, want[i : i + 1]
                )
                votes[p], cast[p] = one[0][0], one[1][0]
    return votes, cast


def _shared_votes(
    dist: np.ndarray,
    found: np.ndarray,
    weights: np.ndarray,
    ballots: np.ndarray,
    want: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_nearest_votes` for rows of neighbours sorted by distance: the votes, their
    number, and whether the tie at the last distance needed reaches the last neighbour
    given (more points may share it)."""
    w = weights[found]
    need = want[:, None]
    cum = np.cumsum(w, axis=1)
    # the distance of the point whose votes reach what is needed (the last given where
    # they never do)
    last = np.minimum((cum < need).sum(axis=1), found.shape[1] - 1)
    edge = dist[np.arange(len(dist)), last][:, None]
    tie = np.abs(dist - edge) <= 1e-9 * np.maximum(1.0, edge)
    before = (dist < edge) & ~tie
    full = (w * before).sum(axis=1, keepdims=True)
    tied = (w * tie).sum(axis=1, keepdims=True)
    share = np.clip((need - full) / np.maximum(tied, 1e-12), 0.0, 1.0)
    coef = np.where(before, 1.0, 0.0) + np.where(tie, share, 0.0)
    idle = want <= 0
    coef[idle] = 0.0
    votes = np.einsum("pj,pjc->pc", coef, ballots[found])
    return votes, (coef * w).sum(axis=1), tie[:, -1] & ~idle


def find_label_issues(
    X: Any,
    y: Any,
    *,
    method: Method = "confident_learning",
    estimator: Any = None,
    cv: int = 5,
    seed: int = 0,
    refits: int = 1,
    k: int = 10,
    pred_probs: np.ndarray | None = None,
    classes: Iterable[Any] | None = None,
) -> LabelIssues:
    """Find mislabelled (possibly poisoned) training rows.

    Parameters:
        X: training features (array or DataFrame).
        y: given labels.
        method: ``confident_learning`` (default) or ``knn``.
        estimator: unfitted classifier with ``predict_proba`` for the out-of-sample
            probabilities; default :func:`default_estimator` on numeric features (text
            columns one-hot encoded, missing values imputed). A custom estimator gets ``X``
            as given.
        cv: folds of the cross-validation.
        seed: fold shuffling, and the estimator's seed (the default one's, or any unset
            ``random_state`` of a given one: two runs flag the same rows).
        refits: extra rounds that re-estimate the probabilities with the flagged rows left
            out of training (0 = the paper's single pass).
        k: neighbours for ``method="knn"``.
        pred_probs: out-of-sample probabilities to use instead of fitting (confident
            learning only; ``refits`` needs a fit and is then ignored).
        classes: label of each ``pred_probs`` column (default: the sorted distinct labels
            of ``y``; integer labels name their columns when ``y`` lacks a class).

    Returns:
        :class:`LabelIssues`; ``details["rounds"]`` says how many estimation rounds ran.

    Raises:
        ConfigError: unknown ``method``, ``refits`` < 0, or an invalid ``cv`` / ``k``.
        DataError: ``X`` and ``y`` disagree in length, or a label is missing.

    Example::

        >>> from sklearn.datasets import load_breast_cancer
        >>> X, y = load_breast_cancer(return_X_y=True)
        >>> issues = find_label_issues(X, y, seed=0)
        >>> issues.n_flagged < 40
        True
    """
    if method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}; received {method!r}")
    if refits < 0:
        raise ConfigError(f"refits must be >= 0; received {refits}")
    if method == "knn":
        return knn_label_consistency(X, y, k=k)
    if pred_probs is not None:
        issues = confident_learning(y, pred_probs, classes=classes)
        return _with_details(issues, rounds=1)
    if estimator is None:
        features: Any = as_float_matrix(X)
        model = default_estimator(seed)
    else:
        from sklearn.base import clone

        # a forest left with random_state=None flagged 61, 64 and 60 rows in three runs of
        # one seed (from a review); the caller's estimator stays as it was
        features, model = X, seed_estimator(clone(estimator), seed)
    probs, seen = _cross_validated_proba(model, features, y, cv=cv, seed=seed, exclude=None)
    labels, class_list = _label_indices(y, None, probs)
    issues, prune = _prune_by_noise_rate(labels, class_list, probs, seen=seen)
    # each class flags at most as many rows as the first round (the paper's pass) did
    cap = np.bincount(labels[issues.mask], minlength=len(class_list))
    rounds = 1
    for _ in range(refits):
        if issues.n_flagged == 0:
            break
        refit, refit_seen = _cross_validated_proba(
            model, features, y, cv=cv, seed=seed, exclude=issues.mask
        )
        # the refit's model no longer learns from the flagged rows, so it ranks them better;
        # but on small sets its noise counts fall (wine: recall 0.87 -> 0.85 with the refit's
        # own counts), so each cell prunes the larger of the rounds' counts: the candidates
        candidates, prune = _prune_by_noise_rate(
            labels, class_list, refit, at_least=prune, seen=refit_seen, earlier=issues.mask
        )
        # a row the refit could not score for its label keeps what an earlier round read
        probs = np.where(refit_seen[np.arange(len(labels)), labels][:, None], refit, probs)
        seen = seen | refit_seen
        issues = _at_most(candidates, cap, labels, probs, seen)
        rounds += 1
    return _with_details(issues, rounds=rounds, cv=cv)


def _at_most(
    candidates: LabelIssues,
    cap: np.ndarray,
    labels: np.ndarray,
    probs: np.ndarray,
    seen: np.ndarray,
) -> LabelIssues:
    """Of a refit's candidates, per given class the ``cap`` most suspicious by the margin of
    ``probs`` (the refit's, or an earlier round's for a row the refit could not score for
    its label): the best other class's probability less the given label's. The larger
    counts alone raised recall but flagged more rows than the paper's pass where classes
    overlap: on a 90/10 synthetic set with 5% flips, precision 0.64 -> 0.53, and 3.4% of a
    clean set's rows against 2.6% (a review); capped, precision and recall are at least
    cleanlab's on the sets measured but one, a hair below (see the module docstring).
    Scores and the rows no round could judge (``seen``: any round's model saw the class)
    come from the same probabilities (a refit's probability 0 for a class it lacked read as
    score 1, and its rows as unjudged though an earlier round had judged them; a review)."""
    n = len(labels)
    rows_n = np.arange(n)
    own = probs[rows_n, labels]
    others = probs.copy()
    others[rows_n, labels] = -np.inf
    margin = others.max(axis=1) - own
    mask = candidates.mask
    keep = np.zeros(n, dtype=bool)
    for cls in np.flatnonzero(cap).tolist():
        rows = np.flatnonzero(mask & (labels == cls))
        order = np.lexsort((rows, -margin[rows]))  # ties by position
        keep[rows[order[: int(cap[cls])]]] = True
    scores = 1.0 - own
    return LabelIssues(
        method=candidates.method,
        flagged=_ranked(np.flatnonzero(keep), scores),
        scores=scores,
        details={
            **candidates.details,
            "candidates": candidates.n_flagged,
            "unjudged_rows": int((~seen[rows_n, labels]).sum()),
        },
    )


# -- internals ---------------------------------------------------------------------------------

_KNN_CHUNK = 2_048  # distinct points per kNN query between two looks at the time budget


def _not_self(found: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Which of each point's ``found`` neighbours (a ``kneighbors()`` row, itself among them
    at distance 0) are others: a mask with one entry per row dropped, the point itself, or
    the first where it is not among them."""
    keep: np.ndarray = found != points[:, None]
    crowded = keep.all(axis=1)
    keep[crowded, 0] = False
    return keep


def _copies(X: Any) -> np.ndarray:
    """Each row's group of exact copies (rows equal in every feature), numbered in the order
    of their first rows: ``arange(n)`` when no row repeats."""
    if isinstance(X, pd.DataFrame):
        keys: np.ndarray = pd.util.hash_pandas_object(X, index=False).to_numpy()
    else:
        arr = np.asarray(X)
        arr = arr.reshape(arr.shape[0], -1) if arr.ndim else arr.reshape(1, 1)
        if arr.dtype.kind in "biuf":
            # + 0.0: -0.0 and 0.0 are one value (their bytes differ)
            flat = np.ascontiguousarray(arr, dtype=np.float64) + 0.0
            keys = flat.view(np.dtype((np.void, flat.dtype.itemsize * flat.shape[1])))[:, 0]
        else:
            keys = pd.util.hash_pandas_object(pd.DataFrame(arr), index=False).to_numpy()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    # renumber by first occurrence, so that a table without copies keeps its row order
    rank = np.empty(len(first), dtype=np.intp)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    groups: np.ndarray = rank[inverse.reshape(-1)]
    return groups


def _folds(labels: np.ndarray, cv: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import KFold, StratifiedKFold

    n = len(labels)
    if not 2 <= cv <= n:
        raise ConfigError(f"cv must be in [2, {n}] for {n} rows; received {cv}")
    smallest = int(np.bincount(labels).min())
    # stratify when every class can appear in every fold (sklearn warns otherwise)
    splitter: Any = (
        StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
        if smallest >= cv
        else KFold(n_splits=cv, shuffle=True, random_state=seed)
    )
    return [(np.asarray(a), np.asarray(b)) for a, b in splitter.split(np.zeros(n), labels)]


def _label_indices(
    y: Any, classes: Iterable[Any] | None, probs: np.ndarray
) -> tuple[np.ndarray, list[Any]]:
    if probs.ndim != 2:
        raise DataError(f"pred_probs must be (rows, classes); received shape {probs.shape}")
    if classes is None:
        found, labels = encode_labels(y)
        class_list = list(found)
        if len(class_list) > probs.shape[1]:
            raise DataError(
                f"y has {len(class_list)} distinct labels but pred_probs has "
                f"{probs.shape[1]} columns; pass classes= to map the columns"
            )
        if len(class_list) < probs.shape[1]:
            # a class y lacks: the sorted labels no longer say which column is whose.
            # Integer labels name their columns (as in cleanlab); anything else must be told
            given = np.asarray(y).reshape(-1)
            if given.dtype.kind not in "iu" or given.min() < 0 or given.max() >= probs.shape[1]:
                raise DataError(
                    f"y has {len(class_list)} distinct labels but pred_probs has "
                    f"{probs.shape[1]} columns: pass classes= to say which column is whose"
                )
            labels = given.astype(np.intp)
            class_list = list(range(probs.shape[1]))
    else:
        class_list = list(classes)
        if len(class_list) != probs.shape[1]:
            raise DataError(
                f"classes has {len(class_list)} labels but pred_probs has {probs.shape[1]} columns"
            )
        lookup = {c: i for i, c in enumerate(class_list)}
        given = np.asarray(y).reshape(-1)
        try:
            labels = np.array([lookup[v] for v in given.tolist()], dtype=np.intp)
        except KeyError as err:
            raise DataError(
                f"label {err.args[0]!r} is not one of classes {class_list[:10]}"
            ) from err
    if len(labels) != probs.shape[0]:
        raise DataError(f"y has {len(labels)} labels but pred_probs has {probs.shape[0]} rows")
    _refuse_non_finite(probs, "pred_probs")
    return labels, class_list


def _refuse_non_finite(probs: np.ndarray, what: str) -> None:
    """A NaN makes its class's threshold NaN, and no row is ever confident in that class:
    detection weakens with no sign (from a review: one NaN row took breast cancer's
    precision and recall from 0.88 / 0.90 to 0.58 / 0.56). cleanlab accepts them too."""
    bad = np.argwhere(~np.isfinite(probs))
    if len(bad):
        row, col = (int(v) for v in bad[0])
        raise DataError(
            f"{what} holds {len(bad)} NaN or infinite value(s), the first at row {row}, "
            f"column {col} ({probs[row, col]}); label-issue detection needs finite probabilities"
        )


def _round_preserving_sum(values: np.ndarray) -> np.ndarray:
    """Round to integers keeping the (rounded) total: largest remainders move first."""
    ints = np.round(values)
    target = np.round(values.sum())
    diff = int(np.round(target - ints.sum()))
    while diff != 0:
        step = 1 if diff > 0 else -1
        # numpy's default sort, as the reference implementation: exact ties break the same way
        order = np.argsort(values - ints)
        order = order[::-1] if step > 0 else order
        for i in order[: min(abs(diff), len(values))]:
            ints[i] += step
        diff = int(np.round(target - ints.sum()))
    return ints.astype(np.int64)


def _calibrate(joint: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Scale each row to its label count and the whole to the row total (paper, eq. 3)."""
    rows = joint.sum(axis=1).astype(np.float64)
    scaled = (joint.T / np.maximum(rows, 1e-100) * counts).T
    scaled = scaled / max(float(scaled.sum()), 1e-100) * counts.sum()
    return np.vstack([_round_preserving_sum(row) for row in scaled])


def _keep_one_per_class(prune: np.ndarray) -> np.ndarray:
    """Make each class keep at least one row, taking the difference from its noise cells."""
    prune = prune.astype(np.float64)
    diagonal = prune.diagonal().copy()
    raised = np.maximum(diagonal, 1.0)
    nonzero = np.maximum(np.count_nonzero(prune, axis=0) - 1.0, 1.0)
    out = prune - (raised - diagonal) / nonzero
    out[out < 0] = 0
    np.fill_diagonal(out, raised)
    # truncation, as the paper's reference implementation does
    truncated: np.ndarray = out.astype(np.int64)
    return truncated


def _ranked(rows: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Row positions, highest score first (ties by position: scores equal but for their
    last bits, summed in another order, count as ties; a review saw the order change with
    the kNN search's chunks)."""
    order = np.lexsort((rows, -np.round(scores[rows], 12)))
    ranked: np.ndarray = rows[order].astype(np.intp)
    return ranked


def _index_set(rows: Iterable[int] | np.ndarray) -> set[int]:
    arr = rows if isinstance(rows, np.ndarray) else np.asarray(list(rows))
    if arr.dtype == bool:
        # a mask (LabelIssues.mask, cleanlab's output) read as numbers was the set {0, 1}:
        # a detector that flagged exactly the poisoned rows scored precision 0
        arr = np.flatnonzero(arr)
    return {int(i) for i in arr.reshape(-1)}


def _with_details(issues: LabelIssues, **extra: Any) -> LabelIssues:
    return LabelIssues(
        method=issues.method,
        flagged=issues.flagged,
        scores=issues.scores,
        details={**issues.details, **extra},
    )
