"""safetensors header validation (SC030), checked against the safetensors library itself.

Benign files come from the library (NumPy and torch writers); corrupt variants are built by
hand. For every variant the library's own reader is asked too: the scanner must flag exactly
the files the library refuses (except where the module documents that it is stricter).
"""

from __future__ import annotations

import gzip
import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from bastion.supply.allowlist import Allowlist
from bastion.supply.context import ScanContext
from bastion.supply.formats.safetensors import (
    MAX_HEADER,
    looks_like_safetensors,
    scan_safetensors,
)
from bastion.supply.results import ScanFinding, ScanVerdict

st_numpy = pytest.importorskip("safetensors.numpy")

UNSAFE, ERROR = ScanVerdict.UNSAFE, ScanVerdict.ERROR


def _scan(data: bytes) -> list[ScanFinding]:
    ctx = ScanContext(allow=Allowlist())
    scan_safetensors(memoryview(data), "", ctx)
    return ctx.findings


def _raw(header: str | bytes, data: bytes = b"") -> bytes:
    """A file from header text (padded to 8 bytes as the library pads) and data bytes."""
    raw = header.encode() if isinstance(header, str) else header
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data


def _file(header: dict[str, object], data: bytes = b"") -> bytes:
    return _raw(json.dumps(header), data)


def _t(dtype: str, shape: list[object], begin: object, end: object) -> dict[str, object]:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def _library_accepts(data: bytes, tmp_path: Path) -> bool:
    from safetensors import safe_open

    path = tmp_path / "probe.safetensors"
    path.write_bytes(data)
    try:
        with safe_open(str(path), framework="numpy") as fh:
            list(fh.keys())
    except Exception:
        return False
    return True


def _benign() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    tensors = {
        "dense.weight": rng.standard_normal((4, 3)).astype(np.float32),
        "dense.bias": np.zeros(3, dtype=np.float64),
        "steps": np.arange(5, dtype=np.int64),
        "mask": np.array([True, False]),
        "empty": np.zeros((0, 4), dtype=np.float16),
    }
    return {
        "numpy": bytes(st_numpy.save(tensors, metadata={"format": "np", "seed": "0"})),
        "no tensors": bytes(st_numpy.save({})),
        "sub-byte dtype": _file({"t": _t("F4", [2, 2], 0, 2)}, bytes(2)),
        "metadata null": _file({"__metadata__": None, "t": _t("U8", [1], 0, 1)}, b"\x01"),
        "empty tensors share an offset": _file(
            {"a": _t("F32", [0], 0, 0), "b": _t("F32", [0], 0, 0), "c": _t("U8", [2], 0, 2)},
            bytes(2),
        ),
        "unknown entry key": _file({"t": {**_t("U8", [1], 0, 1), "note": "x"}}, b"\x01"),
    }


def _corrupt() -> dict[str, tuple[bytes, ScanVerdict, str]]:
    """name -> (file, verdict, text the message must contain)."""
    u8 = _t("U8", [4], 0, 4)
    return {
        "overlap": (
            _file({"a": _t("U8", [8], 0, 8), "b": _t("U8", [8], 4, 12)}, bytes(12)),
            ERROR,
            "overlap",
        ),
        "gap": (
            _file({"a": _t("U8", [4], 0, 4), "b": _t("U8", [4], 6, 10)}, bytes(10)),
            ERROR,
            "gap",
        ),
        "trailing bytes": (_file({"a": u8}, bytes(9)), ERROR, "last 5 bytes"),
        "bad dtype": (_file({"a": _t("F128", [1], 0, 16)}, bytes(16)), ERROR, "'F128'"),
        "size mismatch": (_file({"a": _t("F32", [3], 0, 8)}, bytes(8)), ERROR, "needs 12 bytes"),
        "sub-byte remainder": (_file({"a": _t("F4", [3], 0, 2)}, bytes(2)), ERROR, "whole bytes"),
        "end before begin": (_file({"a": _t("U8", [0], 4, 0)}, bytes(4)), ERROR, "end before"),
        "negative dim": (_file({"a": _t("U8", [-1], 0, 0)}), ERROR, "shape"),
        "boolean dim": (_file({"a": _t("U8", [True], 0, 1)}, b"\x00"), ERROR, "shape"),
        "float offset": (_file({"a": _t("U8", [1], 0.0, 1)}, b"\x00"), ERROR, "data_offsets"),
        "three offsets": (
            _file({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1, 1]}}, b"\x00"),
            ERROR,
            "data_offsets",
        ),
        "entry not an object": (_file({"a": [1, 2]}), ERROR, "not an object"),
        "metadata not strings": (
            _file({"__metadata__": {"epoch": 3}, "a": u8}, bytes(4)),
            ERROR,
            "__metadata__",
        ),
        "NaN literal": (
            _raw('{"a":{"dtype":"U8","shape":[NaN],"data_offsets":[0,1]}}'),
            ERROR,
            "NaN",
        ),
        "invalid JSON": (_raw('{"a": {"dtype": "U8",'), ERROR, "not valid JSON"),
        "not UTF-8": (_raw(b'{"\xff": 1}'), ERROR, "not UTF-8"),
        "short file": (b"\x08\x00\x00\x00\x00", ERROR, "fewer than the 8-byte length"),
        "header past the end": (
            struct.pack("<Q", 4096) + b'{"a": 1}',
            ERROR,
            "runs past the end",
        ),
        "header over the limit": (
            struct.pack("<Q", MAX_HEADER + 1) + b"{}",
            ERROR,
            "over the",
        ),
        "offsets past the end": (
            _file({"a": _t("U8", [64], 0, 64)}, bytes(4)),
            UNSAFE,
            "reach past",
        ),
        "size overflow": (
            _file({"a": _t("F32", [1 << 40, 1 << 40], 0, 0)}),
            UNSAFE,
            "overflows",
        ),
    }


# ---------------------------------------------------------------- detection


def test_looks_like_safetensors() -> None:
    assert looks_like_safetensors(memoryview(_benign()["numpy"]))
    # lenient on purpose: a truncated file is still recognised, and then reported
    assert looks_like_safetensors(memoryview(_corrupt()["header past the end"][0]))
    assert not looks_like_safetensors(memoryview(pickle.dumps([1, 2], protocol=4)))
    assert not looks_like_safetensors(memoryview(b"PK\x03\x04" + bytes(60)))
    assert not looks_like_safetensors(memoryview(b"\x08\x07\x12\x08skl2onnx"))
    assert not looks_like_safetensors(memoryview(np.random.default_rng(1).bytes(256)))


@pytest.mark.parametrize("length", [0x80, 0x180, 0x280, 0x580, 0x1080])
def test_a_header_length_that_opens_like_pickle_is_still_safetensors(
    length: int, tmp_path: Path
) -> None:
    """A header of 0x80 bytes (mod 256) opens the file with 0x80, pickle's PROTO opcode, and
    one of 0x280-0x580 with a valid protocol number: 1 in 32 of the library's files. The
    scanner read them as broken pickles (SC005, refused) and the loader as pickles (0x280
    and up); both must read safetensors, the same way."""
    from bastion.models.formats import detect_format
    from bastion.supply import scan_path
    from bastion.supply.formats.safetensors import is_safetensors

    text = json.dumps({"w": _t("F32", [2], 0, 8)})
    header = text + " " * (length - len(text))  # padded as the library pads, with spaces
    data = struct.pack("<Q", length) + header.encode() + np.arange(2, dtype="<f4").tobytes()
    assert data[0] == 0x80
    assert _library_accepts(data, tmp_path)
    assert is_safetensors(memoryview(data))
    path = tmp_path / "w.safetensors"
    path.write_bytes(data)
    scan = scan_path(path)
    assert (scan.format, scan.findings) == ("safetensors", ())
    assert detect_format(path) == "safetensors"


def _polyglot() -> bytes:
    """A valid safetensors file that pickle.load runs (from a review): the header length's
    bytes are PROTO 2 and BINFLOAT, which swallows the header's first 3 bytes; the key is
    a run of NONE / POP opcodes, SHORT_BINBYTES swallows the header's rest, and a GLOBAL of
    posix.system with its call sits in the data, a U8 tensor. Never loaded here."""
    payload = b"cposix\nsystem\n(S'true'\ntR."
    n = int.from_bytes(b"\x80\x02\x47\x00\x00\x00\x00\x00", "little")
    tail = json.dumps(_t("U8", [len(payload)], 0, len(payload)), separators=(",", ":"))
    swallowed = ('":' + tail + "}").encode().ljust(126)  # 126: "~", the length byte below
    fill = n - 3 - 2 - len(swallowed)
    header = b'{"k' + b"N0" * (fill // 2) + b"N" * (fill % 2) + b"C~" + swallowed
    assert len(header) == n
    return struct.pack("<Q", n) + header + payload


def test_a_safetensors_file_that_is_also_a_pickle_is_flagged(tmp_path: Path) -> None:
    """The strict safetensors test comes before the pickle test, and a polyglot passes it:
    the scanner called the file safe, and pickle.load, joblib.load or torch.load
    (weights_only=False) on it ran posix.system. Its pickle is scanned too (SC031), also
    inside a gzip stream."""
    from bastion.supply import scan_bytes
    from bastion.supply.formats.safetensors import is_safetensors

    data = _polyglot()
    assert is_safetensors(memoryview(data))
    assert _library_accepts(data, tmp_path)
    for blob in (data, gzip.compress(data)):
        scan = scan_bytes(blob, "model.bin")
        assert scan.verdict is UNSAFE
        rules = {f.rule for f in scan.findings}
        assert {"SC002", "SC031"} <= rules
        assert "posix.system" in scan.globals


def test_containers_are_scanned_before_the_safetensors_test(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A file that passes the strict safetensors test and is also a gzip stream or a tar
    archive holding a pickle (a review built both: joblib.load and torch.load ran them) is
    scanned as the container too: the safetensors test comes after the container tests, at
    the pickle test only. Here every file passes the safetensors test."""
    import io
    import tarfile

    from bastion.supply import scan_bytes
    from bastion.supply.formats import safetensors

    monkeypatch.setattr(safetensors, "is_safetensors", lambda data: True)
    malicious = b"cposix\nsystem\n(S'true'\ntR."
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as archive:
        member = tarfile.TarInfo("storages{x")  # byte 8, where a header opens, is "{"
        member.size = len(malicious)
        archive.addfile(member, io.BytesIO(malicious))
    squeezed = bytearray(gzip.compress(malicious))
    squeezed[8] = ord("{")  # gzip's XFL byte, which decompressors ignore
    for blob in (bytes(squeezed), tar.getvalue()):
        assert blob[8] == ord("{")
        scan = scan_bytes(blob, "model.bin")
        assert scan.verdict is UNSAFE, scan
        assert "posix.system" in scan.globals


def _named_file(length: int, name: str) -> bytes:
    """A library-style file (header padded with spaces to ``length`` bytes) of one tensor."""
    text = json.dumps({name: _t("F32", [4], 0, 16)})
    assert len(text) <= length
    header = text + " " * (length - len(text))
    return struct.pack("<Q", length) + header.encode() + np.arange(4, dtype="<f4").tobytes()


@pytest.mark.parametrize(
    ("length", "name"),
    [
        # "X" (BINUNICODE) of 32 bytes, then a "." (STOP) in the name: pickle.load returns a
        # string (a review found 15 of 399 Llama-style headers flagged so)
        (0x2058, "x" * 27 + ".attn.weight"),
        (0x2E28, "layers.0.mlp"),  # MARK, STOP
        (0x2E88, "layers.0.mlp"),  # NEWTRUE, STOP
        # PROTO, then BINFLOAT / BINUNICODE / FRAME / INT reading into the header
        (0x470180, "h.0.attn.bias"),
        (0x580180, "h.0.attn.bias"),
        (0x950180, "h.0.attn.bias"),
        (0x490180, "h.0.attn.bias"),
    ],
)
def test_genuine_files_whose_bytes_also_parse_a_little_as_pickle_scan_clean(
    length: int, name: str
) -> None:
    """Read as a pickle, these headers import nothing: no finding, whatever the pickle
    reader makes of them (a first version flagged them SC006 + SC031)."""
    from bastion.supply import scan_bytes

    data = _named_file(length, name)
    scan = scan_bytes(data, "w.safetensors")
    assert (scan.format, scan.findings) == ("safetensors", ())


@pytest.mark.parametrize("length", [0x0178, 0x2078, 0x5E78, 0xDA78, 0xF978])
def test_a_header_length_that_opens_like_zlib_is_still_safetensors(length: int) -> None:
    """0x78 then a byte that makes the pair a multiple of 31: a zlib header (1 in 900 of the
    library's files). The stream does not decompress, so the file is read as safetensors
    (it was refused: SC014 corrupt zlib stream)."""
    from bastion.supply import scan_bytes
    from bastion.supply.containers import compression_of

    data = _named_file(length, "layers.0.attn.weight")
    assert compression_of(memoryview(data)) == "zlib"
    scan = scan_bytes(data, "w.safetensors")
    assert (scan.format, scan.findings) == ("safetensors", ())


def test_a_zlib_stream_that_is_also_safetensors_is_scanned_as_zlib(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only a stream that does not decompress is let go as safetensors: one that does, or
    that yields an import before it breaks (joblib unpickles as it decompresses), is scanned
    as the stream."""
    import zlib

    from bastion.supply import scan_bytes, scanner

    monkeypatch.setattr(scanner, "_strict_safetensors", lambda data: True)
    payload = b"cposix\nsystem\n(S'true'\ntR."
    whole = zlib.compress(payload)
    broken = whole[:-6] + b"\xff" * 6  # the end corrupt, the payload before it
    for blob in (whole, broken):
        scan = scan_bytes(blob, "model.bin")
        assert scan.verdict is UNSAFE, scan
        assert "posix.system" in scan.globals


def test_a_safetensors_file_that_ends_in_a_zip_archive_is_scanned_as_both() -> None:
    """Read as safetensors (its header length opens like a pickle), a file that ends with a
    zip directory still has its archive scanned, as a pickle's had (SC013): loaders that
    read zip files from their end see the archive."""
    import io
    import zipfile

    from bastion.supply import scan_bytes

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("archive/data.pkl", b"cposix\nsystem\n(S'true'\ntR.")
    data = _named_file(0x180, "layers.0.attn.weight") + archive.getvalue()
    assert data[0] == 0x80
    scan = scan_bytes(data, "model.bin")
    assert scan.format == "safetensors"
    assert {"SC013", "SC002"} <= {f.rule for f in scan.findings}
    assert scan.verdict is UNSAFE


def test_the_loader_and_the_scanner_decide_safetensors_alike(tmp_path: Path) -> None:
    """One rule (``header_opens_file``) for both: the two copies had drifted (a 100 MiB
    against a 100,000,000-byte header limit; UTF-16 headers taken by one only)."""
    from bastion.models.formats import detect_format
    from bastion.supply.formats.safetensors import is_safetensors

    utf16 = '{"w": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}}'.encode("utf-16-le")
    files = {
        "genuine": _named_file(0x100, "w"),
        "0x80": _named_file(0x180, "w"),
        "utf-16": struct.pack("<Q", len(utf16)) + utf16,
        "past the end": _corrupt()["header past the end"][0],
        "over the limit": struct.pack("<Q", MAX_HEADER + 8) + b'{"a": 1}',
        "a list": _raw("[1, 2]"),
    }
    for name, data in files.items():
        path = tmp_path / f"{name}.bin"
        path.write_bytes(data)
        assert (detect_format(path) == "safetensors") == is_safetensors(memoryview(data)), name
    assert is_safetensors(memoryview(files["0x80"]))
    assert not is_safetensors(memoryview(files["utf-16"]))


def test_is_safetensors_is_strict() -> None:
    """Checked before the pickle test, so nothing but a header that parses is taken."""
    from bastion.supply.formats.safetensors import is_safetensors

    assert is_safetensors(memoryview(_benign()["numpy"]))
    assert not is_safetensors(memoryview(_corrupt()["header past the end"][0]))
    assert not is_safetensors(memoryview(pickle.dumps([1, 2], protocol=2)))
    # a pickle's PROTO, then bytes that would make a header length, then a "{" that does
    # not open JSON: the pickle scan still sees it
    assert not is_safetensors(memoryview(b"\x80\x02" + bytes(6) + b'{"a": oops}'))
    # UTF-8 only, as the library reads it (json.loads alone would take UTF-16)
    text = '{"w": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}}'.encode("utf-16-le")
    assert not is_safetensors(memoryview(struct.pack("<Q", len(text)) + text))


# ---------------------------------------------------------------- benign files


@pytest.mark.parametrize("name", list(_benign()))
def test_benign_files_have_no_findings(name: str, tmp_path: Path) -> None:
    data = _benign()[name]
    assert _library_accepts(data, tmp_path)
    assert _scan(data) == []


def test_torch_file_has_no_findings(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    torch.manual_seed(0)
    layer = torch.nn.Linear(6, 3)
    state = {k: v.detach() for k, v in layer.state_dict().items()}
    state["half"] = torch.ones(2, 2, dtype=torch.bfloat16)
    data = bytes(st_torch.save(state, metadata={"format": "pt"}))
    assert _library_accepts(data, tmp_path)
    assert _scan(data) == []


# ---------------------------------------------------------------- corrupt files


@pytest.mark.parametrize("name", list(_corrupt()))
def test_corrupt_files_are_flagged(name: str, tmp_path: Path) -> None:
    data, verdict, text = _corrupt()[name]
    findings = _scan(data)
    assert findings, name
    assert {f.rule for f in findings} == {"SC030"}
    assert max(f.verdict.rank for f in findings) == verdict.rank
    assert any(text in f.message for f in findings), [f.message for f in findings]
    # the reference implementation refuses every one of them too
    assert not _library_accepts(data, tmp_path)


def test_out_of_bounds_tensor_is_not_also_reported_as_a_gap() -> None:
    findings = _scan(_file({"a": _t("U8", [4], 0, 4), "b": _t("U8", [60], 4, 64)}, bytes(8)))
    assert [(f.verdict, "'b'" in f.location) for f in findings] == [(UNSAFE, True)]


def test_stricter_than_the_library(tmp_path: Path) -> None:
    u8 = json.dumps(_t("U8", [4], 0, 4))
    # duplicate names: parsers disagree on which entry wins
    duplicate = _raw('{"a":' + u8 + ',"a":' + u8 + "}", bytes(4))
    # leading whitespace: no writer emits it
    spaced = _raw(" " + json.dumps({"a": _t("U8", [1], 0, 1)}), b"\x00")
    for data, text in ((duplicate, "duplicate key 'a'"), (spaced, "start with '{'")):
        assert _library_accepts(data, tmp_path)  # documented differences
        findings = _scan(data)
        assert [f.verdict for f in findings] == [ERROR]
        assert text in findings[0].message


def test_many_problems_are_summarised() -> None:
    header = {f"t{i}": _t("X", [1], i, i + 1) for i in range(50)}
    findings = _scan(_file(header, bytes(50)))
    assert len(findings) == 21
    assert "30 more header problems" in findings[-1].message


def test_location_names_the_tensor() -> None:
    ctx = ScanContext(allow=Allowlist())
    scan_safetensors(memoryview(_corrupt()["bad dtype"][0]), "member m.zip > w.st", ctx)
    (finding,) = ctx.findings
    assert finding.location == "member m.zip > w.st tensor 'a'"
