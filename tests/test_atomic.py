"""atomic_write: the target is the old file or the whole new one, never a partial one."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import BinaryIO

import pytest

from bastion._atomic import atomic_write, atomic_write_bytes


def test_writes_whole_files_with_the_mode_asked(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "f.json"
    atomic_write_bytes(target, b"new", mode=0o644)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    private = tmp_path / "secret"
    assert atomic_write(private, lambda out: out.write(b"abc")) == 3
    assert stat.S_IMODE(private.stat().st_mode) == 0o600  # the temporary file's own


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")

    def half(out: BinaryIO) -> None:
        out.write(b"par")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, half)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]
