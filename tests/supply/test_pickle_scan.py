"""The pickle opcode walker: what it follows, what it refuses, and that it never runs anything."""

from __future__ import annotations

import io
import math
import os
import pickle
import struct
import warnings
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

from bastion.supply import Allowlist, ScanVerdict, scan_bytes, scan_path


def rules(data: bytes, **kw: Any) -> list[tuple[str, str]]:
    return [(f.rule, f.verdict.value) for f in scan_bytes(data, "t", **kw).findings]


def verdict(data: bytes, **kw: Any) -> str:
    return scan_bytes(data, "t", **kw).verdict.value


class _System:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", range(6))
def test_reduce_of_a_gadget_is_unsafe_in_every_protocol(protocol: int, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    data = pickle.dumps(_System(marker), protocol=protocol)
    result = scan_bytes(data, "p.pkl")
    assert result.verdict is ScanVerdict.UNSAFE
    assert ("SC002", "unsafe") in [(f.rule, f.verdict.value) for f in result.findings]
    assert "posix.system" in result.globals or "nt.system" in result.globals
    assert not marker.exists()


def test_stack_global_names_fed_from_the_memo_are_followed() -> None:
    # "os" and "system" pushed, memoized, popped, then fetched back with BINGET
    data = (
        b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94"
        b"00"  # POP POP: the names now live only in the memo
        b"h\x00h\x01\x93"  # BINGET 0, BINGET 1, STACK_GLOBAL
        b"\x8c\x04true\x85R."
    )
    result = scan_bytes(data, "memo.pkl")
    assert result.globals == ("os.system",)
    assert result.verdict is ScanVerdict.UNSAFE


def test_stack_global_of_a_computed_name_is_unsafe() -> None:
    # the module name is the result of a call, not a literal string
    data = b"\x80\x04cbuiltins\nstr\n)R\x8c\x06system\x93)R."
    found = rules(data)
    assert ("SC003", "unsafe") in found


def test_unknown_names_are_suspicious_and_can_be_allowlisted() -> None:
    data = b"\x80\x04\x8c\x05mypkg\x8c\x05Thing\x93)R."
    assert rules(data) == [("SC001", "suspicious")]
    assert verdict(data, allow=Allowlist.of(["mypkg.Thing"])) == "safe"
    # a user's list never makes a known gadget safe
    gadget = b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x01x\x85R."
    assert verdict(gadget, allow=Allowlist.of(["os.system"])) == "unsafe"


def test_inst_and_obj_opcodes_are_judged() -> None:
    inst = b"(S'touch x'\nios\nsystem\n."
    obj = b"(cos\nsystem\nS'touch x'\no."
    assert ("SC002", "unsafe") in rules(inst)
    assert ("SC002", "unsafe") in rules(obj)


def test_extension_codes_are_suspicious() -> None:
    for op in (b"\x82\x01", b"\x83\x01\x00", b"\x84\x01\x00\x00\x00"):
        data = b"\x80\x02" + op + b")R."
        assert ("SC004", "suspicious") in rules(data)


def test_build_on_an_imported_object_and_calls_of_non_imports_are_unsafe() -> None:
    build = b"\x80\x04\x8c\x08builtins\x8c\x03str\x93}b."  # BUILD on the class str itself
    assert ("SC008", "unsafe") in rules(build)
    call = b"\x80\x04\x8c\x03abc)R."  # REDUCE calls a string
    assert ("SC008", "unsafe") in rules(call)


def test_payload_before_a_parse_error_is_still_reported() -> None:
    payload = pickle.dumps(_System(Path("/nonexistent/x")), protocol=2)[:-1]  # drop STOP
    broken = payload + b"\xff"  # unknown opcode
    found = rules(broken)
    assert ("SC002", "unsafe") in found
    assert ("SC005", "error") in found
    truncated = scan_bytes(payload[:-3], "t")
    assert truncated.verdict is not ScanVerdict.SAFE
    assert any(f.rule == "SC005" for f in truncated.findings)


def test_a_truncated_benign_stream_is_an_error_never_safe() -> None:
    data = pickle.dumps({"a": list(range(100))}, protocol=4)
    assert verdict(data) == "safe"
    for cut in (5, len(data) // 2, len(data) - 1):
        assert verdict(data[:cut]) == "error"


def test_every_concatenated_stream_is_walked() -> None:
    benign = pickle.dumps([1, 2, 3], protocol=4)
    evil = pickle.dumps(_System(Path("/nonexistent/x")), protocol=0)
    assert verdict(benign + evil) == "unsafe"
    assert verdict(benign + benign) == "safe"
    assert ("SC006", "suspicious") in rules(benign + b"\x00\x01garbage")


def test_frames_and_protocol_zero_text_are_read() -> None:
    big = pickle.dumps({"k": "v" * 70_000, "f": os.path.join}, protocol=5)  # framed
    assert b"\x95" in big[:12]
    assert "posixpath.join" in scan_bytes(big, "t").globals
    text = pickle.dumps({"a": 1.5, "b": [None, True]}, protocol=0)
    result = scan_bytes(text, "t")
    assert result.format == "pickle"
    assert result.safe


def test_persistent_ids_outside_torch_are_suspicious() -> None:
    class P(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            return "ref" if obj == "x" else None

    buf = io.BytesIO()
    P(buf, protocol=2).dump(["x"])
    assert ("SC007", "suspicious") in rules(buf.getvalue())


@pytest.mark.parametrize("compress", [0, 3, "gzip", "bz2", "lzma", "xz"])
def test_joblib_arrays_are_skipped_by_size_and_object_arrays_walked(
    compress: Any, tmp_path: Path
) -> None:
    path = tmp_path / "m.joblib"
    arrays = {
        "f": np.random.default_rng(0).random((50, 7)),
        "i": np.arange(13, dtype=np.int16),
        "s": np.zeros(3, dtype=[("x", "<f4"), ("y", "<i8")]),
        "u": np.array(["ab", "c"]),
        "t": np.array(["2020-01-01"], dtype="datetime64[ns]"),
        "e": np.zeros((0, 4)),
    }
    joblib.dump(arrays, path, compress=compress)
    assert scan_path(path).safe
    evil = {"x": np.arange(5.0), "o": np.array([_System(tmp_path / "ran"), 1], dtype=object)}
    joblib.dump(evil, path, compress=compress)
    result = scan_path(path)
    assert result.verdict is ScanVerdict.UNSAFE
    assert not (tmp_path / "ran").exists()


def test_torch_legacy_checkpoints_are_recognised(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Linear(3, 2))
    path = tmp_path / "legacy.pt"
    torch.save(net, path, _use_new_zipfile_serialization=False)
    result = scan_path(path)
    assert result.format == "torch-legacy"
    assert result.safe
    assert "torch.nn.modules.linear.Linear" in result.globals


def test_opcodes_with_bad_arguments_are_errors() -> None:
    for bad in (
        b"\x80\x06.",  # protocol 6
        b"\x80\x04h\x05.",  # memo key never stored
        b"\x80\x04R.",  # stack underflow
        b"\x80\x04(d\x01.",  # (unknown opcode 0x01)
        b"\x80\x04" + b"X" + struct.pack("<I", 1000) + b"abc",  # length past the end
    ):
        assert verdict(bad) == "error", bad


@pytest.mark.parametrize(
    "lead",
    [
        b"I0x1\n",  # INT in base 0, as C's strtol reads it
        b"I\x00whatever a NUL hides\n",  # a NUL ends the number: strtol stops there
        b"I 7 \n",
        b"L0x10L\n",
        b"L5\x00junkL\n",
        b"F1.5\x00junk\n",
        b"S'\\u'\n",  # an unknown escape, kept as it is
        b"I1\np1\x00x\n0g1\x00y\n",  # PUT / GET keys end at a NUL too
        b"(0N",  # POP of a MARK on an empty stack
    ],
)
def test_text_opcodes_are_read_as_cpython_reads_them(lead: bytes) -> None:
    """A walker stricter than CPython's C unpickler stopped where pickle.load goes on: a
    review ran code from streams opening "I0x1" or S'\\u', and from a safetensors header
    hidden in one INT line ("I", then NULs), all scanned as text or safe."""
    payload = lead + b"0cposix\nsystem\n(S'true'\ntR."
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # S'\\u': an invalid escape
        pickle.loads(lead + b".")  # CPython reads the lead
    scan = scan_bytes(payload, "t")
    assert scan.verdict is ScanVerdict.UNSAFE, (lead, scan)
    assert "posix.system" in scan.globals


@pytest.mark.parametrize(
    ("opcode", "argument"),
    [
        *((b"I", a) for a in (b"12", b"  12", b"12 ", b"0x1f", b"-0x10", b"010", b"08", b"0x",
                              b"\x00abc", b"1\x00junk", b"1_0", b"9" * 20, b"0x" + b"f" * 20,
                              b"abc", b" ", b"+5", b"1e3")),
        *((b"L", a) for a in (b"12L", b"0x10L", b"1\x00xL", b"abcL", b" 5 L", b"010L")),
        *((b"F", a) for a in (b"1.5", b"1.5\x00x", b"nan", b"x")),
        *((b"S", a) for a in (b"'\\u'", b"'a\\x41'", b"'abc'", b'"q"', b" 'x'", b"'x' ",
                              b"'\\q'", b"'unterminated")),
    ],
)  # fmt: skip
def test_text_arguments_parse_where_and_as_cpython_parses_them(
    opcode: bytes, argument: bytes
) -> None:
    """The walker's reading of a text opcode's argument against CPython's own unpickler on
    the same line: both accept it, with the same value, or both refuse it."""
    from bastion.supply import pickle_scan

    parse = {
        b"I": pickle_scan._parse_int,
        b"L": pickle_scan._parse_long,
        b"F": pickle_scan._parse_float,
        b"S": pickle_scan._py2_string,
    }[opcode]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            expected: Any = pickle.loads(opcode + argument + b"\n.")
        except Exception:  # any refusal
            expected = None
    try:
        got: Any = parse(argument, 0)
    except pickle_scan.PickleError:
        got = None
    if isinstance(expected, float) and math.isnan(expected):
        assert isinstance(got, float)
        assert math.isnan(got)
    else:
        assert got == expected, (opcode, argument)


def test_getattr_is_followed_only_for_a_literal_attribute_of_an_allowed_class() -> None:
    import datetime as dt
    import zoneinfo

    aware = dt.datetime(2020, 1, 1, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))
    for protocol in range(6):
        result = scan_bytes(pickle.dumps(aware, protocol=protocol), "tz.pkl")
        assert result.safe, (protocol, result.findings)
        assert "zoneinfo.ZoneInfo._unpickle" in result.globals
    # getattr(cls, "name") is judged as the attribute it reaches...
    chain = (
        b"\x80\x04\x8c\x08builtins\x8c\x07getattr\x93"
        b"\x8c\x05mypkg\x8c\x05Thing\x93\x8c\x04make\x86R)R."
    )
    found = rules(chain)
    assert scan_bytes(chain, "c").globals == ("builtins.getattr", "mypkg.Thing", "mypkg.Thing.make")
    assert ("SC001", "suspicious") in found
    assert ("SC002", "unsafe") not in found
    assert verdict(chain, allow=Allowlist.of(["mypkg.Thing", "mypkg.Thing.make"])) == "safe"
    gadget = chain.replace(b"\x05mypkg\x8c\x05Thing", b"\x05posix\x8c\x05uname")
    assert ("SC002", "unsafe") in rules(gadget)
    # ...and getattr handed anywhere else (here: stored in a list) is getattr itself
    escaped = b"\x80\x04]\x8c\x08builtins\x8c\x07getattr\x93a."
    assert ("SC002", "unsafe") in rules(escaped)
    # a non-literal attribute name cannot be followed
    computed = (
        b"\x80\x04\x8c\x08builtins\x8c\x07getattr\x93"
        b"\x8c\x08zoneinfo\x8c\x08ZoneInfo\x93\x8c\x08builtins\x8c\x03str\x93)R\x86R."
    )
    assert ("SC002", "unsafe") in rules(computed)
