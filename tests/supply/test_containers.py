"""Containers: zip, tar, compressed streams and .npy headers, with the tricks used on peers."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bastion.supply import ScanLimits, ScanVerdict, scan_bytes, scan_path


class _Touch:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def rules(result: Any) -> set[tuple[str, str]]:
    return {(f.rule, f.verdict.value) for f in result.findings}


@pytest.fixture
def evil(tmp_path: Path) -> bytes:
    return pickle.dumps(_Touch(tmp_path / "ran"), protocol=2)


def test_a_pickle_anywhere_in_a_zip_is_walked_whatever_its_name(evil: bytes) -> None:
    for name in ("archive/data.pkl", "weights.bin", "deep/er/README.txt"):
        result = scan_bytes(_zip({name: evil, "other.txt": b"hello"}), "m.bin")
        assert result.verdict is ScanVerdict.UNSAFE, name
        assert any(name in f.location for f in result.findings)


def test_nested_archives_are_followed_to_the_depth_limit(evil: bytes) -> None:
    inner = _zip({"x.pkl": evil})
    outer = _zip({"inner.zip": inner})
    assert scan_bytes(outer, "o.zip").verdict is ScanVerdict.UNSAFE
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w:gz") as tf:
        info = tarfile.TarInfo("bundle/outer.zip")
        info.size = len(outer)
        tf.addfile(info, io.BytesIO(outer))
    assert scan_bytes(tar.getvalue(), "t.tgz").verdict is ScanVerdict.UNSAFE
    shallow = scan_bytes(outer, "o.zip", limits=ScanLimits(max_depth=1))
    assert ("SC012", "suspicious") in rules(shallow)


def test_member_names_that_escape_are_unsafe() -> None:
    for name in ("../evil.txt", "/etc/cron.d/x", "a/../../b", "C:/win.ini", "..\\x"):
        result = scan_bytes(_zip({name: b"x"}), "z.zip")
        assert ("SC010", "unsafe") in rules(result), name


def test_duplicate_encrypted_and_mismatched_headers(evil: bytes) -> None:
    dup = io.BytesIO()
    with zipfile.ZipFile(dup, "w") as zf:
        zf.writestr("data.pkl", pickle.dumps(1))
        with pytest.warns(UserWarning, match="Duplicate name"):
            zf.writestr("data.pkl", evil)
    result = scan_bytes(dup.getvalue(), "d.zip")
    assert ("SC013", "suspicious") in rules(result)
    assert result.verdict is ScanVerdict.UNSAFE  # both copies are walked

    raw = bytearray(_zip({"data.pkl": evil}, zipfile.ZIP_STORED))
    flipped = bytearray(raw)
    cd = flipped.rfind(b"PK\x01\x02")
    flipped[cd + 8] |= 0x01  # the encryption bit, in the central directory
    assert ("SC013", "suspicious") in rules(scan_bytes(bytes(flipped), "e.zip"))

    renamed = bytearray(raw)
    assert renamed[30:38] == b"data.pkl"
    renamed[30:38] = b"data.txt"  # the local header names another file
    assert ("SC013", "unsafe") in rules(scan_bytes(bytes(renamed), "r.zip"))


def test_a_bad_crc_is_an_error_and_never_safe() -> None:
    raw = bytearray(_zip({"a.txt": b"hello world"}, zipfile.ZIP_STORED))
    raw[30 + len("a.txt")] ^= 0xFF  # corrupt the stored data
    result = scan_bytes(bytes(raw), "c.zip")
    assert result.verdict is ScanVerdict.ERROR
    assert ("SC014", "error") in rules(result)


def test_tar_links_and_traversal(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        link = tarfile.TarInfo("model/weights")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tf.addfile(link)
        up = tarfile.TarInfo("../outside.txt")
        up.size = 2
        tf.addfile(up, io.BytesIO(b"hi"))
    found = rules(scan_bytes(buf.getvalue(), "m.tar"))
    assert ("SC015", "unsafe") in found
    assert ("SC010", "unsafe") in found


def test_decompression_bombs_stop_at_the_limit() -> None:
    bomb = gzip.compress(b"\x00" * (8 << 20))
    limits = ScanLimits(ratio_floor=1 << 20, max_ratio=100)
    result = scan_bytes(bomb, "b.gz", limits=limits)
    assert ("SC011", "unsafe") in rules(result)
    capped = scan_bytes(bomb, "b.gz", limits=ScanLimits(max_decompressed=1 << 20))
    assert ("SC011", "unsafe") in rules(capped)
    zbomb = _zip({"z.bin": b"\x00" * (8 << 20)})
    assert ("SC011", "unsafe") in rules(scan_bytes(zbomb, "z.zip", limits=limits))


def test_compressed_streams_truncated_or_followed_by_data(evil: bytes) -> None:
    packed = zlib.compress(evil)
    assert scan_bytes(packed, "p.z").verdict is ScanVerdict.UNSAFE
    assert scan_bytes(packed[:-4], "p.z").verdict is not ScanVerdict.SAFE
    two = gzip.compress(pickle.dumps(1)) + gzip.compress(evil)  # a second gzip member
    assert scan_bytes(two, "two.gz").verdict is ScanVerdict.UNSAFE
    from joblib.numpy_pickle_compat import write_zfile

    old = io.BytesIO()
    write_zfile(old, evil)  # joblib < 0.10: "ZF", the length padded to 19, zlib data
    assert scan_bytes(old.getvalue(), "old.pkl").verdict is ScanVerdict.UNSAFE


def test_npy_object_arrays_are_walked_and_headers_checked(tmp_path: Path) -> None:
    arr = np.array([_Touch(tmp_path / "ran"), 1], dtype=object)
    path = tmp_path / "a.npy"
    np.save(path, arr, allow_pickle=True)
    result = scan_path(path)
    assert result.format == "npy-object"
    assert result.verdict is ScanVerdict.UNSAFE
    np.savez(tmp_path / "b.npz", ok=np.arange(3), bad=arr)
    assert scan_path(tmp_path / "b.npz").verdict is ScanVerdict.UNSAFE
    np.save(path, np.arange(10.0))
    assert scan_path(path).safe
    short = path.read_bytes()[:-8]
    assert ("SC051", "error") in rules(scan_bytes(short, "s.npy"))
    evil_header = b"\x93NUMPY\x01\x00" + struct.pack("<H", 30) + b"__import__('os').system('x')\n"
    assert ("SC051", "error") in rules(scan_bytes(evil_header, "h.npy"))
    assert not (tmp_path / "ran").exists()


def test_a_pickle_zip_polyglot_is_flagged(evil: bytes) -> None:
    poly = pickle.dumps([1, 2]) + _zip({"archive/data.pkl": evil})
    result = scan_bytes(poly, "p.pt")
    assert ("SC013", "suspicious") in rules(result)
    assert result.verdict is ScanVerdict.UNSAFE


def test_unknown_binary_is_suspicious_and_text_is_safe() -> None:
    assert ("SC090", "suspicious") in rules(scan_bytes(bytes(range(256)) * 4, "x.bin"))
    assert scan_bytes("name,value\nnaïve,1\n".encode(), "x.csv").safe
    assert scan_bytes(b"", "empty").safe
