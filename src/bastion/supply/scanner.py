"""Scan model files before anything loads them: formats by content, verdicts by allowlist.

``scan_path`` reads a file once (memory-mapped), detects its format from its bytes (never
its extension), and walks it with the format's scanner; containers hand their members back
here, so nesting is followed to the depth limit. The result records the sha256 of the bytes
that were scanned, so a loader can refuse a file that changed after its scan.

Example::

    >>> from bastion.supply import scan_path
    >>> result = scan_path("model.joblib")                 # doctest: +SKIP
    >>> result.verdict.value, [f.rule for f in result.findings]   # doctest: +SKIP
    ('suspicious', ['SC001'])
"""

from __future__ import annotations

import hashlib
import mmap
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from bastion.supply import containers
from bastion.supply.allowlist import DEFAULT_ALLOWLIST, Allowlist
from bastion.supply.context import ScanContext, ScanLimits
from bastion.supply.pickle_scan import is_pickle_start, scan_pickle_streams
from bastion.supply.results import FileScan, ScanFinding, ScanVerdict

__all__ = ["iter_files", "scan_bytes", "scan_path", "scan_paths"]

_HDF5 = b"\x89HDF\r\n\x1a\n"
# findings sort worst first, then by where they are
_ORDER = {v: -v.rank for v in ScanVerdict}


def scan_path(
    path: str | os.PathLike[str],
    *,
    allow: Allowlist = DEFAULT_ALLOWLIST,
    limits: ScanLimits | None = None,
    digest: bool = True,
) -> FileScan:
    """Scan one file.

    Parameters:
        path: the file.
        allow: names model files may import (defaults plus the policy's ``scan.allow``).
        limits: depth, decompression and member limits.
        digest: record the sha256 of the scanned bytes (what a loader checks against); off,
            a scan reads only what its format needs (a torch archive's raw storages are
            skipped) and ``FileScan.sha256`` is empty.

    Returns:
        A :class:`FileScan`; an unreadable file gives verdict ``error`` (rule SC091).
    """
    p = Path(path)
    try:
        size = p.stat().st_size
        with open(p, "rb") as fh:
            if size == 0:
                return _scan(memoryview(b""), str(p), p.parent, allow, limits, digest)
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                view = memoryview(mapped)
                try:
                    return _scan(view, str(p), p.parent, allow, limits, digest)
                finally:
                    view.release()
    except OSError as err:
        finding = ScanFinding("SC091", ScanVerdict.ERROR, f"cannot read the file: {err}")
        return FileScan(path=str(p), format="unreadable", findings=(finding,))


def scan_bytes(
    data: bytes | memoryview,
    name: str,
    *,
    base_dir: str | os.PathLike[str] | None = None,
    allow: Allowlist = DEFAULT_ALLOWLIST,
    limits: ScanLimits | None = None,
) -> FileScan:
    """Scan bytes already in memory (what a loader is about to load); ``name`` labels them."""
    folder = Path(base_dir) if base_dir is not None else None
    return _scan(memoryview(data), name, folder, allow, limits)


def iter_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """Every regular file named or found (recursively, sorted) under the given folders; links
    are not followed out of a folder. A missing path is yielded as is (its scan reports it)."""
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for fname in sorted(files):
                    full = Path(root) / fname
                    if full.is_file() and not full.is_symlink():
                        yield full
        else:
            yield p


def scan_paths(
    paths: Iterable[str | os.PathLike[str]],
    *,
    allow: Allowlist = DEFAULT_ALLOWLIST,
    limits: ScanLimits | None = None,
    on_file: Callable[[FileScan], None] | None = None,
    digest: bool = True,
) -> list[FileScan]:
    """Scan every file under ``paths``; ``on_file`` sees each result as it is ready."""
    results = []
    for file in iter_files(paths):
        result = scan_path(file, allow=allow, limits=limits, digest=digest)
        if on_file is not None:
            on_file(result)
        results.append(result)
    return results


def _scan(
    view: memoryview,
    label: str,
    base_dir: Path | None,
    allow: Allowlist,
    limits: ScanLimits | None,
    digest: bool = True,
) -> FileScan:
    ctx = ScanContext(allow=allow, limits=limits or ScanLimits(), base_dir=base_dir)
    ctx.dispatch = _dispatch
    sha = hashlib.sha256(view).hexdigest() if digest else ""
    fmt = _dispatch(view, "", ctx, top=True)
    findings = sorted(ctx.findings, key=lambda f: (_ORDER[f.verdict], f.rule, f.location))
    return FileScan(
        path=label,
        format=fmt,
        findings=tuple(findings),
        sha256=sha,
        size=len(view),
        globals=tuple(sorted(ctx.globals_seen)),
    )


def _strict_safetensors(data: memoryview) -> bool:
    if len(data) <= 9 or data[8] != 0x7B:  # "{" after an 8-byte header length
        return False
    from bastion.supply.formats import safetensors

    return safetensors.is_safetensors(data)


def _probe(ctx: ScanContext) -> ScanContext:
    """A scratch context for a reading that may not count: ``ctx``'s settings, no findings."""
    return ScanContext(
        allow=ctx.allow,
        limits=ctx.limits,
        base_dir=ctx.base_dir,
        depth=ctx.depth,
        decompressed=ctx.decompressed,
        in_torch_archive=ctx.in_torch_archive,
        dispatch=ctx.dispatch,
    )


def _imports_nothing(probe: ScanContext) -> bool:
    """Whether a probe's pickle reading found nothing that runs code: no code runs without an
    import (the walker reads as CPython's unpickler reads: see pickle_scan._parse_int), be it
    a global, an extension code (SC004: the loading process's registry imports it) or what
    the walker calls unsafe."""
    return not probe.globals_seen and not any(
        f.rule == "SC004" or f.verdict is ScanVerdict.UNSAFE for f in probe.findings
    )


def _merge(probe: ScanContext, ctx: ScanContext) -> None:
    """Make a probe's reading count."""
    ctx.findings.extend(probe.findings)
    ctx.globals_seen |= probe.globals_seen
    ctx.decompressed = max(ctx.decompressed, probe.decompressed)


def _pickle_inside_safetensors(data: memoryview, where: str, ctx: ScanContext) -> None:
    """A safetensors file that opens like a pickle (a header length whose low byte is 0x80,
    1 in 32 of the library's files; or an opcode character): harmless where ``pickle.load``
    on the same bytes would import nothing, whatever else it reads (a string, say, where a
    tensor name's "." ends the stream). Otherwise a polyglot: an opcode with an argument can
    swallow the header's first bytes (BINFLOAT takes 8, an INT line everything up to a
    newline), the header's text can be opcodes, and the payload can sit in a tensor's data,
    so that ``pickle.load``, ``np.load`` or ``torch.load(weights_only=False)`` runs it (from
    two reviews). Its pickle findings are reported, with SC031."""
    probe = _probe(ctx)
    scan_pickle_streams(data, where, probe)
    if _imports_nothing(probe):
        return
    _merge(probe, ctx)
    ctx.add(
        "SC031",
        ScanVerdict.SUSPICIOUS,
        "the file is both a safetensors file and a pickle stream that "
        + (
            "imports " + ", ".join(sorted(probe.globals_seen))
            if probe.globals_seen
            else "uses an extension code or what the scanner calls unsafe"
        )
        + ": a loader that unpickles it reads something else than the tensors",
        where,
    )


def _dispatch(data: memoryview, where: str, ctx: ScanContext, top: bool = False) -> str:
    """Detect ``data``'s format from its bytes and scan it; returns the format's name."""
    if len(data) == 0:
        return "empty"
    if containers.looks_like_zip(data):
        return containers.scan_zip(data, where, ctx)
    kind = containers.compression_of(data)
    if kind is not None:
        if kind == "zlib" and _strict_safetensors(data):
            # zlib's 2-byte header is loose (1 in 900 of the library's files open like one):
            # a stream that does not decompress is the safetensors file it also is
            probe = _probe(ctx)
            fmt = containers.scan_compressed(data, kind, where, probe)
            ctx.decompressed = probe.decompressed
            # (what decompressed before the break may be unpickled as it comes: joblib
            # reads so; it must import nothing)
            if any(f.rule == "SC014" for f in probe.findings) and _imports_nothing(probe):
                from bastion.supply.formats import safetensors

                safetensors.scan_safetensors(data, where, ctx)
                return "safetensors"
            _merge(probe, ctx)
            return fmt
        return containers.scan_compressed(data, kind, where, ctx)
    if containers.looks_like_npy(data):
        return containers.scan_npy(data, where, ctx)
    if is_pickle_start(data):
        # a safetensors header length can open the file with 0x80, pickle's PROTO (1 in 32
        # of the library's files): decided as the loader decides (strict here; lenient
        # below, for corrupt files), and read as a pickle too. Only here, after the
        # container tests, so that a safetensors file that is also a gzip stream or an
        # archive is scanned as that as well (from a review)
        fmt = "safetensors" if _strict_safetensors(data) else ""
        if fmt:
            from bastion.supply.formats import safetensors

            safetensors.scan_safetensors(data, where, ctx)
            _pickle_inside_safetensors(data, where, ctx)
        else:
            fmt = scan_pickle_streams(data, where, ctx)
        if top and _has_zip_directory(data):
            ctx.add(
                "SC013",
                ScanVerdict.SUSPICIOUS,
                f"the file is both a {fmt} file and a zip archive (a polyglot): loaders that "
                "look for the zip directory read something else",
                where,
            )
            containers.scan_zip(data, where, ctx)
        return fmt
    if containers.looks_like_tar(data):
        return containers.scan_tar(data, where, ctx)
    # the format modules load only when their format is plausible
    if bytes(data[:8]) == _HDF5 or bytes(data[512:520]) == _HDF5:
        from bastion.supply.formats import keras

        if keras.looks_like_hdf5(data):
            keras.scan_keras_h5(data, where, ctx)
            return "hdf5"
    if len(data) > 9 and data[8] == 0x7B:  # "{" after an 8-byte header length
        from bastion.supply.formats import safetensors

        if safetensors.looks_like_safetensors(data):
            safetensors.scan_safetensors(data, where, ctx)
            return "safetensors"
    if data[0] == 0x08:  # ModelProto opens with ir_version (field 1, varint)
        from bastion.supply.formats import onnx

        if onnx.looks_like_onnx(data):
            onnx.scan_onnx(data, where, ctx)
            return "onnx"
    if _is_text(data):
        return "text"
    if top:
        ctx.add(
            "SC090",
            ScanVerdict.SUSPICIOUS,
            "unrecognised binary format: not a model format the scanner knows, so nothing "
            "vouches for it",
            where,
        )
    return "data"


def _is_text(data: memoryview) -> bool:
    head = bytes(data[:8192])
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        # a multi-byte character cut at the window's end is still text
        return len(data) > len(head) and err.reason == "unexpected end of data"
    return True


def _has_zip_directory(data: memoryview) -> bool:
    tail = bytes(data[-(65536 + 22) :])
    return b"PK\x05\x06" in tail
