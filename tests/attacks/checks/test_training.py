"""labelled_rows: the poisoning checks' shared reading of the training set."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bastion.attacks.checks._training import labelled_rows, not_shown_status
from bastion.data.dataset import Dataset


def test_labelled_rows_skip_reasons_and_rows() -> None:
    frame = pd.DataFrame({"x": [0.1, 0.2, 0.3, 0.4], "target": [0.0, None, 1.0, 0.0]})
    assert labelled_rows(None) == "needs the training dataset: set data.train"
    no_target = Dataset.from_frame(frame, name="train")
    assert "no target column" in str(labelled_rows(no_target))
    no_features = Dataset.from_frame(frame[["target"]], name="t", target="target")
    assert labelled_rows(no_features) == "dataset 't' has no feature columns"
    one_class = Dataset.from_frame(frame.assign(target=[1.0, None, 1.0, 1.0]), name="o",
                                   target="target")  # fmt: skip
    assert labelled_rows(one_class) == "the training labels hold 1 class(es); need 2"
    train = Dataset.from_frame(frame, name="train", target="target")
    rows = labelled_rows(train)
    assert not isinstance(rows, str)
    same, positions, y = rows
    assert same is train
    np.testing.assert_array_equal(positions, [0, 2, 3])  # the unlabelled row is left out
    assert list(y) == list(train.labels[[0, 2, 3]])


def test_not_shown_status_is_the_gate_rule_for_attacks_stopped_short() -> None:
    from bastion.findings import Status

    assert not_shown_status(True, "time budget") is Status.FAIL
    assert not_shown_status(False, "time budget") is Status.WARN  # report only
    assert not_shown_status(True, "interrupted") is Status.WARN  # the runner's: an error


def test_the_time_out_names_the_flag_only_where_the_command_line_sets_it() -> None:
    """POI001 and POI003 have no --max-seconds on the command line (it reaches POI002 only):
    advising it there changed nothing."""
    from bastion.attacks.checks._training import stopped_by_time
    from bastion.attacks.checks.attribute_inference import AttributeInferenceCheck
    from bastion.attacks.checks.label_issues import LabelIssuesCheck
    from bastion.checks import CheckContext
    from bastion.exceptions import TimeBudgetError

    ctx = CheckContext(seed=0, subject="model")
    err = TimeBudgetError("stopped after 1 s")
    label = stopped_by_time(LabelIssuesCheck(), ctx, err, 1.0).message
    assert "poisoning.label_issues.max_seconds in the policy, or run" in label
    assert "--max-seconds" not in label
    inference = stopped_by_time(AttributeInferenceCheck(), ctx, err, 1.0).message
    assert "(--max-seconds with bastion attack)" in inference
