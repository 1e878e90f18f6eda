"""Model file formats, recognised by content (never by extension), and file digests.

``detect_format`` reads a few bytes (and, for archives, the member list) and names the format:

================  ======================================================================
``onnx``          a protobuf ``ModelProto`` (top-level fields parse, ``ir_version`` and
                  ``graph`` present)
``torch-export``  a ``torch.export.save`` archive (``.pt2``: a zip whose ``archive_format``
                  member says ``pt2``)
``safetensors``   an 8-byte little-endian header length followed by a JSON header
``pickle``        a pickle stream (``PROTO`` opcode ``0x80``) or a joblib file, including
                  joblib files compressed with zlib, gzip, bz2, lzma/xz
``torch-pickle``  a ``torch.save`` zip archive (holds ``data.pkl``)
``torchscript``   a TorchScript archive (``torch.jit.save``: code plus pickles; deprecated)
``unknown``       anything else
================  ======================================================================

``pickle`` and ``torch-pickle`` are the *pickle family*: loading them runs whatever code the
file names, so :func:`bastion.models.loading.load_model` refuses them unless the caller trusts
the file explicitly.

Example::

    >>> detect_format("model.onnx")        # doctest: +SKIP
    'onnx'
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import os
import zipfile
import zlib
from pathlib import Path

from bastion.exceptions import ModelError

__all__ = [
    "FORMATS",
    "PICKLE_FAMILY",
    "detect_format",
    "sha256_file",
    "sha256_path",
]

FORMATS = (
    "onnx",
    "torch-export",
    "safetensors",
    "pickle",
    "torch-pickle",
    "torchscript",
    "unknown",
)
PICKLE_FAMILY = frozenset({"pickle", "torch-pickle"})

_CHUNK = 1 << 20
_TEXT_PICKLE_PROBE = 1 << 20
# ModelProto field number -> protobuf wire type (0 varint, 2 length-delimited); see onnx.proto.
_MODEL_PROTO_FIELDS = {
    1: 0,  # ir_version
    2: 2,  # producer_name
    3: 2,  # producer_version
    4: 2,  # domain
    5: 0,  # model_version
    6: 2,  # doc_string
    7: 2,  # graph
    8: 2,  # opset_import
    14: 2,  # metadata_props
    20: 2,  # training_info
    25: 2,  # functions
    26: 2,  # configuration
}


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of one file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_path(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, or of a folder as a whole.

    A folder's digest is the SHA-256 of the lines ``"<relative posix path>\\0<sha256>\\n"`` of
    every regular file below it, sorted by path, so renaming, adding, removing or changing any
    file changes it.

    Raises:
        ModelError: ``path`` does not exist.

    Example::

        >>> sha256_path("release/")  # doctest: +SKIP
        '5f1c...'
    """
    p = Path(path)
    if p.is_file():
        return sha256_file(p)
    if not p.is_dir():
        raise ModelError(f"model path {str(p)!r} does not exist")
    lines = []
    for root, _dirs, files in os.walk(p):
        for fname in files:
            full = Path(root) / fname
            if full.is_file():
                rel = full.relative_to(p).as_posix()
                lines.append(f"{rel}\0{sha256_file(full)}\n")
    digest = hashlib.sha256()
    for line in sorted(lines):
        digest.update(line.encode("utf-8"))
    return digest.hexdigest()


def detect_format(path: str | os.PathLike[str]) -> str:
    """Name a model file's format from its content; one of :data:`FORMATS`.

    Parameters:
        path: a model file.

    Returns:
        ``"onnx"``, ``"torch-export"``, ``"safetensors"``, ``"pickle"``, ``"torch-pickle"``,
        ``"torchscript"`` or ``"unknown"``.

    Raises:
        ModelError: ``path`` is not a readable file.

    Example::

        >>> detect_format("model.joblib")  # doctest: +SKIP
        'pickle'
    """
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"model file {str(p)!r} does not exist or is not a file")
    with open(p, "rb") as fh:
        head = fh.read(64)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return _zip_format(p)
    # safetensors first: its 8-byte header length opens 1 in 32 of the library's files with
    # 0x80, pickle's PROTO opcode (a length of 0x280 read as protocol 2); the scanner decides
    # in the same order (bastion.supply.formats.safetensors.is_safetensors)
    if _is_safetensors(p, head):
        return "safetensors"
    if _is_pickle_stream(head) or _is_compressed_pickle(p, head) or _is_text_pickle(p, head):
        return "pickle"
    if _is_onnx(p):
        return "onnx"
    return "unknown"


def _is_pickle_stream(head: bytes) -> bool:
    # Protocol 2+ pickles (everything pickle, joblib and torch have written since 2008)
    # open with PROTO (0x80) and the protocol number.
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _is_text_pickle(path: Path, head: bytes) -> bool:
    """A protocol 0/1 pickle (text opcodes, no PROTO): parsed to its STOP by the scanner's
    walker, which imports and runs nothing."""
    from bastion.supply.pickle_scan import is_pickle_start

    if not head or head[0] == 0x80:
        return False
    with open(path, "rb") as fh:
        data = fh.read(_TEXT_PICKLE_PROBE)
    return is_pickle_start(memoryview(data))


def _decompressed_head(path: Path, head: bytes) -> bytes | None:
    """First bytes of a zlib / gzip / bz2 / xz / lzma stream, or None when it is not one."""
    try:
        if head[:2] == b"\x1f\x8b":
            with gzip.open(path, "rb") as gz:
                return gz.read(8)
        if head[:3] == b"BZh":
            with bz2.open(path, "rb") as bz:
                return bz.read(8)
        if head[:6] == b"\xfd7zXZ\x00":
            with lzma.open(path, "rb", format=lzma.FORMAT_XZ) as xz:
                return xz.read(8)
        if head[:3] == b"\x5d\x00\x00":
            with lzma.open(path, "rb", format=lzma.FORMAT_ALONE) as lz:
                return lz.read(8)
        if len(head) >= 2 and head[0] == 0x78 and (head[0] << 8 | head[1]) % 31 == 0:
            with open(path, "rb") as fh:
                stream = zlib.decompressobj()
                out = b""
                while len(out) < 8:
                    chunk = fh.read(4096)
                    if not chunk:
                        break
                    out += stream.decompress(chunk, 8 - len(out))
                return out
    except (OSError, EOFError, lzma.LZMAError, zlib.error):
        return None
    return None


def _is_compressed_pickle(path: Path, head: bytes) -> bool:
    # Old joblib versions prefix zlib data with "ZF" and a 16-byte length field.
    if head.startswith(b"ZF"):
        try:
            return _is_pickle_stream(zlib.decompressobj().decompress(head[18:], 8))
        except zlib.error:
            return False
    inner = _decompressed_head(path, head)
    return inner is not None and _is_pickle_stream(inner)


def _is_safetensors(path: Path, head: bytes) -> bool:
    """By the scanner's rule (:func:`~bastion.supply.formats.safetensors.header_opens_file`),
    the header read only when its length fits."""
    from bastion.supply.formats.safetensors import MAX_HEADER, header_opens_file

    if len(head) < 10:
        return False
    n = int.from_bytes(head[:8], "little")
    size = path.stat().st_size
    if not 2 <= n <= MAX_HEADER or 8 + n > size or head[8:9] != b"{":
        return False
    with open(path, "rb") as fh:
        fh.seek(8)
        raw = fh.read(n)
    return header_opens_file(n, raw, size)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _is_onnx(path: Path) -> bool:
    """Walk the top-level protobuf fields of ``path`` without decoding nested messages."""
    size = path.stat().st_size
    if size < 4:
        return False
    seen: set[int] = set()
    with open(path, "rb") as fh:
        pos = 0
        while pos < size:
            fh.seek(pos)
            window = fh.read(20)
            try:
                key, off = _read_varint(window, 0)
                field, wire = key >> 3, key & 7
                if _MODEL_PROTO_FIELDS.get(field) != wire:
                    return False
                value, off = _read_varint(window, off)
            except ValueError:
                return False
            pos += off
            if wire == 2:
                pos += value
            seen.add(field)
    return pos == size and 1 in seen and 7 in seen


def _zip_format(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            fmt_members = [n for n in names if n.rsplit("/", 1)[-1] == "archive_format"]
            for member in fmt_members:
                if zf.read(member).strip() == b"pt2":
                    return "torch-export"
    except (zipfile.BadZipFile, OSError, KeyError):
        return "unknown"
    leaves = {n.split("/", 1)[-1] for n in names}
    if any(leaf.startswith("code/") for leaf in leaves) and "constants.pkl" in leaves:
        return "torchscript"
    if "data.pkl" in leaves:
        return "torch-pickle"
    return "unknown"
