"""DQ012 integrity: the sha256 is recorded; a pinned hash that differs fails with high severity."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from bastion.checks import CheckContext
from bastion.data.checks.integrity import DatasetIntegrity, IntegrityConfig
from bastion.data.dataset import Dataset
from bastion.findings import Severity, Status


def _ctx(ds: Dataset, expected: dict[str, str] | None = None) -> CheckContext:
    return CheckContext(subject=f"dataset:{ds.name}", dataset=ds, expected_sha256=expected or {})


def test_file_hash_is_the_sha256_of_its_bytes(tmp_path: Path, cancer: pd.DataFrame) -> None:
    path = tmp_path / "train.csv"
    cancer.to_csv(path, index=False)
    ds = Dataset.from_file(path, name="train", target="target")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    finding = DatasetIntegrity().run(_ctx(ds, {"train": digest}))
    assert finding.status is Status.PASS
    assert finding.evidence["sha256"] == digest
    assert finding.evidence["source"] == "file"
    assert finding.metrics["sha256_match"] == 1


def test_changed_file_fails_high(tmp_path: Path, cancer: pd.DataFrame) -> None:
    path = tmp_path / "train.csv"
    cancer.to_csv(path, index=False)
    pinned = hashlib.sha256(path.read_bytes()).hexdigest()
    cancer.iloc[:1].assign(target=1).pipe(lambda f: pd.concat([f, cancer.iloc[1:]])).to_csv(
        path, index=False
    )
    ds = Dataset.from_file(path, name="train")
    finding = DatasetIntegrity().run(_ctx(ds, {"train": pinned}))
    assert finding.status is Status.FAIL
    assert finding.severity is Severity.HIGH
    assert finding.metrics["sha256_match"] == 0
    assert pinned in finding.message


def test_frame_hash_recorded_without_expectation(cancer: pd.DataFrame) -> None:
    ds = Dataset.from_frame(cancer, name="test")
    finding = DatasetIntegrity().run(_ctx(ds))
    assert finding.status is Status.PASS
    assert finding.evidence["sha256"] == ds.content_hash
    assert finding.evidence["source"] == "frame"
    assert "sha256_match" not in finding.metrics
    strict = DatasetIntegrity(IntegrityConfig(require_expected=True)).run(_ctx(ds))
    assert strict.status is Status.FAIL
    assert "data.expected_sha256.test" in strict.message


def test_malformed_expected_hash_is_a_config_error(cancer: pd.DataFrame) -> None:
    ds = Dataset.from_frame(cancer, name="train")
    finding = DatasetIntegrity().execute(_ctx(ds, {"train": "abc"}))
    assert finding.status is Status.ERROR
    assert "expected 64 hexadecimal characters" in finding.message


@pytest.mark.parametrize("tag", ["AML.M0025", "AML.T0020"])
def test_tags(tag: str) -> None:
    assert tag in DatasetIntegrity.tags
