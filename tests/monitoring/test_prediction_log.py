"""The opt-in prediction log: encoding, size rotation with a bounded file count, file modes,
and reading it back (filters, malformed lines named by file and line)."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from bastion.exceptions import ConfigError, DataError
from bastion.monitoring.prediction_log import (
    PredictionLogWriter,
    encode_request,
    parse_timestamp,
    pseudonym,
    read_prediction_log,
)

T0 = dt.datetime(2025, 1, 31, 12, 0, tzinfo=dt.UTC).timestamp()


def line(i: int, *, model: str = "m", ts: float = T0, rows: int = 1) -> str:
    X = np.arange(rows * 2, dtype=np.float64).reshape(rows, 2) + i
    return encode_request(
        ts=ts,
        model=model,
        release=f"{model}@1",
        request_id=f"r{i}",
        client="id:alice",
        features=("a", "b"),
        X=X,
        labels=np.zeros(rows, dtype=np.int64),
    )


def test_a_line_holds_the_request_and_a_pseudonym_of_the_client() -> None:
    X = np.array([[1.5, np.nan], [np.inf, 2.0]])
    text = encode_request(
        ts=T0, model="m", release="m@3", request_id="abc", client="id:alice",
        features=("a", "b"), X=X, labels=np.array(["yes", "no"]),
    )  # fmt: skip
    assert text.endswith("\n")
    assert text.count("\n") == 1
    record = json.loads(text)
    assert record == {
        "v": 1,
        "ts": "2025-01-31T12:00:00.000+00:00",
        "model": "m",
        "release": "m@3",
        "request_id": "abc",
        "client": pseudonym("id:alice"),
        "inputs": [{"a": 1.5, "b": None}, {"a": None, "b": 2.0}],
        "labels": ["yes", "no"],
    }
    assert "alice" not in text
    assert record["client"].startswith("sha256:")
    unnamed = json.loads(
        encode_request(
            ts=T0,
            model="m",
            release="m@3",
            request_id="x",
            client="addr:1.2.3.4",
            features=None,
            X=np.array([[1, 2]]),
            labels=np.array([0]),
        )
    )
    assert unnamed["inputs"] == [{"x0": 1, "x1": 2}]


def test_files_rotate_by_size_keep_a_bounded_count_and_are_private(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    size = len(line(0).encode())
    writer = PredictionLogWriter(folder, max_file_bytes=size * 3, max_files=3)
    assert not folder.exists() or not list(folder.iterdir())  # nothing until the first write
    for i in range(20):  # batches of 2 lines
        assert writer.write([line(2 * i), line(2 * i + 1)]) == 2
    writer.close()
    files = sorted(folder.glob("predictions-*.jsonl"))
    assert len(files) == 3
    for f in files:
        assert f.stat().st_size <= size * 3
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    if os.name == "posix":
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    kept = [json.loads(x)["request_id"] for f in files for x in f.read_text().splitlines()]
    assert kept == [f"r{i}" for i in range(40 - len(kept), 40)]  # the newest, in order
    # a line larger than a file gets a file of its own
    writer = PredictionLogWriter(folder, max_file_bytes=10, max_files=2)
    writer.write([line(99)])
    writer.close()
    files = sorted(folder.glob("predictions-*.jsonl"))
    assert len(files) == 2
    assert json.loads(files[-1].read_text())["request_id"] == "r99"


def test_a_failed_write_raises_and_the_next_one_starts_a_new_file(tmp_path: Path) -> None:
    writer = PredictionLogWriter(tmp_path / "logs")
    writer.write([line(0)])
    first = writer.path
    assert first is not None
    for f in (tmp_path / "logs").iterdir():
        f.unlink()
    (tmp_path / "logs").rmdir()
    writer.close()
    with pytest.raises(FileNotFoundError):
        writer.write([line(1)])
    assert writer.path is None
    (tmp_path / "logs").mkdir()
    writer.write([line(2)])
    assert writer.path is not None
    assert writer.path != first


def test_writer_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_files must be >= 1"):
        PredictionLogWriter(tmp_path, max_files=0)
    with pytest.raises(ConfigError, match="max_file_bytes"):
        PredictionLogWriter(tmp_path, max_file_bytes=0)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="cannot be created"):
        PredictionLogWriter(tmp_path / "file" / "logs")


def write_log(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(lines), encoding="utf-8")
    return path


def test_reading_filters_by_model_and_time(tmp_path: Path) -> None:
    log = write_log(
        tmp_path / "predictions-1.jsonl",
        [line(i, ts=T0 + 60 * i, rows=2) for i in range(5)] + [line(9, model="other")],
    )
    with pytest.raises(DataError, match=r"several models: \['m', 'other'\]; pick one"):
        read_prediction_log([log])
    got = read_prediction_log([tmp_path], model="m")
    assert got.requests == 5
    assert list(got.frame.columns) == ["a", "b"]
    assert len(got.frame) == len(got.labels) == 10
    assert got.releases == ("m@1",)
    assert got.files[0].rows == 10
    since = parse_timestamp("2025-01-31T12:01:00Z", "--since")
    until = parse_timestamp("2025-01-31T12:03:00", "--until")  # no offset: UTC
    window = read_prediction_log([log], model="m", since=since, until=until)
    assert window.requests == 2  # 12:01 and 12:02; 12:03 is excluded
    assert window.first_ts == "2025-01-31T12:01:00+00:00"
    with pytest.raises(DataError, match="no request of model 'm' from 2025-02"):
        read_prediction_log([log], model="m", since=since + dt.timedelta(days=1))
    with pytest.raises(ConfigError, match="ISO 8601"):
        parse_timestamp("yesterday", "--since")


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("{not json\n", "not JSON"),
        ('{"v": 1, "ts": "2025-01-31T12:00:00+00:00"}\n', "'model' must be a string"),
        ('{"v": 2}\n', "unknown format version 2"),
        (line(5).replace('"labels":[0]', '"labels":[]'), "one label per input row"),
        (line(5).replace('"ts":"2025', '"ts":"x2025'), "not an ISO 8601 timestamp"),
        (line(5).rstrip("\n")[:-10], "incomplete line"),
    ],
)
def test_a_malformed_line_is_named_or_skipped_and_counted(
    tmp_path: Path, bad: str, reason: str
) -> None:
    log = write_log(tmp_path / "predictions-1.jsonl", [line(0), line(1), bad])
    with pytest.raises(DataError, match=rf"predictions-1\.jsonl:3: .*{reason}") as err:
        read_prediction_log([log])
    assert "--skip-bad-lines" in str(err.value)
    got = read_prediction_log([log], skip_bad_lines=True)
    assert got.requests == 2
    assert len(got.skipped) == 1
    assert got.skipped[0].startswith(f"{log}:3: ")
    assert got.summary()["skipped_lines"] == 1


def test_missing_paths_and_empty_folders_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope: file or folder not found"):
        read_prediction_log([tmp_path / "nope"])
    with pytest.raises(DataError, match="holds no prediction log"):
        read_prediction_log([tmp_path])


def test_policy_defaults_match_the_writer() -> None:
    from bastion.config import LogInputsSection
    from bastion.monitoring.prediction_log import DEFAULT_MAX_FILE_MB, DEFAULT_MAX_FILES

    section = LogInputsSection(path=Path("logs"))
    assert section.max_file_mb == DEFAULT_MAX_FILE_MB
    assert section.max_files == DEFAULT_MAX_FILES
