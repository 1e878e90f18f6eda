"""Atomic file writes: a temporary file beside the target, renamed into place when complete.

Readers see the old file or the new one, never a half-written one; a failure (a failed
check, Ctrl-C) removes the temporary file and leaves the target as it was. The data and the
rename are fsynced, so a completed write survives a crash.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypeVar

__all__ = ["atomic_write", "atomic_write_bytes"]

_T = TypeVar("_T")


def atomic_write(dst: Path, write: Callable[[BinaryIO], _T], *, mode: int | None = None) -> _T:
    """Run ``write`` on a temporary file beside ``dst``, then rename it to ``dst``; return
    what ``write`` returned. ``mode`` is set before any byte is written (default: 0600, the
    temporary file's own)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            result = write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(dst.parent)
    return result


def atomic_write_bytes(dst: Path, data: bytes, *, mode: int | None = None) -> None:
    """:func:`atomic_write` of ``data``."""
    atomic_write(dst, lambda out: out.write(data), mode=mode)


def _fsync_dir(folder: Path) -> None:
    # makes the rename durable on POSIX; Windows cannot open folders, and needs no such step
    if os.name != "posix":  # pragma: no cover
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
