"""Read pickle streams opcode by opcode and judge what they would import and call.

Nothing is deserialized: the walker keeps an abstract stack (strings, small literals, imported
names, call results, marks) just precise enough to know, for every opcode that imports
(``GLOBAL``, ``STACK_GLOBAL``, ``INST``, ``EXT1/2/4``) or calls (``REDUCE``, ``NEWOBJ``,
``NEWOBJ_EX``, ``OBJ``, ``INST``, ``BUILD``), which callable it is and where its name came
from. ``STACK_GLOBAL`` names taken from the memo are followed; names that are not literal
strings are reported (SC003). Every imported name is judged by the
:class:`~bastion.supply.allowlist.Allowlist`.

Protocols 0 to 5 are read, ``FRAME`` included; several streams in one file are read one after
the other; a stream that ends early or holds an unknown opcode is reported (SC005) and never
counted safe, and everything imported before the break is still judged. joblib's array
wrappers are followed as joblib reads them: the raw array bytes that follow a
``NumpyArrayWrapper`` are skipped by their size, and object arrays, which joblib writes as a
nested pickle, are walked.

References: the pickle opcode table (CPython ``Lib/pickletools.py``); Trail of Bits, "Never a
dill moment: exploiting machine learning pickle files" (2021); JFrog and Sonatype advisories
on picklescan / modelscan bypasses (2024-2025); MITRE ATLAS AML.T0010.003 (ML supply chain
compromise: model), AML.T0011.000 (unsafe ML artifacts).
"""

from __future__ import annotations

import _compat_pickle
import codecs
import contextlib
import math
import re
import warnings
from dataclasses import dataclass
from typing import Any

from bastion.supply.context import ScanContext
from bastion.supply.results import ScanVerdict

__all__ = ["PickleError", "is_pickle_start", "scan_pickle_streams", "walk_stream"]

# joblib writes an array's bytes right after the BUILD of its wrapper
_JOBLIB_WRAPPERS = frozenset(
    {
        "joblib.numpy_pickle.NumpyArrayWrapper",
        "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper",
    }
)
_JOBLIB_COMPAT = frozenset(
    {
        "joblib.numpy_pickle.NDArrayWrapper",
        "sklearn.externals.joblib.numpy_pickle.NDArrayWrapper",
        "joblib.numpy_pickle_compat.NDArrayWrapper",
    }
)
_TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER (legacy format)
_MAX_LITERAL_ITEMS = 64  # containers remember this many items (enough for wrapper states)
_DTYPE = re.compile(r"^[<>=|]?([a-zA-Z])(\d*)")


class PickleError(ValueError):
    """The stream is malformed or truncated at ``offset``."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


# -- abstract values ---------------------------------------------------------------------------
class _Mark:
    __slots__ = ()


_MARK = _Mark()


class _Unknown:
    __slots__ = ()


_UNKNOWN = _Unknown()


@dataclass(slots=True)
class _Global:
    name: str


@dataclass(slots=True)
class _Call:
    """The result of calling ``func`` (a :class:`_Global` or anything else) on ``args``."""

    func: Any
    args: Any
    state: Any = None


@dataclass(slots=True)
class _Container:
    """A list, dict, set or tuple: its first items, or None once it grew past the limit."""

    kind: str
    items: list[Any] | None


def _literal(value: Any) -> Any:
    """A Python literal for small containers of literals (for joblib states), else None."""
    if isinstance(value, _Container):
        if value.items is None:
            return None
        if value.kind == "dict":
            out: dict[Any, Any] = {}
            for k, v in value.items:
                out[_literal(k)] = v
            return out
        return tuple(_literal(v) for v in value.items)
    if isinstance(value, str | bytes | int | float | bool) or value is None:
        return value
    return None


# -- readers -----------------------------------------------------------------------------------
class _Reader:
    """Bytes of a memoryview from ``pos``; every read checks the end (truncation)."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: memoryview, pos: int = 0) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data)

    def byte(self) -> int:
        if self.pos >= self.end:
            raise PickleError("stream ends before STOP (truncated)", self.pos)
        b = self.data[self.pos]
        self.pos += 1
        return int(b)

    def take(self, n: int) -> memoryview:
        if n < 0:
            raise PickleError(f"negative length {n}", self.pos)
        if self.pos + n > self.end:
            raise PickleError(
                f"a {n}-byte argument runs past the end of the data (truncated)", self.pos
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "little")

    def sint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "little", signed=True)

    def line(self) -> bytes:
        # look for the newline in growing windows: a short line copies a few hundred bytes,
        # a long one (protocol 0 writes array bytes as one line) costs its own length
        start = pos = self.pos
        step = 256
        while pos < self.end:
            chunk = bytes(self.data[pos : min(self.end, pos + step)])
            idx = chunk.find(b"\n")
            if idx >= 0:
                self.pos = pos + idx + 1
                return bytes(self.data[start : pos + idx])
            pos += len(chunk)
            step = min(step * 2, 1 << 20)
        raise PickleError("a text argument has no end of line (truncated)", start)


def is_pickle_start(data: memoryview) -> bool:
    """Whether ``data`` opens like a pickle stream: ``PROTO``, or a protocol-0/1 stream
    that parses to its ``STOP`` (text that merely starts with an opcode character fails)."""
    if len(data) >= 2 and data[0] == 0x80:
        # PROTO: a pickle, whatever its protocol byte says (an unsupported one is reported)
        return True
    if len(data) < 2 or data[0] not in _PROTO0_STARTS:
        return False
    probe = ScanContext(allow=_PERMISSIVE)
    info = _StreamInfo()
    try:
        end = walk_stream(_Reader(data), probe, "", info)
    except PickleError:
        # pickle.load runs what it read before the break: an import that was called is code
        return bool(probe.globals_seen) and info.calls > 0
    return end > 1


# -- the walker --------------------------------------------------------------------------------
def scan_pickle_streams(data: memoryview, where: str, ctx: ScanContext) -> str:
    """Walk every pickle stream in ``data`` (one after the other) and report into ``ctx``.

    Returns the format name: ``pickle``, ``joblib``, or ``torch-legacy``.
    """
    reader = _Reader(data)
    fmt = "pickle"
    streams = 0
    while reader.pos < reader.end:
        start = reader.pos
        if fmt == "torch-legacy" and streams >= 5:
            break  # raw storage bytes follow the five pickles of torch's legacy format
        if streams and not _starts_stream(data, start):
            ctx.add(
                "SC006",
                ScanVerdict.SUSPICIOUS,
                f"{reader.end - start} bytes after the last pickle stream are not a pickle; "
                "pickle.load ignores them, but a custom loader may not",
                _at(where, start),
            )
            break
        try:
            info = _StreamInfo()
            walk_stream(reader, ctx, where, info)
        except PickleError as err:
            ctx.add(
                "SC005",
                ScanVerdict.ERROR,
                f"malformed pickle stream: {err}",
                _at(where, err.offset),
            )
            break
        if streams == 0 and info.first_int == _TORCH_MAGIC:
            fmt = "torch-legacy"
            ctx.in_torch_archive = True
        if info.joblib:
            fmt = "joblib"
            _plain_view(data, start, ctx, where)
        streams += 1
    return fmt


def _plain_view(data: memoryview, start: int, ctx: ScanContext, where: str) -> None:
    """pickle.load (unlike joblib.load) reads the bytes after an array wrapper as opcodes:
    walk the stream that way too and report what it would import there."""
    probe = ScanContext(allow=ctx.allow, limits=ctx.limits, in_torch_archive=ctx.in_torch_archive)
    with contextlib.suppress(PickleError):
        walk_stream(_Reader(data, start), probe, where, _StreamInfo(plain=True))
    # only known gadgets: array bytes read as opcodes make junk names out of chance bytes
    for name in sorted(probe.globals_seen - ctx.globals_seen):
        if ctx.allow.classify(name) == "dangerous":
            ctx.globals_seen.add(name)
            ctx.add(
                "SC002",
                ScanVerdict.UNSAFE,
                f"pickle.load (not joblib.load) reads joblib's array bytes as opcodes, and they "
                f"import {name}",
                _at(where, start),
            )


@dataclass
class _StreamInfo:
    first_int: int | None = None
    joblib: bool = False
    calls: int = 0
    proto: int = 0
    plain: bool = False  # read as pickle.load would: no joblib array skipping


# every opcode that can open a stream (pickle.load needs no PROTO): literals, containers, MARK,
# GLOBAL, FRAME, PROTO, extension codes, persistent ids
_PROTO0_STARTS = frozenset(
    b"(cilgdNIFLSVJKM]})\x80GTUXBC\x88\x89\x8a\x8b\x8c\x8d\x8e\x8f\x95\x96\x82\x83\x84"
)


def _starts_stream(data: memoryview, pos: int) -> bool:
    if pos >= len(data):
        return False
    b = data[pos]
    if b == 0x80:
        return pos + 1 < len(data) and 0 <= data[pos + 1] <= 5
    return b in _PROTO0_STARTS


def _at(where: str, offset: int) -> str:
    return f"{where} offset {offset}" if where else f"offset {offset}"


def walk_stream(r: _Reader, ctx: ScanContext, where: str, info: _StreamInfo | None = None) -> int:
    """Walk one stream from ``r.pos`` to its ``STOP``; returns the offset after it.

    Raises:
        PickleError: malformed or truncated (what was imported before is already reported).
    """
    stack: list[Any] = []
    marks: list[int] = []
    memo: dict[int, Any] = {}
    first_literal = True

    def pop() -> Any:
        if len(stack) <= (marks[-1] if marks else 0):
            raise PickleError("stack underflow", op_pos)
        return stack.pop()

    def pop_mark() -> list[Any]:
        if not marks:
            raise PickleError("no MARK on the stack", op_pos)
        base = marks.pop()
        items = stack[base:]
        del stack[base:]
        return items

    def top() -> Any:
        if len(stack) <= (marks[-1] if marks else 0):
            raise PickleError("stack underflow", op_pos)
        return stack[-1]

    # getattr(<allowed class>, "<literal>") is how Python pickles a classmethod such as
    # zoneinfo.ZoneInfo._unpickle: it is judged as an import of that attribute. Any other use
    # of getattr, or one the walker cannot follow, is judged as getattr itself when the
    # stream ends (or breaks)
    deferred: dict[int, tuple[_Global, int, list[bool]]] = {}

    def settle() -> None:
        for g, pos, uses in deferred.values():
            if not uses or not all(uses):
                _judge(g.name, "GLOBAL", ctx, _at(where, pos))
        deferred.clear()

    def escape(values: Any) -> None:
        """Deferred getattrs among ``values`` went somewhere the walker cannot follow."""
        for v in values:
            if isinstance(v, _Global) and id(v) in deferred:
                deferred[id(v)][2].append(False)
            elif isinstance(v, _Container):
                if v.items is None:
                    for _, _, uses in deferred.values():
                        uses.append(False)
                else:
                    escape(
                        [
                            x
                            for item in v.items
                            for x in (item if isinstance(item, tuple) else (item,))
                        ]
                    )

    def imported(module: str, name: str, how: str) -> _Global:
        written = _qualname(module, name)
        proto = info.proto if info is not None else 0
        if proto < 3 and (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif proto < 3 and module in _compat_pickle.IMPORT_MAPPING:
            # pickle.load maps Python 2 names (fix_imports) for protocols 0-2
            module = _compat_pickle.IMPORT_MAPPING[module]
        qualname = _qualname(module, name)
        if qualname != written:
            how = f"{how} (written {written}, a Python 2 name)"
        if qualname in _GETATTR:
            found = _Global(qualname)
            ctx.globals_seen.add(qualname)
            deferred[id(found)] = (found, op_pos, [])
            return found
        _judge(qualname, how, ctx, _at(where, op_pos), attribute_path="." in name)
        return _Global(qualname)

    try:
        while True:
            op_pos = r.pos
            op = r.byte()
            # -- literals ----------------------------------------------------------------------
            if op == 0x4B:  # BININT1
                v: Any = r.uint(1)
            elif op == 0x4D:  # BININT2
                v = r.uint(2)
            elif op == 0x4A:  # BININT
                v = r.sint(4)
            elif op == 0x8A:  # LONG1
                v = int.from_bytes(r.take(r.uint(1)), "little", signed=True)
            elif op == 0x8B:  # LONG4
                raw = r.take(r.sint(4))
                v = int.from_bytes(raw, "little", signed=True) if len(raw) <= 64 else _UNKNOWN
            elif op == 0x49:  # INT
                v = _parse_int(r.line(), op_pos)
            elif op == 0x4C:  # LONG
                v = _parse_long(r.line(), op_pos)
            elif op == 0x46:  # FLOAT
                v = _parse_float(r.line(), op_pos)
            elif op == 0x47:  # BINFLOAT
                r.take(8)
                v = 0.0
            elif op == 0x4E:  # NONE
                v = None
            elif op == 0x88:  # NEWTRUE
                v = True
            elif op == 0x89:  # NEWFALSE
                v = False
            elif op == 0x8C:  # SHORT_BINUNICODE
                v = _text(r.take(r.uint(1)), op_pos)
            elif op == 0x58:  # BINUNICODE
                v = _text(r.take(r.uint(4)), op_pos)
            elif op == 0x8D:  # BINUNICODE8
                v = _text(r.take(r.uint(8)), op_pos)
            elif op == 0x56:  # UNICODE (raw-unicode-escape, one line)
                v = r.line().decode("raw_unicode_escape", errors="replace")
            elif op == 0x53:  # STRING (repr-quoted, one line)
                v = _py2_string(r.line(), op_pos)
            elif op == 0x54:  # BINSTRING
                v = _text(r.take(r.sint(4)), op_pos, latin=True)
            elif op == 0x55:  # SHORT_BINSTRING
                v = _text(r.take(r.uint(1)), op_pos, latin=True)
            elif op in (0x43, 0x42, 0x8E, 0x96):  # SHORT_BINBYTES, BINBYTES, BINBYTES8, BYTEARRAY8
                size = {0x43: 1, 0x42: 4, 0x8E: 8, 0x96: 8}[op]
                n = r.uint(size)
                payload = r.take(n)
                v = bytes(payload) if n <= 64 else _UNKNOWN
            else:
                v = _NO_VALUE
            if v is not _NO_VALUE:
                if first_literal and info is not None and isinstance(v, int):
                    info.first_int = v
                first_literal = False
                stack.append(v)
                continue
            if op not in (0x80, 0x95):  # PROTO and FRAME come before the first value
                first_literal = False
            # -- structure ---------------------------------------------------------------------
            if op == 0x28:  # MARK
                marks.append(len(stack))
            elif op == 0x2E:  # STOP
                return r.pos
            elif op == 0x30:  # POP
                # POP of a MARK, as pickle.py and _pickle.c do, on an empty stack too (a
                # review hid a payload behind "(0": the walk stopped there, pickle.load not)
                if marks and marks[-1] == len(stack):
                    marks.pop()
                else:
                    pop()
            elif op == 0x31:  # POP_MARK
                pop_mark()
            elif op == 0x32:  # DUP
                stack.append(top())
            elif op == 0x80:  # PROTO
                proto = r.uint(1)
                if info is not None:
                    info.proto = proto
                if proto > 5:
                    raise PickleError(f"unsupported pickle protocol {proto}", op_pos)
            elif op == 0x95:  # FRAME: framing only; opcodes continue inside
                r.uint(8)
            elif op in (0x5D, 0x7D, 0x29, 0x8F):  # EMPTY_LIST, EMPTY_DICT, EMPTY_TUPLE, EMPTY_SET
                kind = {0x5D: "list", 0x7D: "dict", 0x29: "tuple", 0x8F: "set"}[op]
                stack.append(_Container(kind, []))
            elif op in (0x6C, 0x74, 0x91):  # LIST, TUPLE, FROZENSET
                items = pop_mark()
                kind = {0x6C: "list", 0x74: "tuple", 0x91: "set"}[op]
                stack.append(_Container(kind, items if len(items) <= _MAX_LITERAL_ITEMS else None))
            elif op in (0x85, 0x86, 0x87):  # TUPLE1..3
                k = op - 0x84
                items = [pop() for _ in range(k)][::-1]
                stack.append(_Container("tuple", items))
            elif op == 0x64:  # DICT
                items = pop_mark()
                if len(items) % 2:
                    raise PickleError("DICT with an odd number of items", op_pos)
                pairs = list(zip(items[::2], items[1::2], strict=True))
                stack.append(
                    _Container("dict", pairs if len(pairs) <= _MAX_LITERAL_ITEMS else None)
                )
            elif op == 0x61:  # APPEND
                value = pop()
                escape([value])
                _extend(top(), [value], op_pos)
            elif op in (0x65, 0x90):  # APPENDS, ADDITEMS
                values = pop_mark()
                escape(values)
                _extend(top(), values, op_pos)
            elif op == 0x73:  # SETITEM
                value = pop()
                key = pop()
                escape([key, value])
                _extend(top(), [(key, value)], op_pos)
            elif op == 0x75:  # SETITEMS
                items = pop_mark()
                escape(items)
                if len(items) % 2:
                    raise PickleError("SETITEMS with an odd number of items", op_pos)
                _extend(top(), list(zip(items[::2], items[1::2], strict=True)), op_pos)
            # -- memo --------------------------------------------------------------------------
            elif op == 0x70:  # PUT
                memo[_parse_index(r.line(), op_pos)] = top()
            elif op == 0x71:  # BINPUT
                memo[r.uint(1)] = top()
            elif op == 0x72:  # LONG_BINPUT
                memo[r.uint(4)] = top()
            elif op == 0x94:  # MEMOIZE
                memo[len(memo)] = top()
            elif op in (0x67, 0x68, 0x6A):  # GET, BINGET, LONG_BINGET
                idx = (
                    _parse_index(r.line(), op_pos)
                    if op == 0x67
                    else r.uint(1)
                    if op == 0x68
                    else r.uint(4)
                )
                if idx not in memo:
                    raise PickleError(f"memo key {idx} was never stored", op_pos)
                stack.append(memo[idx])
            # -- imports -----------------------------------------------------------------------
            elif op == 0x63:  # GLOBAL
                module = _text(memoryview(r.line()), op_pos)
                name = _text(memoryview(r.line()), op_pos)
                stack.append(imported(module, name, "GLOBAL"))
            elif op == 0x93:  # STACK_GLOBAL
                name_v = pop()
                module_v = pop()
                if isinstance(module_v, str) and isinstance(name_v, str):
                    stack.append(imported(module_v, name_v, "STACK_GLOBAL"))
                else:
                    ctx.add(
                        "SC003",
                        ScanVerdict.UNSAFE,
                        "STACK_GLOBAL imports a name computed at load time "
                        f"(module {_describe(module_v)}, name {_describe(name_v)})",
                        _at(where, op_pos),
                    )
                    stack.append(_Global("<computed>"))
            elif op == 0x69:  # INST: import + call with the marked arguments
                module = _text(memoryview(r.line()), op_pos)
                name = _text(memoryview(r.line()), op_pos)
                if info is not None:
                    info.calls += 1
                cls = imported(module, name, "INST")
                inst_args = pop_mark()
                escape(inst_args)
                stack.append(_Call(cls, _Container("tuple", inst_args)))
            elif op in (0x82, 0x83, 0x84):  # EXT1, EXT2, EXT4
                code = r.uint({0x82: 1, 0x83: 2, 0x84: 4}[op])
                ctx.add(
                    "SC004",
                    ScanVerdict.SUSPICIOUS,
                    f"extension code {code}: the loading process's copyreg registry decides what "
                    "it imports",
                    _at(where, op_pos),
                )
                stack.append(_Global(f"<extension {code}>"))
            # -- calls -------------------------------------------------------------------------
            elif op == 0x52:  # REDUCE
                if info is not None:
                    info.calls += 1
                args = pop()
                func = pop()
                if isinstance(func, _Global) and id(func) in deferred:
                    attribute = _getattr_target(args, deferred)
                    deferred[id(func)][2].append(attribute is not None)
                    if attribute is not None:
                        _judge(attribute, "getattr", ctx, _at(where, op_pos))
                        stack.append(_Global(attribute))
                        continue
                else:
                    escape([args])
                _check_callable(func, "REDUCE", ctx, _at(where, op_pos))
                stack.append(_Call(func, args))
            elif op == 0x81:  # NEWOBJ
                args = pop()
                cls_v = pop()
                escape([args, cls_v])
                _check_callable(cls_v, "NEWOBJ", ctx, _at(where, op_pos))
                stack.append(_Call(cls_v, args))
            elif op == 0x92:  # NEWOBJ_EX
                kwargs = pop()
                args = pop()
                cls_v = pop()
                escape([kwargs, args, cls_v])
                _check_callable(cls_v, "NEWOBJ_EX", ctx, _at(where, op_pos))
                stack.append(_Call(cls_v, args))
            elif op == 0x6F:  # OBJ
                items = pop_mark()
                if not items:
                    raise PickleError("OBJ without a class", op_pos)
                escape(items)
                if info is not None:
                    info.calls += 1
                _check_callable(items[0], "OBJ", ctx, _at(where, op_pos))
                stack.append(_Call(items[0], _Container("tuple", items[1:])))
            elif op == 0x62:  # BUILD
                state = pop()
                target = top()
                escape([state])
                if isinstance(target, _Global):
                    # setting attributes on an imported module-level object rewrites it for the
                    # whole process (a known way to plant a gadget)
                    ctx.add(
                        "SC008",
                        ScanVerdict.UNSAFE,
                        f"BUILD sets state on the imported object {target.name!r} itself",
                        _at(where, op_pos),
                    )
                elif isinstance(target, _Call):
                    target.state = state
                    func = target.func
                    if (
                        isinstance(func, _Global)
                        and func.name in _JOBLIB_WRAPPERS
                        and not (info is not None and info.plain)
                    ):
                        if info is not None:
                            info.joblib = True
                        _skip_joblib_array(r, target, ctx, where, op_pos)
                    elif isinstance(func, _Global) and func.name in _JOBLIB_COMPAT:
                        ctx.add(
                            "SC001",
                            ScanVerdict.SUSPICIOUS,
                            "joblib < 0.10 array wrapper: the array lives in a separate file "
                            "that joblib loads with its own unpickler",
                            _at(where, op_pos),
                        )
            # -- persistent ids and out-of-band buffers ----------------------------------------
            elif op == 0x50:  # PERSID
                r.line()
                _persistent(ctx, where, op_pos)
                stack.append(_UNKNOWN)
            elif op == 0x51:  # BINPERSID
                pid = pop()
                _persistent(ctx, where, op_pos)
                stack.append(_persistent_value(pid, ctx))
            elif op == 0x97:  # NEXT_BUFFER
                stack.append(_UNKNOWN)
            elif op == 0x98:  # READONLY_BUFFER
                top()
            else:
                raise PickleError(f"unknown opcode 0x{op:02x}", op_pos)

    finally:
        settle()


_NO_VALUE = object()
_GETATTR = frozenset({"builtins.getattr", "__builtin__.getattr"})


def _getattr_target(args: Any, deferred: dict[int, Any]) -> str | None:
    """``cls.attr`` for getattr's arguments ``(an imported class, "literal")``, else None."""
    if not (isinstance(args, _Container) and args.kind == "tuple" and args.items is not None):
        return None
    if len(args.items) != 2:
        return None
    owner, attr = args.items
    if not isinstance(owner, _Global) or id(owner) in deferred or not isinstance(attr, str):
        return None
    if not attr.isidentifier() or owner.name.startswith("<"):
        return None
    return f"{owner.name}.{attr}"


def _qualname(module: str, name: str) -> str:
    return f"{module}.{name}"


def _judge(
    name: str, how: str, ctx: ScanContext, location: str, attribute_path: bool = False
) -> None:
    ctx.globals_seen.add(name)
    kind = ctx.allow.classify_global(name, attribute_path)
    if kind == "dangerous":
        ctx.add(
            "SC002",
            ScanVerdict.UNSAFE,
            f"{how} imports {name}, which can run code or touch files when the file is loaded",
            location,
        )
    elif kind == "unknown":
        ctx.add(
            "SC001",
            ScanVerdict.SUSPICIOUS,
            f"{how} imports {name}, which is not on the allowlist (add it to scan.allow in "
            "bastion.yaml if you trust it)",
            location,
        )
    else:
        problem = ctx.allow.pin_mismatch(name)
        if problem is not None:
            ctx.add("SC009", ScanVerdict.UNSAFE, f"{name}: {problem}", location)


def _check_callable(func: Any, how: str, ctx: ScanContext, location: str) -> None:
    """Calls go to imported names; calling anything else (the result of another call, a
    string) is how gadget chains reach methods without importing them."""
    if isinstance(func, _Global):
        return
    ctx.add(
        "SC008",
        ScanVerdict.UNSAFE,
        f"{how} calls {_describe(func)}, not an imported class or function",
        location,
    )


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, _Global):
        return f"the imported {value.name}"
    if isinstance(value, _Call):
        func = value.func.name if isinstance(value.func, _Global) else "an object"
        return f"the result of calling {func}"
    if isinstance(value, _Container):
        return f"a {value.kind}"
    if value is _UNKNOWN:
        return "a value the scanner does not track"
    return type(value).__name__


def _extend(target: Any, items: list[Any], offset: int) -> None:
    if isinstance(target, _Container):
        if target.items is not None:
            target.items.extend(items)
            if len(target.items) > _MAX_LITERAL_ITEMS:
                target.items = None
    elif isinstance(target, _Mark):  # pragma: no cover - marks live in their own list
        raise PickleError("append to a MARK", offset)
    # appending to a call result (a list subclass, __setitem__) runs that class's methods,
    # which the class's own allowlisting already covers


def _persistent(ctx: ScanContext, where: str, offset: int) -> None:
    if ctx.in_torch_archive:
        return
    ctx.add(
        "SC007",
        ScanVerdict.SUSPICIOUS,
        "persistent id: pickle.load refuses it, but the loader that wrote the file resolves it "
        "with its own code",
        _at(where, offset),
    )


def _persistent_value(pid: Any, ctx: ScanContext) -> Any:
    """What torch's legacy loader returns for a persistent id: for ``("module", cls, file,
    source)`` the class itself (already judged when the stream imported it); storages and
    anything else are opaque."""
    if ctx.in_torch_archive and isinstance(pid, _Container) and pid.items:
        items = pid.items
        if items[0] == "module" and len(items) > 1 and isinstance(items[1], _Global):
            return items[1]
    return _UNKNOWN


# The text opcodes' numbers are read as CPython's C unpickler reads them (what pickle.load,
# numpy and torch use): its C string functions stop at a NUL byte, and INT tries C's strtol
# in base 0 first. A parse stricter than CPython's stops the walk where pickle.load goes on:
# a review hid a whole safetensors header in one INT line ("I", then NULs) and a payload
# after it, and wrote "I0x1" and S'\u', all refused here and run by pickle.load.
_STRTOL = re.compile(
    rb"[ \t\n\v\f\r]*([+-]?)(0[xX](?=[0-9a-fA-F])[0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)"
)
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1


def _c_string(raw: bytes) -> bytes:
    """A line as a C function sees it: up to its first NUL."""
    return raw.split(b"\0", 1)[0]


def _parse_int(raw: bytes, offset: int) -> int:
    """INT's argument: strtol(s, &end, 0) accepted when it stops at the line's end or a NUL
    (no digit at all counts when the line starts with a NUL), else int(s, 0) of the text up
    to the first NUL, as ``load_int`` in CPython's ``_pickle.c``."""
    text = _c_string(raw)
    match = _STRTOL.match(text)
    if match is not None and match.end() == len(text):
        digits = match.group(2)
        base = 16 if digits[:2].lower() == b"0x" else 8 if digits[:1] == b"0" else 10
        value = int(digits, base) * (-1 if match.group(1) == b"-" else 1)
        if _LONG_MIN <= value <= _LONG_MAX:
            return value
    elif text == b"" and raw != b"":  # a NUL first: strtol reads nothing, ends at the NUL
        return 0
    try:
        return int(text, 0)
    except ValueError as err:
        raise PickleError(f"bad integer {raw[:40]!r}", offset) from err


def _parse_long(raw: bytes, offset: int) -> int:
    """LONG's argument: a trailing "L" dropped, then int(s, 0) up to the first NUL."""
    text = raw[:-1] if raw.endswith(b"L") else raw
    try:
        return int(_c_string(text), 0)
    except ValueError as err:
        raise PickleError(f"bad long integer {raw[:40]!r}", offset) from err


def _parse_index(raw: bytes, offset: int) -> int:
    """GET's and PUT's memo key: a base-10 integer up to the first NUL."""
    try:
        return int(_c_string(raw))
    except ValueError as err:
        raise PickleError(f"bad memo key {raw[:40]!r}", offset) from err


def _parse_float(raw: bytes, offset: int) -> float:
    try:
        return float(_c_string(raw))
    except ValueError as err:
        raise PickleError(f"bad float {raw[:40]!r}", offset) from err


def _text(raw: memoryview, offset: int, latin: bool = False) -> str:
    try:
        return bytes(raw).decode("latin-1" if latin else "utf-8", errors="surrogatepass")
    except UnicodeDecodeError as err:
        raise PickleError(f"invalid UTF-8 in a string: {err}", offset) from err


def _py2_string(raw: bytes, offset: int) -> str:
    """STRING's argument as ``load_string`` reads it: quoted, then the bytes escapes decoded
    (CPython keeps an unknown escape such as \\u as it is, with a warning)."""
    text = raw.rstrip(b"\r")
    if len(text) < 2 or text[:1] not in (b"'", b'"') or text[-1:] != text[:1]:
        raise PickleError("STRING argument is not quoted", offset)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            decoded: bytes = codecs.escape_decode(text[1:-1])[0]
    except ValueError as err:
        raise PickleError(f"bad STRING escape: {err}", offset) from err
    return decoded.decode("latin-1")


# -- joblib arrays -------------------------------------------------------------------------------
def _skip_joblib_array(
    r: _Reader, wrapper: _Call, ctx: ScanContext, where: str, offset: int
) -> None:
    """Skip (or walk, for object arrays) the array data joblib wrote after the wrapper."""
    state = _literal(wrapper.state) if isinstance(wrapper.state, _Container) else None
    if not isinstance(state, dict):
        raise PickleError("joblib array wrapper without a readable state", offset)
    shape = _literal(state.get("shape"))
    dtype = state.get("dtype")
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise PickleError(f"joblib array wrapper with shape {shape!r}", offset)
    itemsize, has_object = _dtype_size(dtype)
    if has_object:
        # joblib pickles object arrays with pickle.dump right there: a nested stream
        walk_stream(r, ctx, where)
        return
    if itemsize is None:
        raise PickleError("joblib array wrapper with a dtype the scanner cannot size", offset)
    if state.get("numpy_array_alignment_bytes") is not None:
        pad = r.uint(1)
        r.take(pad)
    r.take(math.prod(shape) * itemsize)


def _dtype_size(dtype: Any) -> tuple[int | None, bool]:
    """(itemsize, holds objects) of an abstract ``numpy.dtype(code, align, copy)`` call whose
    BUILD state is ``(version, byteorder, subarray, names, fields, elsize, alignment, flags)``:
    ``elsize`` is set for flexible, structured and subarray types, and bit 0 of ``flags``
    (NPY_ITEM_HASOBJECT) marks any object inside, nested fields included."""
    if not (isinstance(dtype, _Call) and isinstance(dtype.func, _Global)):
        return None, False
    if dtype.func.name != "numpy.dtype":
        return None, False
    args = _literal(dtype.args) if isinstance(dtype.args, _Container) else None
    state = _literal(dtype.state) if isinstance(dtype.state, _Container) else None
    if not args or not isinstance(args[0], str) or not isinstance(state, tuple):
        return None, False
    if len(state) < 8 or not isinstance(state[7], int) or not isinstance(state[5], int):
        return None, False
    if state[7] & 1 or args[0].startswith("O"):
        return 8, True
    if state[5] > 0:
        return state[5], False
    match = _DTYPE.match(args[0])
    if match is None or not match.group(2):
        return None, False
    return int(match.group(2)), False


class _AllowEverything:
    """Permissive allowlist for :func:`is_pickle_start`'s probe (it judges nothing)."""

    def classify(self, qualname: str) -> str:
        return "allowed"

    def classify_global(self, qualname: str, attribute_path: bool = False) -> str:
        return "allowed"

    def pin_mismatch(self, qualname: str) -> None:
        return None


_PERMISSIVE: Any = _AllowEverything()
