"""Label-issue detection: confident learning (parity with cleanlab, then better), kNN."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB

from bastion.attacks.poisoning.detect import (
    LabelIssues,
    confident_learning,
    default_estimator,
    find_label_issues,
    knn_label_consistency,
    out_of_sample_proba,
    precision_recall,
)
from bastion.attacks.poisoning.simulate import flip_labels
from bastion.exceptions import ConfigError, DataError

cleanlab_filter = pytest.importorskip("cleanlab.filter")


@pytest.fixture(scope="module")
def noisy_cancer() -> dict[str, Any]:
    """Breast cancer with 10% random flips (the issue's setting)."""
    X, y = load_breast_cancer(return_X_y=True)
    y_noisy, flipped = flip_labels(y, 0.1, rng=0)
    proba = out_of_sample_proba(default_estimator(0), X, y_noisy, cv=5, seed=0)
    return {"X": X, "y": y, "y_noisy": y_noisy, "flipped": flipped, "proba": proba}


@pytest.fixture(scope="module")
def noisy_digits() -> dict[str, Any]:
    X, y = load_digits(return_X_y=True)
    y_noisy, flipped = flip_labels(y, 0.1, rng=1)
    proba = out_of_sample_proba(default_estimator(1), X, y_noisy, cv=5, seed=1)
    return {"X": X, "y_noisy": y_noisy, "flipped": flipped, "proba": proba}


@pytest.mark.parametrize("data", ["noisy_cancer", "noisy_digits"])
def test_single_pass_flags_exactly_what_cleanlab_flags(
    data: str, request: pytest.FixtureRequest
) -> None:
    d = request.getfixturevalue(data)
    ours = confident_learning(d["y_noisy"], d["proba"])
    theirs = cleanlab_filter.find_label_issues(d["y_noisy"], d["proba"], n_jobs=1)
    assert ours.n_flagged > 0
    np.testing.assert_array_equal(ours.mask, theirs)
    # the same through find_label_issues with given probabilities
    given = find_label_issues(d["X"], d["y_noisy"], pred_probs=d["proba"])
    np.testing.assert_array_equal(given.mask, theirs)


def test_beats_cleanlab_on_breast_cancer_with_ten_percent_flips(
    noisy_cancer: dict[str, Any],
) -> None:
    d = noisy_cancer
    # cleanlab on the same estimator, folds and probabilities as our first round
    theirs = np.flatnonzero(cleanlab_filter.find_label_issues(d["y_noisy"], d["proba"], n_jobs=1))
    ours = find_label_issues(d["X"], d["y_noisy"], seed=0)
    p_ours, r_ours = precision_recall(ours.flagged, d["flipped"])
    p_cl, r_cl = precision_recall(theirs, d["flipped"])
    assert p_ours is not None
    assert r_ours is not None
    assert p_cl is not None
    assert r_cl is not None
    assert p_ours >= p_cl
    assert r_ours >= r_cl
    assert p_ours >= 0.85
    assert r_ours >= 0.85
    # and far more precise than "the out-of-sample prediction differs from the label"
    bare = np.flatnonzero(d["proba"].argmax(axis=1) != d["y_noisy"])
    p_bare, _ = precision_recall(bare, d["flipped"])
    assert p_bare is not None
    assert p_ours > p_bare + 0.1
    assert ours.details["rounds"] == 2


def test_refit_beats_cleanlab_on_digits(noisy_digits: dict[str, Any]) -> None:
    d = noisy_digits
    theirs = np.flatnonzero(cleanlab_filter.find_label_issues(d["y_noisy"], d["proba"], n_jobs=1))
    ours = find_label_issues(d["X"], d["y_noisy"], seed=1)
    p_ours, r_ours = precision_recall(ours.flagged, d["flipped"])
    p_cl, r_cl = precision_recall(theirs, d["flipped"])
    assert p_ours is not None
    assert r_ours is not None
    assert p_cl is not None
    assert r_cl is not None
    assert p_ours >= p_cl
    assert r_ours >= r_cl


@pytest.mark.parametrize("loader", [load_wine, load_iris], ids=["wine", "iris"])
def test_refit_beats_cleanlab_on_small_multiclass_sets(loader: Any) -> None:
    """On 150-178 rows a refit's own noise counts fell, and its recall fell below cleanlab's
    (wine 0.85 against 0.87 over 16 seeds). Each cell now prunes the larger of the rounds'
    counts. One seed's figures swing by 0.1 on such sets, so the means over 8 are compared."""
    X, y = loader(return_X_y=True)
    ours, theirs = [], []
    for seed in range(8):
        y_noisy, flipped = flip_labels(y, 0.1, rng=seed)
        proba = out_of_sample_proba(default_estimator(seed), X, y_noisy, cv=5, seed=seed)
        cl = np.flatnonzero(cleanlab_filter.find_label_issues(y_noisy, proba, n_jobs=1))
        theirs.append(precision_recall(cl, flipped))
        ours.append(precision_recall(find_label_issues(X, y_noisy, seed=seed).flagged, flipped))
    p_ours, r_ours = np.mean(np.array(ours, dtype=float), axis=0)
    p_cl, r_cl = np.mean(np.array(theirs, dtype=float), axis=0)
    assert p_ours >= p_cl
    assert r_ours >= r_cl


def test_a_refit_prunes_at_least_the_first_rounds_counts(noisy_cancer: dict[str, Any]) -> None:
    """The refit's candidates: its ranking with the first round's counts as a floor (a refit
    alone would prune fewer rows in some cells; with the floor they are a superset of what
    the refit's own counts flag, rows the model still predicts as labelled aside). Of those,
    each class keeps at most the first round's count, the most suspicious by the refit."""
    from bastion.attacks.poisoning.detect import _label_indices, _prune_by_noise_rate

    d = noisy_cancer
    labels, classes = _label_indices(d["y_noisy"], None, d["proba"])
    first, counts = _prune_by_noise_rate(labels, classes, d["proba"])
    refit = out_of_sample_proba(default_estimator(0), d["X"], d["y_noisy"], seed=0,
                                exclude=first.mask)  # fmt: skip
    alone, alone_counts = _prune_by_noise_rate(labels, classes, refit)
    floored, used = _prune_by_noise_rate(labels, classes, refit, at_least=counts)
    np.testing.assert_array_equal(used, np.maximum(alone_counts, counts))
    assert set(alone.flagged) <= set(floored.flagged)
    # what find_label_issues returns with one refit: candidates, at most the first round's
    # count per class, the largest refit margins first
    found = find_label_issues(d["X"], d["y_noisy"], seed=0)
    assert found.details["candidates"] == floored.n_flagged
    assert set(found.flagged) <= set(floored.flagged)
    for cls in range(len(classes)):
        of_class = labels == cls
        taken = found.mask & of_class
        assert taken.sum() == min(int((first.mask & of_class).sum()),
                                  int((floored.mask & of_class).sum()))  # fmt: skip
        margin = refit[:, 1 - cls] - refit[:, cls]
        left_out = floored.mask & of_class & ~found.mask
        if left_out.any() and taken.any():
            assert margin[taken].min() >= margin[left_out].max()


def test_a_refit_flags_no_more_rows_of_a_class_than_cleanlab() -> None:
    """From a review: where classes overlap (a 90/10 synthetic set) the refit's larger
    counts flagged 3.4% of a clean set's rows against cleanlab's 2.6%, and on 5% flips
    precision fell from 0.64 to 0.53. Each class now keeps at most the first round's
    count, which is cleanlab's on the same probabilities."""
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=1000, n_features=10, n_informative=6,
                               weights=[0.9, 0.1], random_state=1, flip_y=0)  # fmt: skip
    for seed in range(3):
        proba = out_of_sample_proba(default_estimator(seed), X, y, cv=5, seed=seed)
        theirs = cleanlab_filter.find_label_issues(y, proba, n_jobs=1)
        ours = find_label_issues(X, y, seed=seed)
        assert ours.details["rounds"] == 2
        for cls in (0, 1):
            assert (ours.mask & (y == cls)).sum() <= (theirs & (y == cls)).sum()


def test_rows_an_earlier_round_judged_are_not_unjudged_after_a_refit() -> None:
    """From a review: a refit lacking a small class in a fold counted its rows as unjudged
    (POI001 then said none of them could be flagged) though the first round had judged
    them, and scored them 1.0 from the refit's probability 0, ranking them first."""
    from sklearn.datasets import make_classification

    for state in (6, 7, 8):
        X, y = make_classification(n_samples=80, n_features=5, n_informative=3, n_classes=3,
                                   weights=[0.6, 0.33, 0.07], flip_y=0.2,
                                   random_state=state)  # fmt: skip
        single = find_label_issues(X, y, seed=0, refits=0)
        refit = find_label_issues(X, y, seed=0, refits=1)
        assert refit.details["unjudged_rows"] <= single.details["unjudged_rows"], state
        if state == 6:
            assert refit.scores.max() < 1.0


def test_a_refit_keeps_a_row_of_every_class() -> None:
    """Each round's counts keep one row per class, but the larger of two rounds' counts
    took all 7 rows of a small class (the first round took 6)."""
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=60, n_features=5, n_informative=3, n_classes=3,
                               weights=[0.6, 0.3, 0.1], flip_y=0.15, random_state=8)  # fmt: skip
    mask = find_label_issues(X, y, refits=1, seed=0).mask
    for cls in np.unique(y):
        assert not mask[y == cls].all(), f"class {cls}: every row flagged"
    assert mask[y == 2].sum() >= 5


def test_the_keep_one_guard_keeps_the_row_most_confidently_of_its_class() -> None:
    # the guard itself, since rows no refit could judge keep their first verdict and the
    # set-up above no longer reaches it: an earlier round's count takes all 3 rows of class 1
    from bastion.attacks.poisoning.detect import _prune_by_noise_rate

    labels = np.array([0] * 10 + [1] * 3)
    probs = np.array([[0.95, 0.05]] * 10 + [[0.9, 0.1], [0.7, 0.3], [0.8, 0.2]])
    at_least = np.array([[0, 3], [0, 0]])
    issues, _ = _prune_by_noise_rate(labels, [0, 1], probs, at_least=at_least)
    assert sorted(issues.flagged.tolist()) == [10, 12]  # row 11, of 0.3 for class 1, stays


def test_knn_label_consistency_finds_flips(noisy_cancer: dict[str, Any]) -> None:
    d = noisy_cancer
    issues = find_label_issues(d["X"], d["y_noisy"], method="knn", k=10)
    assert issues.method == "knn"
    precision, recall = precision_recall(issues.flagged, d["flipped"])
    assert precision is not None
    assert recall is not None
    assert precision >= 0.7
    assert recall >= 0.85
    # scores are the share of disagreeing neighbours; flagged rows are outvoted
    assert issues.scores.min() >= 0
    assert issues.scores.max() <= 1
    assert (issues.scores[issues.flagged] >= 0.5).all()


def test_knn_scores_by_hand() -> None:
    # two tight clusters; row 0 sits in cluster A with cluster B's label
    X = np.array([[0.0], [0.1], [0.2], [0.3], [10.0], [10.1], [10.2], [10.3]])
    y = np.array([1, 0, 0, 0, 1, 1, 1, 1])
    issues = knn_label_consistency(X, y, k=3)
    assert issues.flagged.tolist() == [0]
    assert issues.scores[0] == pytest.approx(1.0)
    assert issues.scores[1] == pytest.approx(1 / 3)


def test_knn_in_chunks_finds_the_neighbours_kneighbors_finds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without ties, each row's votes are those of the k rows sklearn's kneighbors()
    finds; the search runs in chunks (the time budget is looked at between them), which
    change nothing."""
    from sklearn.neighbors import NearestNeighbors
    from sklearn.preprocessing import StandardScaler

    from bastion.attacks.poisoning import detect

    X, y = load_breast_cancer(return_X_y=True)
    y_noisy, _ = flip_labels(y, 0.1, rng=0)
    whole = knn_label_consistency(X, y_noisy, k=10)
    Z = StandardScaler().fit_transform(X)
    _, near = NearestNeighbors(n_neighbors=10).fit(Z).kneighbors()
    agree = (y_noisy[near] == y_noisy[:, None]).sum(axis=1)
    np.testing.assert_allclose(whole.scores, 1 - agree / 10)
    np.testing.assert_array_equal(whole.mask, agree < 5)  # two classes: outvoted below 5
    monkeypatch.setattr(detect, "_KNN_CHUNK", 97)  # chunks that end anywhere
    chunked = knn_label_consistency(X, y_noisy, k=10)
    np.testing.assert_array_equal(chunked.flagged, whole.flagged)
    np.testing.assert_allclose(chunked.scores, whole.scores)


def test_knn_verdicts_do_not_hang_on_the_order_of_the_rows() -> None:
    """From a review: on discrete features every row of a cell ties at distance 0, and
    kneighbors breaks ties by index: the cell's first rows in file order voted for all of
    it. Sorted by label, 137 rows of a table with 40 flips were flagged (precision 0.25).
    Ties now share the votes."""
    rng = np.random.default_rng(0)
    smoker = rng.integers(0, 2, 1000)
    X = np.column_stack([smoker, rng.integers(0, 2, 1000), rng.integers(0, 2, 1000)])
    y = smoker.copy()
    flipped = rng.choice(1000, 40, replace=False)
    y[flipped] = 1 - y[flipped]
    flipped_first = np.argsort(~np.isin(np.arange(1000), flipped), kind="stable")
    for order in (np.arange(1000), np.argsort(y, kind="stable"), flipped_first):
        issues = knn_label_consistency(X[order], y[order], k=10)
        assert sorted(order[issues.flagged].tolist()) == sorted(flipped.tolist())


def test_a_tie_wider_than_the_search_is_shared_by_all_its_points() -> None:
    """From a review: a one-hot column of 50 levels, every level equidistant from every
    other, read by which levels the search happened to return (past 3k + 1 of them): a row
    was flagged in every order, where all 49 others sharing the votes do not flag it."""
    rng = np.random.default_rng(0)
    levels = np.repeat(np.arange(50), 4)
    labels = np.where(levels < 31, "a", "b").astype(object)
    labels[levels == 49] = ["a", "a", "b", "b"]
    watched = int(np.flatnonzero(levels == 49)[0])
    for _ in range(5):
        order = rng.permutation(len(levels))
        frame = pd.DataFrame({"level": levels[order].astype(str)})
        issues = knn_label_consistency(frame, labels[order], k=10)
        at = int(np.flatnonzero(order == watched)[0])
        assert not issues.mask[at]
        # its own copies vote 1 a and 2 b; the other 7 votes are shared by the 49 other
        # levels' 196 rows, 124 of them a: 1 - (1 + 7 x 124 / 196) / 10
        assert issues.scores[at] == pytest.approx(1 - (1 + 7 * 124 / 196) / 10, abs=1e-9)


def test_copies_in_a_table_of_few_distinct_rows_are_the_data() -> None:
    """From reviews of a rule that set copies apart: on discrete features every row is a
    copy of its cell; kept apart, kNN's neighbours were every other cell (all 1,000 rows of
    a clean table flagged) and cross-validation predicted cells no fold had seen (1,097 of
    2,000), and a tail of 2% rare rows switched a clean table into that rule (48%
    flagged). Copies count as rows."""
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.default_rng(2)
    smoker = rng.choice(["yes", "no"], 1000)
    frame = pd.DataFrame(
        {"smoker": smoker, "a": rng.choice(["x", "y"], 1000), "b": rng.choice(["u", "v"], 1000)}
    )
    knn = find_label_issues(frame, smoker == "yes", method="knn", k=10)
    assert knn.n_flagged == 0
    X = rng.integers(0, 3, size=(2000, 3)).astype(float)
    y = ((X[:, 0] == 1) ^ (X[:, 1] == X[:, 2])).astype(int)
    tree = DecisionTreeClassifier(min_samples_leaf=5)
    assert find_label_issues(X, y, seed=0, estimator=tree).n_flagged == 0
    bits = rng.integers(0, 2, size=(3000, 4))
    label = (bits[:, 0] ^ bits[:, 1]) | (bits[:, 2] & bits[:, 3])
    rare = np.zeros(3000)
    rare[rng.choice(3000, 60, replace=False)] = rng.normal(size=60)  # 60 rows of their own
    tail = np.column_stack([bits, rare])
    # a few of the 60 rows of their own may be outvoted by the cells nearest them (9)
    assert find_label_issues(tail, label, method="knn").n_flagged <= 30
    assert find_label_issues(tail, label, seed=0, estimator=tree).n_flagged <= 30


def test_knn_stops_between_chunks_at_the_wall_deadline() -> None:
    from bastion._deadline import wall_deadline
    from bastion.exceptions import TimeBudgetError

    X, y = load_breast_cancer(return_X_y=True)
    with wall_deadline(1e-9), pytest.raises(TimeBudgetError, match="kNN label consistency"):
        knn_label_consistency(X, y, k=10)


def test_few_rows_flagged_on_clean_labels() -> None:
    X, y = load_breast_cancer(return_X_y=True)
    issues = find_label_issues(X, y, seed=0)
    assert issues.n_flagged / len(y) < 0.05


def test_deterministic_under_a_seed(noisy_cancer: dict[str, Any]) -> None:
    d = noisy_cancer
    X, y = d["X"][:250], d["y_noisy"][:250]
    a = find_label_issues(X, y, seed=3)
    b = find_label_issues(X, y, seed=3)
    np.testing.assert_array_equal(a.flagged, b.flagged)
    np.testing.assert_array_equal(a.scores, b.scores)


def test_a_given_estimators_unset_seed_is_the_runs_seed(noisy_cancer: dict[str, Any]) -> None:
    """A forest with random_state=None flagged 61, 64 and 60 rows in three runs of one seed
    (from a review); the caller's estimator is left as it was."""
    from sklearn.ensemble import RandomForestClassifier

    d = noisy_cancer
    forest = RandomForestClassifier(n_estimators=10)
    a = find_label_issues(d["X"][:250], d["y_noisy"][:250], seed=3, estimator=forest)
    b = find_label_issues(d["X"][:250], d["y_noisy"][:250], seed=3, estimator=forest)
    np.testing.assert_array_equal(a.flagged, b.flagged)
    assert forest.random_state is None


def test_one_class_or_a_binary_minority_smaller_than_the_folds() -> None:
    """A binary minority of fewer rows than folds can fall in one fold's test rows, leaving
    its training rows one class: the fit's ValueError ended POI001 (from a review). Those
    rows stay unscored; one class in all is refused by name."""
    X, y = load_breast_cancer(return_X_y=True)
    majority = np.flatnonzero(y == 1)[:200]
    for minority in (1, 2):
        for seed in range(3):
            rows = np.concatenate([majority, np.flatnonzero(y == 0)[:minority]])
            issues = find_label_issues(X[rows], y[rows], seed=seed, refits=0)
            assert issues.details["unscored_classes"] in ([], [0])
    with pytest.raises(DataError, match="at least 2 classes; every label is 1"):
        find_label_issues(X[majority], y[majority])


def test_flagged_are_ranked_and_scores_are_one_minus_self_confidence(
    noisy_cancer: dict[str, Any],
) -> None:
    d = noisy_cancer
    issues = confident_learning(d["y_noisy"], d["proba"])
    expected = 1 - d["proba"][np.arange(len(d["y_noisy"])), d["y_noisy"]]
    np.testing.assert_allclose(issues.scores, expected)
    assert np.all(np.diff(issues.scores[issues.flagged]) <= 0)
    counts = issues.counts_by_class(d["y_noisy"])
    assert sum(counts.values()) == issues.n_flagged


def test_string_labels_and_text_columns() -> None:
    X, y = load_breast_cancer(return_X_y=True)
    names = np.where(y == 1, "benign", "malignant")
    y_noisy, flipped = flip_labels(names, 0.1, rng=0)
    frame = pd.DataFrame(X[:, :10], columns=[f"f{i}" for i in range(10)])
    frame["site"] = np.where(np.arange(len(y)) % 3 == 0, "north", "south")
    issues = find_label_issues(frame, y_noisy, seed=0)
    precision, recall = precision_recall(issues.flagged, flipped)
    assert precision is not None
    assert recall is not None
    assert precision > 0.6
    assert recall > 0.6
    assert set(issues.counts_by_class(y_noisy)) <= {"benign", "malignant"}


def test_probabilities_with_a_class_the_labels_lack() -> None:
    """Labels {0, 2} beside three probability columns: integer labels name their columns,
    as in cleanlab (label 2 used to be read from column 1, the second sorted label), and
    other labels must say which column is whose."""
    rng = np.random.default_rng(0)
    n = 300
    true = rng.choice([0, 2], n)
    y = true.copy()
    flips = rng.choice(n, 30, replace=False)
    y[flips] = 2 - y[flips]
    proba = np.empty((n, 3))
    for i in range(n):
        alpha = np.array([1.0, 0.3, 1.0])
        alpha[true[i]] = 6.0
        proba[i] = rng.dirichlet(alpha)
    ours = find_label_issues(None, y, pred_probs=proba)
    with pytest.warns(UserWarning, match="too few examples"):  # class 1 has none
        theirs = np.flatnonzero(cleanlab_filter.find_label_issues(y, proba, n_jobs=1))
    np.testing.assert_array_equal(np.sort(ours.flagged), theirs)
    told = find_label_issues(None, y, pred_probs=proba, classes=[0, 1, 2])
    np.testing.assert_array_equal(np.sort(told.flagged), theirs)
    names = np.where(y == 2, "c", "a")
    with pytest.raises(DataError, match="pass classes= to say which column is whose"):
        find_label_issues(None, names, pred_probs=proba)
    named = find_label_issues(None, names, pred_probs=proba, classes=["a", "b", "c"])
    np.testing.assert_array_equal(np.sort(named.flagged), theirs)


def test_custom_estimator_gets_the_data_as_given(noisy_cancer: dict[str, Any]) -> None:
    d = noisy_cancer
    est = GaussianNB()
    frame = pd.DataFrame(d["X"]).rename(columns=str)
    issues = find_label_issues(frame, d["y_noisy"], estimator=est, seed=0, refits=0)
    proba = out_of_sample_proba(est, frame, d["y_noisy"], seed=0)
    np.testing.assert_array_equal(issues.mask, confident_learning(d["y_noisy"], proba).mask)


def test_out_of_sample_proba_fills_missing_classes() -> None:
    # class 2 has one row: the folds without it must still give a 3-column answer
    X = np.arange(20, dtype=float).reshape(-1, 1)
    y = np.array([0] * 10 + [1] * 9 + [2])
    proba = out_of_sample_proba(LogisticRegression(), X, y, cv=5, seed=0)
    assert proba.shape == (20, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


@pytest.mark.parametrize("loader", [load_iris, load_wine])
def test_a_class_no_fold_saw_is_never_anyones_true_class(loader: Any) -> None:
    # from a review: one row of a new class read probability 0 out of sample, its threshold
    # fell to the floor, and every row became "confident" in it (clean iris: 48 estimated
    # issues, 6 flagged rows)
    X, y = loader(return_X_y=True)
    y = y.copy()
    y[0] = 99
    issues = find_label_issues(X, y, seed=0)
    assert issues.details["unscored_classes"] == [99]
    assert issues.details["thresholds"][-1] == 2.0
    assert issues.n_flagged == 0
    assert issues.details["estimated_issues"] == 0
    assert (
        find_label_issues(X, loader(return_X_y=True)[1], seed=0).details["unscored_classes"] == []
    )


def test_rows_no_model_scored_with_their_own_class_are_not_judged() -> None:
    # two correct rows of a new class, held out together: their own probability of 0 said
    # nothing, yet one was flagged first
    from sklearn.model_selection import KFold

    X, y = load_iris(return_X_y=True)
    X = np.vstack([X, [[9.0, 6.0, 9.0, 4.0], [9.2, 6.1, 9.1, 4.1]]])
    y = np.append(y, [3, 3])
    n = len(y)
    seed = next(
        s
        for s in range(20)
        if any({n - 2, n - 1} <= set(t) for _, t in KFold(5, shuffle=True, random_state=s).split(X))
    )
    issues = find_label_issues(X, y, seed=seed, refits=0)
    assert issues.details["unscored_classes"] == [3]
    assert issues.details["unjudged_rows"] == 2
    assert not {n - 2, n - 1} & set(issues.flagged.tolist())


def test_unjudged_rows_take_no_cells_slot() -> None:
    # from a review: rows a refit could not score for their label (probability 0) ranked
    # first in their cell, took its one slot and were then dropped: the due row went
    # unflagged
    from bastion.attacks.poisoning.detect import _prune_by_noise_rate

    labels = np.array([0] * 10 + [1] * 5)
    probs = np.array([[0.95, 0.05]] * 10 + [[1.0, 0.0]] * 3 + [[0.1, 0.9], [0.9, 0.1]])
    seen = np.ones((15, 2), dtype=bool)
    seen[10:13, 1] = False
    earlier = np.zeros(15, dtype=bool)
    earlier[14] = True
    issues, _ = _prune_by_noise_rate(
        labels, [0, 1], probs, at_least=np.array([[0, 1], [0, 0]]), seen=seen, earlier=earlier
    )
    assert issues.flagged.tolist() == [14]
    assert issues.details["unjudged_rows"] == 3


def test_non_finite_probabilities_are_refused(noisy_cancer: dict[str, Any]) -> None:
    # a NaN made its class's threshold NaN: no row was ever confident in it, and precision
    # and recall fell with no sign (cleanlab accepts them as well)
    proba = noisy_cancer["proba"].copy()
    proba[5] = np.nan
    with pytest.raises(DataError, match=r"pred_probs holds 2 NaN .* row 5, column 0"):
        confident_learning(noisy_cancer["y_noisy"], proba)

    class NaNModel(GaussianNB):
        def predict_proba(self, X: Any) -> Any:
            out = super().predict_proba(X)
            out[0, 0] = np.inf
            return out

    with pytest.raises(DataError, match=r"NaNModel.predict_proba in fold 1 holds 1 NaN"):
        find_label_issues(noisy_cancer["X"], noisy_cancer["y_noisy"], estimator=NaNModel())


def test_a_custom_estimator_takes_plain_lists() -> None:
    X, y = load_iris(return_X_y=True)
    issues = find_label_issues(X.tolist(), y.tolist(), estimator=GaussianNB(), seed=0)
    assert issues.scores.shape == (150,)


def test_precision_recall() -> None:
    assert precision_recall([1, 2, 3, 4], [2, 3, 9]) == (0.5, 2 / 3)
    assert precision_recall([], [1]) == (None, 0.0)
    assert precision_recall([1], []) == (0.0, None)
    assert precision_recall(np.array([5]), np.array([5])) == (1.0, 1.0)
    # masks, as LabelIssues.mask and cleanlab give them (read as numbers they were {0, 1})
    flagged = np.zeros(10, dtype=bool)
    flagged[[3, 7]] = True
    assert precision_recall(flagged, [3, 7]) == (1.0, 1.0)
    assert precision_recall([3, 8], flagged) == (0.5, 0.5)


def test_label_issues_mask() -> None:
    issues = LabelIssues("knn", np.array([3, 1]), np.zeros(5))
    assert issues.mask.tolist() == [False, True, False, True, False]
    assert issues.n_flagged == 2
    assert issues.n_rows == 5


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"method": "magic"}, ConfigError),
        ({"refits": -1}, ConfigError),
        ({"cv": 1}, ConfigError),
        ({"method": "knn", "k": 0}, ConfigError),
    ],
)
def test_bad_options(kwargs: dict[str, Any], error: type[Exception]) -> None:
    X, y = load_breast_cancer(return_X_y=True)
    with pytest.raises(error):
        find_label_issues(X[:50], y[:50], **kwargs)


def test_an_estimator_without_probabilities_is_named_before_any_fit() -> None:
    from sklearn.svm import LinearSVC

    X, y = load_breast_cancer(return_X_y=True)
    with pytest.raises(ConfigError, match="LinearSVC has no predict_proba"):
        find_label_issues(X[:60], y[:60], estimator=LinearSVC())


def test_bad_inputs() -> None:
    with pytest.raises(DataError, match="rows"):
        confident_learning([0, 1, 0], np.full((2, 2), 0.5))
    with pytest.raises(DataError, match="missing"):
        find_label_issues(np.zeros((3, 1)), np.array([0.0, np.nan, 1.0]))
    with pytest.raises(DataError, match="not one of classes"):
        confident_learning(["a", "z"], np.full((2, 2), 0.5), classes=["a", "b"])


def test_copies_are_equal_values_not_equal_bytes() -> None:
    """-0.0 and 0.0 are one value: as bytes they made two groups of what are copies, and a
    row's own copies did not vote first (a review)."""
    from bastion.attacks.poisoning.detect import _copies

    X = np.array([[0.0, 1.0], [-0.0, 1.0], [0.0, 2.0]])
    assert _copies(X).tolist() == [0, 0, 1]
