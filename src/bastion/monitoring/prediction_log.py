"""The opt-in prediction log: one JSON line per served request, for offline drift reports.

What
    ``bastion serve`` keeps binned counts of recent traffic, never raw inputs
    (:mod:`bastion.monitoring.live`). When the operator opts in (``bastion serve --log-inputs
    DIR`` or ``monitoring.log_inputs.path`` in ``bastion.yaml``), the gateway's watch worker
    also appends each answered request to a log, off the request path and in batches, so that
    ``bastion monitor report --current-log DIR`` can rebuild the served rows and run the full
    offline drift report (every stattest, any window) on them. Off by default: nothing is
    written unless the policy or the command line says so.

Format (``v`` 1; one UTF-8 JSON object per line, ``\\n``-terminated)
    ``{"v": 1, "ts": "2025-01-31T12:00:00.123+00:00", "model": "cancer", "release":
    "cancer@3", "request_id": "...", "client": "sha256:0123456789abcdef", "inputs":
    [{"mean_radius": 14.1, ...}, ...], "labels": [0, ...]}``

    - ``ts``: when the prediction was answered, UTC, ISO 8601.
    - ``release``: the release that answered (``name@version``).
    - ``client``: a pseudonym of the caller, ``sha256:`` and the first 16 hex digits of
      SHA-256 over the gateway's client key (``id:NAME`` for an authenticated identity,
      ``addr:HOST`` otherwise). The bearer token never reaches the log (the gateway only
      hands the identity it authenticated to the worker). The pseudonym is stable, so one
      client's requests can be grouped, and an operator who knows a name can find its lines
      (hash ``id:NAME``); it is not anonymous against someone who can guess the names.
    - ``inputs``: one ``{feature: value}`` object per row, with the release's feature names
      (``x0``, ``x1``, ... when its report names none); non-finite values are ``null``.
    - ``labels``: the predicted label of each row. Probabilities are not logged: the worker
      receives labels only, and recomputing probabilities would cost a second model call
      per request.

    Only tabular requests (rows x features) are logged; others are counted as skipped.

Files
    ``DIR/predictions-<UTC start>-<pid>-<seq>.jsonl``, created with mode 0600 (the folder
    0700 when this creates it), never through a symbolic link. A file is closed and a new one
    started before a write would take it past ``max_file_bytes`` (a single line larger than
    that gets a file of its own), and when the gateway starts, so names sort in time order.
    After each new file, the oldest ``predictions-*.jsonl`` files in the folder beyond
    ``max_files`` are deleted: the log's size is bounded by about ``max_files *
    max_file_bytes``. Give each gateway process its own folder. A failed write closes the file
    (the next batch starts a new one, so a torn line never has another glued to it) and
    raises; :class:`~bastion.gateway.service.GatewayService` logs and counts it and serving
    goes on.

Reading
    :func:`read_prediction_log` reads files or folders of them back into a frame, filtered
    by model and time; a malformed line is an error naming the file and line, unless
    ``skip_bad_lines`` (then it is counted and its location kept).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bastion.exceptions import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DEFAULT_MAX_FILES",
    "DEFAULT_MAX_FILE_MB",
    "FORMAT_VERSION",
    "LogFile",
    "PredictionLog",
    "PredictionLogWriter",
    "encode_request",
    "log_files",
    "parse_timestamp",
    "pseudonym",
    "read_prediction_log",
]

FORMAT_VERSION = 1
DEFAULT_MAX_FILE_MB = 64.0
DEFAULT_MAX_FILES = 16
FILE_GLOB = "predictions-*.jsonl"
_MIB = 1 << 20
_NAME = re.compile(r"^predictions-.+\.jsonl$")
_log = logging.getLogger(__name__)


def pseudonym(client: str) -> str:
    """The logged pseudonym of a gateway client key (``id:NAME`` or ``addr:HOST``)."""
    return "sha256:" + hashlib.sha256(client.encode("utf-8")).hexdigest()[:16]


def encode_request(
    *,
    ts: float,
    model: str,
    release: str,
    request_id: str,
    client: str,
    features: Sequence[str] | None,
    X: np.ndarray,
    labels: np.ndarray,
) -> str:
    """One log line (with its ``\\n``) for a request of 2-D rows ``X`` and their labels.

    ``client`` is the gateway's client key; only its :func:`pseudonym` is written.
    """
    names = list(features) if features is not None and len(features) == X.shape[1] else None
    if names is None:
        names = [f"x{i}" for i in range(X.shape[1])]
    values = X.tolist()
    if X.dtype.kind == "f" and not np.isfinite(X).all():
        values = [[v if math.isfinite(v) else None for v in row] for row in values]
    label_list = labels.tolist()
    if labels.dtype.kind in "OUS":
        label_list = [str(v) for v in label_list]
    record = {
        "v": FORMAT_VERSION,
        "ts": dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds"),
        "model": model,
        "release": release,
        "request_id": request_id,
        "client": pseudonym(client),
        "inputs": [dict(zip(names, row, strict=True)) for row in values],
        "labels": label_list,
    }
    return json.dumps(record, separators=(",", ":"), allow_nan=False, default=str) + "\n"


class PredictionLogWriter:
    """Append log lines to size-rotated files with a bounded count (see the module docstring).

    Parameters:
        directory: the log folder (created, mode 0700, when missing).
        max_file_bytes: a file is rotated before a write would take it past this size.
        max_files: the most ``predictions-*.jsonl`` files kept in the folder.

    Raises:
        ConfigError: a limit is out of range, or the folder cannot be created or is not a
            folder.

    Example::

        >>> log = PredictionLogWriter(Path("/var/log/bastion/cancer"))  # doctest: +SKIP
        >>> log.write([encode_request(ts=time.time(), model="cancer", ...)])  # doctest: +SKIP
    """

    def __init__(
        self,
        directory: Path,
        *,
        max_file_bytes: int = int(DEFAULT_MAX_FILE_MB * _MIB),
        max_files: int = DEFAULT_MAX_FILES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_file_bytes < 1:
            raise ConfigError(f"max_file_bytes must be >= 1; received {max_file_bytes}")
        if max_files < 1:
            raise ConfigError(f"max_files must be >= 1; received {max_files}")
        self.directory = Path(directory)
        self.max_file_bytes = int(max_file_bytes)
        self.max_files = int(max_files)
        self._clock = clock
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0
        self._seq = 0
        self._lock = threading.Lock()
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(
                f"prediction log folder {self.directory}: cannot be created ({err})"
            ) from err
        if not self.directory.is_dir():
            raise ConfigError(f"prediction log folder {self.directory}: is not a folder")
        if os.name == "posix" and self.directory.stat().st_mode & 0o077:
            _log.warning(
                "prediction log folder %s is readable or writable by other users; its files "
                "are created 0600 but their names are visible",
                self.directory,
            )

    @property
    def path(self) -> Path | None:
        """The file being written (``None`` before the first write or after a failure)."""
        return self._path

    def write(self, lines: Iterable[str]) -> int:
        """Append ``lines`` (each ending in ``\\n``), rotating as needed; return how many.

        Raises:
            OSError: a file could not be created or written; the current file is closed, so
                the next call starts a new one.
        """
        with self._lock:
            chunk: list[bytes] = []
            chunk_size = 0
            n = 0
            try:
                for line in lines:
                    data = line.encode("utf-8")
                    if self._fd is None:
                        self._open()
                    if chunk_size + len(data) + self._size > self.max_file_bytes and (
                        self._size or chunk_size
                    ):
                        self._flush(chunk)
                        chunk, chunk_size = [], 0
                        self._close()
                        self._open()
                    chunk.append(data)
                    chunk_size += len(data)
                    n += 1
                self._flush(chunk)
            except OSError:
                self._close()
                raise
            return n

    def close(self) -> None:
        """Close the current file (the next write starts a new one)."""
        with self._lock:
            self._close()

    # -- internals ----------------------------------------------------------------------------
    def _flush(self, chunk: list[bytes]) -> None:
        if not chunk or self._fd is None:
            return
        view = memoryview(b"".join(chunk))
        while view:
            written = os.write(self._fd, view)
            self._size += written
            view = view[written:]

    def _open(self) -> None:
        stamp = dt.datetime.fromtimestamp(self._clock(), dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND
        flags |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        while True:
            self._seq += 1
            path = self.directory / f"predictions-{stamp}-{os.getpid()}-{self._seq:06d}.jsonl"
            try:
                self._fd = os.open(path, flags, 0o600)
                break
            except FileExistsError:
                continue
        self._path = path
        self._size = 0
        self._prune()

    def _close(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                _log.warning("prediction log: closing %s failed", self._path, exc_info=True)
        self._fd = None
        self._path = None
        self._size = 0

    def _prune(self) -> None:
        files = sorted(p for p in self.directory.glob(FILE_GLOB) if p != self._path)
        excess = len(files) + 1 - self.max_files
        for old in files[: max(excess, 0)]:
            try:
                old.unlink()
            except FileNotFoundError:
                pass
            except OSError as err:
                _log.warning("prediction log: cannot delete %s: %s", old, err)


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class LogFile:
    """A log file read: its path, SHA-256 and the rows taken from it (after filters)."""

    path: Path
    sha256: str
    rows: int


@dataclass(frozen=True)
class PredictionLog:
    """Logged requests of one model, rebuilt as a frame.

    Attributes:
        model: the model whose lines were kept.
        frame: one row per logged input row, one column per feature (first-seen order).
        labels: the predicted label of each row of ``frame``.
        files: the files read, in order.
        requests: lines (requests) kept.
        releases: the releases that answered them, in first-seen order.
        first_ts, last_ts: the earliest and latest kept timestamps (ISO).
        skipped: ``file:line: reason`` of each malformed line skipped.
        since, until: the time filter applied (ISO), if any.
    """

    model: str
    frame: pd.DataFrame
    labels: list[Any]
    files: tuple[LogFile, ...]
    requests: int
    releases: tuple[str, ...]
    first_ts: str | None
    last_ts: str | None
    skipped: tuple[str, ...] = field(default=())
    since: str | None = None
    until: str | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-ready facts for a report's metadata."""
        return {
            "model": self.model,
            "requests": self.requests,
            "rows": len(self.frame),
            "releases": list(self.releases),
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "since": self.since,
            "until": self.until,
            "skipped_lines": len(self.skipped),
            "skipped_examples": list(self.skipped[:5]),
        }


def log_files(paths: Sequence[Path]) -> list[Path]:
    """The files ``paths`` name: a file as given, a folder as its ``predictions-*.jsonl``
    files in name (time) order.

    Raises:
        DataError: a path does not exist, or a folder holds no log file.
    """
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.glob(FILE_GLOB))
            if not found:
                raise DataError(f"{path}: the folder holds no prediction log ({FILE_GLOB})")
            out.extend(found)
        elif path.is_file():
            out.append(path)
        else:
            raise DataError(f"{path}: file or folder not found")
    return list(dict.fromkeys(out))


def parse_timestamp(value: str, option: str) -> dt.datetime:
    """An ISO 8601 timestamp (UTC when it names no offset).

    Raises:
        ConfigError: ``value`` is not ISO 8601.
    """
    try:
        stamp = dt.datetime.fromisoformat(value)
    except ValueError as err:
        raise ConfigError(
            f"{option} expects an ISO 8601 timestamp such as 2025-01-31T12:00:00Z; "
            f"received {value!r}"
        ) from err
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=dt.UTC)


def read_prediction_log(
    paths: Sequence[Path],
    *,
    model: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    skip_bad_lines: bool = False,
) -> PredictionLog:
    """Read prediction-log files (or folders of them) back into rows of one model.

    Parameters:
        paths: log files, or folders whose ``predictions-*.jsonl`` files are read.
        model: keep this model's lines; default the only model the logs hold.
        since, until: keep lines with ``since <= ts < until`` (aware datetimes).
        skip_bad_lines: skip malformed lines (counted in ``skipped``) instead of failing.

    Returns:
        The rows, labels and provenance.

    Raises:
        DataError: a path is missing; a malformed line (naming the file and the line) unless
            ``skip_bad_lines``; several models and no ``model``; no line left after filters.

    Example::

        >>> log = read_prediction_log([Path("logs")], model="cancer")  # doctest: +SKIP
        >>> log.frame.shape, log.requests
    """
    import pandas as pd

    from bastion.data.dataset import sha256_file

    files = log_files(paths)
    by_model: dict[str, dict[str, Any]] = {}
    skipped: list[str] = []
    per_file: list[tuple[Path, dict[str, int]]] = []
    for path in files:
        kept_rows: dict[str, int] = {}
        per_file.append((path, kept_rows))
        with path.open("rb") as fh:
            for number, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    record = _parse_line(raw)
                except ValueError as err:
                    where = f"{path}:{number}: {err}"
                    if not skip_bad_lines:
                        raise DataError(
                            f"{where} (pass --skip-bad-lines to skip such lines)"
                        ) from err
                    skipped.append(where)
                    continue
                name, stamp = record["model"], record["_ts"]
                if model is not None and name != model:
                    continue
                if (since is not None and stamp < since) or (until is not None and stamp >= until):
                    continue
                acc = by_model.setdefault(
                    name,
                    {"rows": [], "labels": [], "requests": 0, "releases": {}, "ts": []},
                )
                acc["rows"].extend(record["inputs"])
                acc["labels"].extend(record["labels"])
                acc["requests"] += 1
                acc["releases"].setdefault(record["release"], None)
                acc["ts"].append(stamp)
                kept_rows[name] = kept_rows.get(name, 0) + len(record["inputs"])
    window = _window(since, until)
    if model is None:
        if len(by_model) > 1:
            raise DataError(
                f"the logs hold several models: {sorted(by_model)}; pick one with --model"
            )
        if not by_model:
            raise DataError(f"the logs hold no request{window}")
        model = next(iter(by_model))
    found = by_model.get(model)
    if found is None or not found["rows"]:
        raise DataError(f"the logs hold no request of model {model!r}{window}")
    acc = found
    frame = pd.DataFrame.from_records(acc["rows"])
    return PredictionLog(
        model=model,
        frame=frame,
        labels=acc["labels"],
        files=tuple(
            LogFile(path, sha256_file(path), kept.get(model, 0)) for path, kept in per_file
        ),
        requests=acc["requests"],
        releases=tuple(acc["releases"]),
        first_ts=min(acc["ts"]).isoformat(),
        last_ts=max(acc["ts"]).isoformat(),
        skipped=tuple(skipped),
        since=since.isoformat() if since is not None else None,
        until=until.isoformat() if until is not None else None,
    )


def _window(since: dt.datetime | None, until: dt.datetime | None) -> str:
    parts = []
    if since is not None:
        parts.append(f"from {since.isoformat()}")
    if until is not None:
        parts.append(f"before {until.isoformat()}")
    return (" " + " ".join(parts)) if parts else ""


def _parse_line(raw: bytes) -> dict[str, Any]:
    """A validated record; ValueError says what is wrong with the line."""
    if not raw.endswith(b"\n"):
        # the writer ends every line in one write: a missing newline is a cut write
        raise ValueError("incomplete line (the write was cut short)")
    try:
        record = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"not JSON ({err})") from err
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    if record.get("v") != FORMAT_VERSION:
        raise ValueError(f"unknown format version {record.get('v')!r}; expected {FORMAT_VERSION}")
    for key in ("ts", "model", "release"):
        if not isinstance(record.get(key), str):
            raise ValueError(f"{key!r} must be a string")
    try:
        stamp = dt.datetime.fromisoformat(record["ts"])
    except ValueError as err:
        raise ValueError(f"'ts' is not an ISO 8601 timestamp: {record['ts']!r}") from err
    record["_ts"] = stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=dt.UTC)
    inputs, labels = record.get("inputs"), record.get("labels")
    if not isinstance(inputs, list) or not all(isinstance(r, dict) for r in inputs):
        raise ValueError("'inputs' must be a list of {feature: value} objects")
    if not isinstance(labels, list) or len(labels) != len(inputs):
        raise ValueError("'labels' must be a list with one label per input row")
    return record
