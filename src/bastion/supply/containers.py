"""Containers that hide other files: zip, tar, compressed streams, NumPy ``.npy`` headers.

Every member is handed back to the dispatcher (:meth:`ScanContext.scan_member`), which detects
its format from its content, so a pickle renamed ``weights.bin`` inside a zip inside a tar is
still walked. What the peers were bypassed with is checked here: member names that climb out
of the extraction folder (SC010), links and devices (SC015), central-directory names that
disagree with the local headers, duplicate names and encrypted members (SC013), bad CRCs and
corrupt streams (SC014), decompression bombs (SC011, counted while decompressing, never
trusted from the headers), and nesting deeper than the limit (SC012).

References: PKWARE APPNOTE 6.3.10 (zip local header and central directory); POSIX ustar;
CVE-2007-4559 (tar path traversal); JFrog, "Zip archive tricks bypass model scanners" (2025).
"""

from __future__ import annotations

import ast
import bz2
import io
import lzma
import math
import posixpath
import re
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from typing import Any

from bastion.supply.context import ScanContext
from bastion.supply.results import ScanVerdict

__all__ = [
    "COMPRESSION_MAGIC",
    "compression_of",
    "looks_like_npy",
    "looks_like_tar",
    "looks_like_zip",
    "scan_compressed",
    "scan_npy",
    "scan_tar",
    "scan_zip",
]

_CHUNK = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")
# torch.save archives: raw storages are read as bytes, never unpickled
_TORCH_RAW = re.compile(r"^[^/]+/(data/\d+|\.data/serialization_id|byteorder|version)$")

COMPRESSION_MAGIC = {
    "gzip": b"\x1f\x8b",
    "bz2": b"BZh",
    "xz": b"\xfd7zXZ\x00",
    "lzma": b"\x5d\x00",  # joblib's test: properties 0x5d, dictionary size < 16 MiB
}


class _View(io.RawIOBase):
    """A seekable read-only file over a memoryview (zipfile and tarfile read through it
    without copying the whole buffer)."""

    def __init__(self, data: memoryview) -> None:
        self._data = data
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: len(self._data)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        end = min(len(self._data), self._pos + len(buffer))
        n = end - self._pos
        buffer[:n] = self._data[self._pos : end]
        self._pos = end
        return n


# -- names ---------------------------------------------------------------------------------------
def _escapes(name: str) -> str | None:
    """Why a member name would land outside the extraction folder, or None."""
    if "\x00" in name:
        return "holds a NUL byte"
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or _DRIVE.match(normalised):
        return "is absolute"
    if ".." in normalised.split("/"):
        return "climbs out with '..'"
    if posixpath.normpath(normalised).startswith(".."):
        return "climbs out with '..'"
    return None


def _member_where(where: str, name: str) -> str:
    return f"{where} > {name}" if where else name


# -- zip -----------------------------------------------------------------------------------------
def looks_like_zip(data: memoryview) -> bool:
    return bytes(data[:4]) in (b"PK\x03\x04", b"PK\x05\x06")


def zip_kind(names: list[str]) -> str:
    """Which zip-based format the member names say: torch-zip, torch-export, torchscript,
    keras, npz or zip."""
    base = {n.split("/", 1)[-1] for n in names}
    if any(n.endswith("/archive_format") for n in names) or "archive_format" in base:
        return "torch-export"
    if any(n.split("/", 1)[-1].startswith("code/") for n in names) and "constants.pkl" in base:
        return "torchscript"
    if "data.pkl" in base:
        return "torch-zip"
    if "config.json" in names and "metadata.json" in names:
        return "keras"
    if names and all(n.endswith(".npy") for n in names):
        return "npz"
    return "zip"


def scan_zip(data: memoryview, where: str, ctx: ScanContext) -> str:
    """Check a zip's headers and scan every member; returns the zip-based format's name."""
    try:
        zf = zipfile.ZipFile(_View(data))
    except (zipfile.BadZipFile, OSError, ValueError, struct.error) as err:
        ctx.add("SC014", ScanVerdict.ERROR, f"corrupt zip archive: {err}", where)
        return "zip"
    with zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        kind = zip_kind(names)
        if len(infos) > ctx.limits.max_members:
            ctx.add(
                "SC011",
                ScanVerdict.UNSAFE,
                f"{len(infos)} members (limit {ctx.limits.max_members})",
                where,
            )
            return kind
        seen: set[str] = set()
        outer_torch = ctx.in_torch_archive
        if kind in ("torch-zip", "torch-export", "torchscript"):
            ctx.in_torch_archive = True
        try:
            for info in infos:
                _scan_zip_member(zf, info, data, where, ctx, kind, seen)
        finally:
            ctx.in_torch_archive = outer_torch
    return kind


def _scan_zip_member(
    zf: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    data: memoryview,
    where: str,
    ctx: ScanContext,
    kind: str,
    seen: set[str],
) -> None:
    name = info.filename
    at = _member_where(where, name)
    problem = _escapes(name)
    if problem:
        ctx.add("SC010", ScanVerdict.UNSAFE, f"zip member name {name!r} {problem}", at)
    if name in seen:
        ctx.add(
            "SC013",
            ScanVerdict.SUSPICIOUS,
            f"zip member {name!r} appears twice: loaders disagree on which one they read",
            at,
        )
    seen.add(name)
    mode = info.external_attr >> 16
    if mode and (stat.S_ISLNK(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode)):
        ctx.add("SC015", ScanVerdict.UNSAFE, f"zip member {name!r} is a link or device", at)
        return
    if info.flag_bits & 0x1:
        ctx.add(
            "SC013",
            ScanVerdict.SUSPICIOUS,
            f"zip member {name!r} is encrypted: its content cannot be scanned",
            at,
        )
        return
    local = _local_name(data, info.header_offset)
    if local is None:
        ctx.add("SC014", ScanVerdict.ERROR, f"zip member {name!r}: no local header", at)
        return
    if (
        local != info.orig_filename.encode("utf-8", "surrogateescape")
        and local.decode("cp437", "replace") != info.orig_filename
    ):
        ctx.add(
            "SC013",
            ScanVerdict.UNSAFE,
            f"zip member {name!r} is named {local[:80]!r} in its local header: tools that "
            "read local headers see another file",
            at,
        )
    if name.endswith("/"):
        return
    if kind in ("torch-zip", "torchscript") and _TORCH_RAW.match(name):
        return  # raw storage bytes: torch never unpickles them, so they need not be read
    content = _read_zip_member(zf, info, at, ctx)
    if content is None:
        return
    if kind == "torchscript" and "/code/" in f"/{name}":
        ctx.add(
            "SC050",
            ScanVerdict.SUSPICIOUS,
            f"TorchScript code {name!r}: torch.jit.load compiles and runs it",
            at,
        )
        return
    if kind == "keras" and name == "config.json":
        _scan_keras_config_json(content, at, ctx)
        return
    ctx.scan_member(content, at)


def _scan_keras_config_json(content: memoryview, at: str, ctx: ScanContext) -> None:
    import json

    from bastion.supply.formats.keras import scan_keras_config

    try:
        config = json.loads(bytes(content))
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        ctx.add("SC042", ScanVerdict.ERROR, f"Keras config.json is not JSON: {err}", at)
        return
    scan_keras_config(config, at, ctx)


def _local_name(data: memoryview, offset: int) -> bytes | None:
    head = bytes(data[offset : offset + 30])
    if len(head) < 30 or head[:4] != b"PK\x03\x04":
        return None
    n = struct.unpack("<H", head[26:28])[0]
    return bytes(data[offset + 30 : offset + 30 + n])


def _read_zip_member(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, at: str, ctx: ScanContext
) -> memoryview | None:
    """The member's bytes, decompressed under the limits, CRC checked."""
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2,
                                  zipfile.ZIP_LZMA):  # fmt: skip
        ctx.add(
            "SC014",
            ScanVerdict.ERROR,
            f"zip member {info.filename!r} uses compression method {info.compress_type}, "
            "which the scanner cannot read",
            at,
        )
        return None
    out = bytearray()
    try:
        with zf.open(info) as fh:
            # torch.load ignores CRCs: read what it reads, compare the CRC ourselves below
            if hasattr(fh, "_expected_crc"):
                fh._expected_crc = None
            while True:
                chunk = fh.read(_CHUNK)
                if not chunk:
                    break
                out += chunk
                compressed = info.compress_type != zipfile.ZIP_STORED
                if compressed and not _within_limits(len(chunk), len(out), info, at, ctx):
                    return None
    except (
        zipfile.BadZipFile,
        OSError,
        EOFError,
        zlib.error,
        lzma.LZMAError,
        NotImplementedError,  # flag bits 5 and 6 (patched data, strong encryption)
        RuntimeError,  # an encrypted member zipfile was asked to read without a password
    ) as err:
        ctx.add("SC014", ScanVerdict.ERROR, f"zip member {info.filename!r}: {err}", at)
        return None
    if zlib.crc32(out) != info.CRC:
        ctx.add(
            "SC014",
            ScanVerdict.ERROR,
            f"zip member {info.filename!r} has a bad CRC-32 (torch.load ignores it; scanned "
            "anyway)",
            at,
        )
    return memoryview(out)


def _within_limits(
    chunk: int, total: int, info: zipfile.ZipInfo, at: str, ctx: ScanContext
) -> bool:
    if not ctx.count_decompressed(chunk, at):
        return False
    ratio = total / max(info.compress_size, 1)
    if total > ctx.limits.ratio_floor and ratio > ctx.limits.max_ratio:
        ctx.add(
            "SC011",
            ScanVerdict.UNSAFE,
            f"zip member {info.filename!r} expands {ratio:.0f}x "
            f"(limit {ctx.limits.max_ratio:.0f}x)",
            at,
        )
        return False
    return True


# -- tar -----------------------------------------------------------------------------------------
def looks_like_tar(data: memoryview) -> bool:
    """A ustar header, or a pre-POSIX one (no magic) whose checksum is right: tarfile reads
    both."""
    if len(data) < 512:
        return False
    if bytes(data[257:262]) == b"ustar":
        return True
    head = bytes(data[:512])
    try:
        stored = int(head[148:156].replace(b"\0", b" ").strip() or b"-1", 8)
    except ValueError:
        return False
    return stored == sum(head[:148]) + 8 * 32 + sum(head[156:]) and head[0] != 0


def scan_tar(data: memoryview, where: str, ctx: ScanContext) -> str:
    try:
        with tarfile.open(fileobj=_View(data), mode="r:") as tf:
            _scan_tar_members(tf, data, where, ctx)
    except (tarfile.TarError, OSError, ValueError) as err:
        ctx.add("SC014", ScanVerdict.ERROR, f"corrupt tar archive: {err}", where)
    return "tar"


def _scan_tar_members(tf: tarfile.TarFile, data: memoryview, where: str, ctx: ScanContext) -> None:
    for member in _tar_members(tf, ctx, where):
        at = _member_where(where, member.name)
        problem = _escapes(member.name)
        if problem:
            ctx.add("SC010", ScanVerdict.UNSAFE, f"tar member {member.name!r} {problem}", at)
        if member.issym() or member.islnk() or member.isdev():
            ctx.add(
                "SC015",
                ScanVerdict.UNSAFE,
                f"tar member {member.name!r} is a link or device (target {member.linkname!r})",
                at,
            )
            continue
        if not member.isfile():
            continue
        start = member.offset_data
        end = start + member.size
        if end > len(data):
            ctx.add("SC014", ScanVerdict.ERROR, f"tar member {member.name!r} is truncated", at)
            continue
        ctx.scan_member(data[start:end], at)


def _tar_members(tf: tarfile.TarFile, ctx: ScanContext, where: str) -> Iterator[tarfile.TarInfo]:
    for count, member in enumerate(tf):
        if count >= ctx.limits.max_members:
            ctx.add(
                "SC011",
                ScanVerdict.UNSAFE,
                f"more than {ctx.limits.max_members} tar members",
                where,
            )
            return
        yield member


# -- compressed streams --------------------------------------------------------------------------
def compression_of(data: memoryview) -> str | None:
    """``gzip``, ``bz2``, ``xz``, ``lzma``, ``zlib`` or ``joblib-zf`` (old joblib), or None."""
    head = bytes(data[:6])
    for name, magic in COMPRESSION_MAGIC.items():
        if head.startswith(magic):
            return name
    if head[:2] == b"ZF":
        return "joblib-zf"
    if len(head) >= 2 and head[0] == 0x78 and ((head[0] << 8) | head[1]) % 31 == 0:
        return "zlib"
    return None


def _decompressor(kind: str) -> Any:
    if kind == "gzip":
        return zlib.decompressobj(zlib.MAX_WBITS | 16)
    if kind == "bz2":
        return bz2.BZ2Decompressor()
    if kind == "xz":
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    if kind == "lzma":
        return lzma.LZMADecompressor(format=lzma.FORMAT_ALONE)
    return zlib.decompressobj()


def scan_compressed(data: memoryview, kind: str, where: str, ctx: ScanContext) -> str:
    """Decompress (bounded, every concatenated member) and scan what comes out."""
    # "ZF" + the length in hex padded to 19 characters (joblib's _MAX_LEN), and one more space
    # in files of joblib <= 0.8.4 (zlib data never starts with a space)
    skip = 22 if kind == "joblib-zf" and bytes(data[21:22]) == b" " else 21
    payload = data[skip:] if kind == "joblib-zf" else data
    out = bytearray()
    try:
        pos = 0
        while True:
            dec = _decompressor("zlib" if kind == "joblib-zf" else kind)
            while not dec.eof:
                if pos >= len(payload):
                    ctx.add("SC014", ScanVerdict.ERROR, f"{kind} stream is truncated", where)
                    raise _StopScanError
                piece = bytes(payload[pos : pos + _CHUNK])
                pos += len(piece)
                for produced in _inflate(dec, piece):
                    out += produced
                    if not _stream_within_limits(len(produced), len(out), pos, where, ctx):
                        raise _StopScanError
            # what the decompressor did not use starts the next member (gzip, bz2 and xz
            # files may hold several) or is trailing data
            unused = len(dec.unused_data)
            pos -= unused
            if pos >= len(payload):
                break
            if kind not in ("gzip", "bz2", "xz") or compression_of(payload[pos:]) != kind:
                ctx.add(
                    "SC006",
                    ScanVerdict.SUSPICIOUS,
                    f"{len(payload) - pos} bytes follow the {kind} stream",
                    where,
                )
                break
    except _StopScanError:
        if not out:
            return kind
    except (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError) as err:
        ctx.add("SC014", ScanVerdict.ERROR, f"corrupt {kind} stream: {err}", where)
        if not out:
            return kind
    inner = ctx.scan_member(memoryview(out), f"{where} ({kind})" if where else f"({kind})")
    return f"{inner}+{kind}" if inner not in ("data", "nested") else kind


class _StopScanError(Exception):
    """Decompression stopped on a finding already recorded."""


def _inflate(dec: Any, piece: bytes) -> Iterator[bytes]:
    """Decompress ``piece`` in outputs of at most ``_CHUNK`` bytes (a bomb never gets to
    allocate more than that before the limits see it)."""
    if hasattr(dec, "unconsumed_tail"):  # zlib
        buf = piece
        while buf and not dec.eof:
            yield dec.decompress(buf, _CHUNK)
            buf = dec.unconsumed_tail
        return
    yield dec.decompress(piece, _CHUNK)  # bz2 / lzma keep their own input buffer
    while not dec.eof and not dec.needs_input:
        yield dec.decompress(b"", _CHUNK)


def _stream_within_limits(
    produced: int, total: int, consumed: int, where: str, ctx: ScanContext
) -> bool:
    if not ctx.count_decompressed(produced, where):
        return False
    ratio = total / max(consumed, 1)
    if total > ctx.limits.ratio_floor and ratio > ctx.limits.max_ratio:
        ctx.add(
            "SC011",
            ScanVerdict.UNSAFE,
            f"compressed stream expands {ratio:.0f}x (limit {ctx.limits.max_ratio:.0f}x)",
            where,
        )
        return False
    return True


# -- NumPy .npy ----------------------------------------------------------------------------------
def looks_like_npy(data: memoryview) -> bool:
    return bytes(data[:6]) == b"\x93NUMPY"


def scan_npy(data: memoryview, where: str, ctx: ScanContext) -> str:
    """Parse the header as a literal (never eval); object arrays are a pickle: walk it."""
    try:
        major = data[6]
        if major == 1:
            hlen = int.from_bytes(data[8:10], "little")
            start = 10
        elif major in (2, 3):
            hlen = int.from_bytes(data[8:12], "little")
            start = 12
        else:
            raise ValueError(f"unknown .npy version {major}")
        raw = bytes(data[start : start + hlen])
        if len(raw) != hlen:
            raise ValueError("header runs past the end of the file")
        header = ast.literal_eval(raw.decode("latin-1" if major < 3 else "utf-8"))
        if not isinstance(header, dict) or not {"descr", "fortran_order", "shape"} <= set(header):
            raise ValueError(f"header is not a .npy header dict: {raw[:80]!r}")
        body = data[start + hlen :]
        from numpy.lib.format import descr_to_dtype

        # any dtype spelling numpy accepts ('O', 'object', nested fields): ask numpy itself
        if descr_to_dtype(header["descr"]).hasobject:
            from bastion.supply.pickle_scan import scan_pickle_streams

            scan_pickle_streams(body, where, ctx)
            return "npy-object"
        import numpy as np

        shape = header["shape"]
        if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise ValueError(f"shape {shape!r}")
        expected = math.prod(shape) * np.dtype(header["descr"]).itemsize
        if len(body) < expected:
            raise ValueError(f"{len(body)} data bytes, the header promises {expected}")
    except (ValueError, SyntaxError, TypeError, IndexError, MemoryError, RecursionError) as err:
        ctx.add("SC051", ScanVerdict.ERROR, f"malformed .npy: {err}", where)
    return "npy"
