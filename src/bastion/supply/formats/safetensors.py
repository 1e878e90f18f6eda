"""safetensors files: a strict check of the header, the only part of the format that is parsed.

A safetensors file is ``u64 little-endian N`` + ``N`` bytes of UTF-8 JSON + raw tensor bytes.
The JSON maps each tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}``
(offsets relative to the data region) plus an optional ``"__metadata__"`` string map. The
format holds no code, so what can go wrong is the header lying about the bytes:

- offsets past the end of the file, or element counts whose byte size overflows 64 bits,
  make readers that trust the header read out of bounds or allocate too little (native and
  GPU loaders index the mapped file directly): verdict **unsafe**;
- everything else the reference implementation (huggingface/safetensors,
  ``Metadata::validate``) rejects makes the file unloadable and may hide bytes a scan never
  looked at (overlapping or gapped tensors, bytes after the last tensor, a size that does not
  match ``shape`` x ``dtype``, an unknown dtype, duplicate names, a bad ``__metadata__``):
  verdict **error**.

All are rule **SC030**. Keys other than ``dtype`` / ``shape`` / ``data_offsets`` inside a
tensor entry are ignored, as the reference implementation ignores them.

Differences from the reference implementation, all stricter: the header must start with
``{`` (the library tolerates leading whitespace; no writer emits it), duplicate JSON keys are
an error (parsers disagree on which one wins, so the scan and the loader could see different
tensors), and ``NaN`` / ``Infinity`` literals are rejected as in strict JSON.

Nothing is loaded: the data region is never read, only its length is used.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from bastion.supply.context import ScanContext
from bastion.supply.results import ScanVerdict

__all__ = ["DTYPE_BITS", "MAX_HEADER", "looks_like_safetensors", "scan_safetensors"]

MAX_HEADER = 100_000_000
"""Largest header accepted: the reference implementation's ``MAX_HEADER_SIZE``."""

DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "F64": 64,
    "I64": 64,
    "U64": 64,
    "C64": 64,
}
"""Element size in bits of every dtype the safetensors library (0.8) reads."""

_U64 = 1 << 64
_MAX_FINDINGS = 20  # per file; a header with 100k bad entries needs one line, not 100k
_METADATA = "__metadata__"


class _HeaderError(ValueError):
    """The header cannot be parsed; the message says why."""


@dataclass(frozen=True)
class _Tensor:
    name: str
    begin: int
    end: int


def looks_like_safetensors(data: memoryview) -> bool:
    """Whether ``data`` starts like a safetensors file: a plausible header length
    (2 ..  :data:`MAX_HEADER`) and a header that opens a JSON object. Lenient on purpose: a
    truncated or corrupt file still reaches :func:`scan_safetensors`, which says what is
    wrong, instead of being reported as an unknown format."""
    if len(data) < 10:
        return False
    n = int.from_bytes(data[:8], "little")
    return 2 <= n <= MAX_HEADER and data[8] == ord("{") and data[9] in b'"} \t\r\n'


def is_safetensors(data: memoryview) -> bool:
    """Whether ``data`` is a safetensors file by :func:`header_opens_file`, the rule the
    loader (:func:`bastion.models.formats.detect_format`) decides by too. Strict, as the
    scanner asks it at its pickle test: a header length whose low byte is 0x80 (1 in 32 of
    the library's files, whose headers are padded to 8 bytes) opens the file like a pickle's
    PROTO opcode. The scanner then also reads such a file as a pickle (a polyglot can pass
    this test: see the scanner's SC031)."""
    if not looks_like_safetensors(data):
        return False
    n = int.from_bytes(data[:8], "little")
    return 8 + n <= len(data) and header_opens_file(n, bytes(data[8 : 8 + n]), len(data))


def header_opens_file(n: int, header: bytes, size: int) -> bool:
    """The strict safetensors rule, shared by the scanner and the loader (two versions had
    drifted apart: 100 MiB against 100,000,000 bytes): a header length ``n`` of 2 ..
    :data:`MAX_HEADER` bytes that fits a file of ``size`` bytes, and a ``header`` (its ``n``
    bytes) that is UTF-8 JSON for an object, as the library reads it (``json.loads`` alone
    would take UTF-16 bytes too)."""
    if not 2 <= n <= MAX_HEADER or 8 + n > size or len(header) != n or header[:1] != b"{":
        return False
    try:
        parsed = json.loads(header.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(parsed, dict)


def scan_safetensors(data: memoryview, where: str, ctx: ScanContext) -> None:
    """Validate a safetensors header; report each violation as SC030 into ``ctx``.

    Parameters:
        data: the whole file.
        where: location prefix for findings (empty for a top-level file).
        ctx: the scan in progress.

    Example::

        >>> ctx = ScanContext(allow=Allowlist())  # doctest: +SKIP
        >>> data = memoryview(Path("m.safetensors").read_bytes())  # doctest: +SKIP
        >>> scan_safetensors(data, "", ctx)  # doctest: +SKIP
        >>> ctx.findings  # doctest: +SKIP
        []
    """
    report = _Reporter(where, ctx)
    try:
        header, data_len = _read_header(data)
    except _HeaderError as err:
        report.error(str(err), "header")
        return
    metadata = header.pop(_METADATA, None)
    if metadata is not None and not _is_str_map(metadata):
        report.error("__metadata__ is not a map of strings to strings", _METADATA)
    tensors = []
    for name, entry in header.items():
        tensor = _check_entry(name, entry, data_len, report)
        if tensor is not None:
            tensors.append(tensor)
    _check_layout(tensors, data_len, report)
    report.close()


class _Reporter:
    """Adds SC030 findings, at most :data:`_MAX_FINDINGS` of them, then a summary."""

    def __init__(self, where: str, ctx: ScanContext) -> None:
        self.where, self.ctx, self.count = where, ctx, 0

    def error(self, message: str, at: str) -> None:
        self._add(ScanVerdict.ERROR, message, at)

    def unsafe(self, message: str, at: str) -> None:
        self._add(ScanVerdict.UNSAFE, message, at)

    def _add(self, verdict: ScanVerdict, message: str, at: str) -> None:
        self.count += 1
        if self.count <= _MAX_FINDINGS or verdict is ScanVerdict.UNSAFE:
            # unsafe findings are never dropped: each names a distinct out-of-bounds tensor
            location = " ".join(p for p in (self.where, at) if p)
            self.ctx.add("SC030", verdict, message, location)

    def close(self) -> None:
        if self.count > _MAX_FINDINGS:
            self.ctx.add(
                "SC030",
                ScanVerdict.ERROR,
                f"{self.count - _MAX_FINDINGS} more header problems not listed",
                self.where,
            )


def _read_header(data: memoryview) -> tuple[dict[str, Any], int]:
    """The parsed header and the length of the data region."""
    if len(data) < 8:
        raise _HeaderError(f"the file has {len(data)} bytes, fewer than the 8-byte length")
    n = int.from_bytes(data[:8], "little")
    if n > MAX_HEADER:
        raise _HeaderError(f"header length {n} is over the {MAX_HEADER}-byte limit")
    if 8 + n > len(data):
        raise _HeaderError(f"header length {n} runs past the end of the file ({len(data)} bytes)")
    raw = bytes(data[8 : 8 + n])
    if not raw.startswith(b"{"):
        raise _HeaderError("the header does not start with '{'")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _HeaderError(f"the header is not UTF-8 (byte {err.start})") from err
    try:
        header = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except _HeaderError:
        raise
    except (ValueError, RecursionError) as err:
        raise _HeaderError(f"the header is not valid JSON: {err}") from err
    if not isinstance(header, dict):  # pragma: no cover - '{' start and valid JSON
        raise _HeaderError("the header is not a JSON object")
    return header, len(data) - 8 - n


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _HeaderError(f"duplicate key {key[:100]!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise _HeaderError(f"{name} is not a JSON value")


def _is_str_map(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def _is_count(value: object) -> bool:
    # bool is an int subclass; the reference implementation rejects true/false as numbers
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_entry(name: str, entry: object, data_len: int, report: _Reporter) -> _Tensor | None:
    """One tensor's entry; None when it is unusable for the layout check."""
    at = f"tensor {name[:100]!r}"
    if not isinstance(entry, dict):
        report.error("the entry is not an object", at)
        return None
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    bits = DTYPE_BITS.get(dtype) if isinstance(dtype, str) else None
    if bits is None:
        report.error(f"unknown dtype {str(dtype)[:40]!r}", at)
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        report.error("shape is not a list of non-negative integers", at)
        shape = None
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)):
        report.error("data_offsets is not a pair of non-negative integers", at)
        return None
    begin, end = offsets
    if begin > end:
        report.error(f"data_offsets [{begin}, {end}] end before they begin", at)
        return None
    if end > data_len:
        # a reader that trusts the header reads past the mapped file
        report.unsafe(
            f"data_offsets [{begin}, {end}] reach past the {data_len}-byte data region",
            at,
        )
        # clipped, so the layout check does not report the same bytes again as a gap
        return _Tensor(name, min(begin, data_len), data_len)
    if bits is not None and shape is not None:
        _check_size(shape, bits, end - begin, at, report)
    return _Tensor(name, begin, end)


def _check_size(shape: list[int], bits: int, nbytes: int, at: str, report: _Reporter) -> None:
    elements = math.prod(shape)
    if elements * bits >= _U64 * 8:
        # a fixed-width size computation wraps around: a native reader allocates too little
        # and writes past it (the reference implementation checks for this overflow)
        report.unsafe(f"shape {shape[:8]} overflows a 64-bit byte count", at)
        return
    if elements * bits % 8:
        report.error(f"shape {shape[:8]} does not fill whole bytes of its {bits}-bit dtype", at)
        return
    expected = elements * bits // 8
    if expected != nbytes:
        report.error(f"shape {shape[:8]} needs {expected} bytes, data_offsets span {nbytes}", at)


def _check_layout(tensors: list[_Tensor], data_len: int, report: _Reporter) -> None:
    """Tensors must tile the data region: no overlap, no gap, nothing after the last."""
    covered = 0
    for tensor in sorted(tensors, key=lambda t: (t.begin, t.end)):
        at = f"tensor {tensor.name[:100]!r}"
        if tensor.begin < covered:
            report.error(
                f"bytes {tensor.begin}..{min(tensor.end, covered)} also belong to another "
                "tensor (overlap)",
                at,
            )
        elif tensor.begin > covered:
            report.error(f"bytes {covered}..{tensor.begin} belong to no tensor (gap)", at)
        covered = max(covered, tensor.end)
    if covered < data_len:
        report.error(
            f"the last {data_len - covered} bytes of the data region belong to no tensor",
            "data",
        )
