"""ONNX models: external data that escapes the model folder, custom operator domains.

An ONNX file is a protobuf ``ModelProto``; loading one runs no Python, but two of its features
reach outside the file:

- **External data** (``TensorProto.data_location = EXTERNAL``): a tensor's bytes live in
  another file named by the ``location`` entry of ``external_data``, a path *relative to the
  model's folder*. Loaders that join that path without checking read (or, when re-saving,
  write) any file the process can reach: ``../../etc/passwd``, an absolute path, a symlink
  planted beside the model. This has been reported against onnx again and again
  (CVE-2022-25882, CVE-2024-27318, CVE-2025-51480, onnx/onnx#3991, onnx/onnx#7686, which now
  also rejects hard-linked and symlinked data files) and ONNX Runtime's C++ loader did not
  share the Python checks. Rule **SC020** (unsafe) names the tensor and the path.
- **Custom operator domains**: a node whose ``domain`` is not ONNX's own (or one ONNX Runtime
  ships) needs a native operator library from somewhere else to run: code that the file does
  not contain and the scan cannot judge. Rule **SC021** (suspicious) names the domain unless
  the allowlist holds ``onnx-domain:<domain>``. Domains that only host functions defined in the
  model itself (``ModelProto.functions``, as the PyTorch exporter writes) are resolved inside
  the file and are not reported.

A missing external file, an ``offset`` / ``length`` beyond its end, or a protobuf that is
truncated or malformed is rule **SC022** (error): the model cannot be loaded as scanned.

How: :mod:`bastion.supply._protobuf` walks the wire format (field numbers from ``onnx.proto``,
onnx 1.23): ``ModelProto`` (graph 7, opset_import 8, training_info 20, functions 25) ->
``GraphProto`` (node 1, initializer 5, sparse_initializer 15) -> ``NodeProto`` (op_type 4,
domain 7, attribute 5) -> ``AttributeProto`` (t 5, g 6, tensors 10, graphs 11, sparse_tensor
22, sparse_tensors 23), recursively through every subgraph; ``TrainingInfoProto``
(initialization 1, algorithm 2); ``FunctionProto`` (name 1, node 7, opset_import 9, domain 10,
attribute_proto 11); ``TensorProto`` (name 8, external_data 13 as ``StringStringEntryProto``
key 1 / value 2, data_location 14); ``SparseTensorProto`` (values 1, indices 2). Nothing is
deserialized into objects, nothing outside the file is opened: the external data files are
only ``stat``-ed, and only once their path has been found to stay inside
:attr:`ScanContext.base_dir`.

References: ONNX external data format (onnx/docs/ExternalData.md); onnx/onnx#3991 (ONNX
Runtime loads external data from outside the folder), GHSA-whh8-fjgc-qp73 / CVE-2024-27318
(a bypass of the CVE-2022-25882 fix), CVE-2025-51480 (file overwrite through
``save_external_data``), onnx/onnx#7686 (symlink and hard-link checks); MITRE ATLAS
AML.T0010.003 (supply chain: model), AML.T0011.000 (unsafe AI artifacts).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bastion.supply._protobuf import Field, ProtobufError, iter_fields
from bastion.supply.context import ScanContext
from bastion.supply.results import ScanVerdict

__all__ = ["STANDARD_DOMAINS", "looks_like_onnx", "scan_onnx"]

STANDARD_DOMAINS: frozenset[str] = frozenset(
    {
        "",
        "ai.onnx",
        "ai.onnx.ml",
        "ai.onnx.training",
        "ai.onnx.preview",  # onnx >= 1.18 defines operators here
        "ai.onnx.preview.training",
        # contrib operators built into ONNX Runtime itself
        "com.microsoft",
        "com.microsoft.nchwc",
        "com.microsoft.experimental",
        "com.ms.internal.nhwc",
    }
)
"""Operator domains served by ONNX itself or built into ONNX Runtime."""

# ModelProto field number -> wire type, for the content sniff (see onnx.proto)
_MODEL_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}

# the protobuf C++ parser that onnx and ONNX Runtime use stops at 100 nested messages; a graph
# level costs three (graph > node > attribute), so deeper graphs cannot be loaded anyway
_MAX_GRAPH_DEPTH = 32
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
_KNOWN_KEYS = frozenset({"location", "offset", "length", "checksum", "basepath"})
_DIGITS = re.compile(r"[0-9]+")
_DRIVE = re.compile(r"^[A-Za-z]:")
_MAX_REPORTS_PER_FILE = 10  # bounds errors reported per external file before summarising


def looks_like_onnx(data: memoryview) -> bool:
    """Whether ``data`` is an ONNX ``ModelProto``: its top-level fields are ModelProto fields
    with the right wire types, they parse exactly to the end, and ``ir_version`` (1) and
    ``graph`` (7) are present. Nested messages are not decoded."""
    if len(data) < 4:
        return False
    seen: set[int] = set()
    try:
        for f in iter_fields(data):
            if _MODEL_FIELDS.get(f.number) != f.wire:
                return False
            seen.add(f.number)
    except ProtobufError:
        return False
    return 1 in seen and 7 in seen


def scan_onnx(data: memoryview, where: str, ctx: ScanContext) -> None:
    """Report external data outside the model folder (SC020), custom operator domains
    (SC021) and malformed models or missing external data (SC022) into ``ctx``.

    Parameters:
        data: the whole ``.onnx`` file.
        where: location prefix for findings (empty for a top-level file).
        ctx: the scan in progress; ``ctx.base_dir`` is the model's folder (external data
            paths are resolved against it; without it only the paths' spelling is checked).

    Example::

        >>> ctx = ScanContext(allow=Allowlist(), base_dir=Path("models"))  # doctest: +SKIP
        >>> scan_onnx(memoryview(Path("models/m.onnx").read_bytes()), "", ctx)  # doctest: +SKIP
        >>> [f.rule for f in ctx.findings]  # doctest: +SKIP
        ['SC020']
    """
    walker = _Walker()
    try:
        walker.model(data)
    except ProtobufError as err:
        ctx.add("SC022", ScanVerdict.ERROR, f"malformed ONNX protobuf: {err}", where)
    # what was read before a parse error is still reported: a payload placed ahead of a
    # deliberate error must not go unseen
    _report_domains(walker, where, ctx)
    _report_external(walker.refs, where, ctx)


@dataclass
class _ExternalRef:
    """One tensor's external-data entries, as read from the file."""

    tensor: str
    path: str
    external: bool  # data_location == EXTERNAL (loaders read the file only then)
    entries: list[tuple[str, str]]

    def values(self, key: str) -> list[str]:
        return [v for k, v in self.entries if k == key]


@dataclass
class _DomainUse:
    ops: set[str] = field(default_factory=set)
    nodes: int = 0
    first_node: str = ""  # path of the first node in the domain
    first_import: str = ""  # path of the first opset import of the domain


class _Walker:
    """Collects external-data references, operator domains and local functions."""

    def __init__(self) -> None:
        self.refs: list[_ExternalRef] = []
        self.domains: dict[str, _DomainUse] = {}
        self.node_uses: list[tuple[str, str, str]] = []  # (domain, op_type, path)
        self.local_functions: set[tuple[str, str]] = set()
        self.function_domains: set[str] = set()
        self.has_graph = False
        self.has_ir_version = False

    def model(self, data: memoryview) -> None:
        for f in iter_fields(data):
            if f.number == 1:
                f.varint()
                self.has_ir_version = True
            elif f.number == 7:
                self.has_graph = True
                self.graph(f, "graph", 0)
            elif f.number == 8:
                self.opset(f, "opset_import")
            elif f.number == 20:
                self.training_info(f, "training_info")
            elif f.number == 25:
                self.function(f)
        if not (self.has_ir_version and self.has_graph):
            missing = [
                n
                for n, ok in (("ir_version", self.has_ir_version), ("graph", self.has_graph))
                if not ok
            ]
            raise ProtobufError(f"ModelProto lacks {' and '.join(missing)}")

    def graph(self, f: Field, path: str, depth: int) -> None:
        if depth > _MAX_GRAPH_DEPTH:
            raise ProtobufError(f"subgraphs nested deeper than {_MAX_GRAPH_DEPTH} at {path}")
        fields, error = _fields(f)
        name = next((_text(g.message()) for g in fields if g.number == 2), "")
        here = f"{path} {name!r}" if name else path
        for g in fields:
            if g.number == 1:
                self.node(g, here, depth)
            elif g.number == 5:
                self.tensor(g, f"{here} > initializer")
            elif g.number == 15:
                self.sparse_tensor(g, f"{here} > sparse_initializer")
        _reraise(error)

    def node(self, f: Field, path: str, depth: int) -> None:
        fields, error = _fields(f)
        strings = {g.number: _text(g.message()) for g in fields if g.number in (3, 4, 7)}
        name, op_type, domain = strings.get(3, ""), strings.get(4, ""), strings.get(7, "")
        here = f"{path} > node {name or op_type!r} ({op_type})"
        self.node_uses.append((domain, op_type, here))
        for g in fields:
            if g.number == 5:
                self.attribute(g, here, depth)
        _reraise(error)

    def attribute(self, f: Field, path: str, depth: int) -> None:
        fields, error = _fields(f)
        name = next((_text(g.message()) for g in fields if g.number == 1), "")
        here = f"{path} > attribute {name!r}"
        for g in fields:
            if g.number in (5, 10):
                self.tensor(g, here)
            elif g.number in (6, 11):
                self.graph(g, f"{here} > graph", depth + 1)
            elif g.number in (22, 23):
                self.sparse_tensor(g, here)
        _reraise(error)

    def tensor(self, f: Field, path: str) -> None:
        fields, error = _fields(f)
        name, location_field, entries = "", 0, []
        try:
            for g in fields:
                if g.number == 8:
                    name = _text(g.message())
                elif g.number == 13:
                    entries.append(_entry(g))
                elif g.number == 14:
                    location_field = g.varint()
        finally:
            external = location_field == _EXTERNAL
            if external or entries:
                self.refs.append(_ExternalRef(name, f"{path} {name!r}", external, entries))
        _reraise(error)

    def sparse_tensor(self, f: Field, path: str) -> None:
        for g in iter_fields(f.message(), f.offset):
            if g.number == 1:
                self.tensor(g, f"{path} values")
            elif g.number == 2:
                self.tensor(g, f"{path} indices")

    def opset(self, f: Field, path: str) -> None:
        domain = ""
        for g in iter_fields(f.message(), f.offset):
            if g.number == 1:
                domain = _text(g.message())
        use = self.domains.setdefault(domain, _DomainUse())
        use.first_import = use.first_import or path

    def training_info(self, f: Field, path: str) -> None:
        for g in iter_fields(f.message(), f.offset):
            if g.number == 1:
                self.graph(g, f"{path} > initialization", 0)
            elif g.number == 2:
                self.graph(g, f"{path} > algorithm", 0)

    def function(self, f: Field) -> None:
        fields, error = _fields(f)
        strings = {g.number: _text(g.message()) for g in fields if g.number in (1, 10)}
        name, domain = strings.get(1, ""), strings.get(10, "")
        self.local_functions.add((domain, name))
        self.function_domains.add(domain)
        here = f"function {domain}.{name}" if domain else f"function {name!r}"
        for g in fields:
            if g.number == 7:
                self.node(g, here, 0)
            elif g.number == 9:
                self.opset(g, f"{here} > opset_import")
            elif g.number == 11:
                self.attribute(g, here, 0)
        _reraise(error)


def _fields(f: Field) -> tuple[list[Field], ProtobufError | None]:
    """The fields of a nested message, and the error that stopped the parse (if any): what
    was read before a parse error is still walked, so a payload placed ahead of a deliberate
    error is seen."""
    out: list[Field] = []
    try:
        for g in iter_fields(f.message(), f.offset):
            out.append(g)
    except ProtobufError as err:
        return out, err
    return out, None


def _reraise(error: ProtobufError | None) -> None:
    if error is not None:
        raise error


def _entry(f: Field) -> tuple[str, str]:
    """A ``StringStringEntryProto`` as ``(key, value)``; paths keep undecodable bytes."""
    key = value = ""
    for g in iter_fields(f.message(), f.offset):
        if g.number == 1:
            key = _text(g.message())
        elif g.number == 2:
            # surrogateescape keeps every byte, so a path check sees what a loader would open
            value = bytes(g.message()).decode("utf-8", "surrogateescape")
    return key, value


def _text(raw: memoryview) -> str:
    return bytes(raw).decode("utf-8", "replace")


def _at(where: str, path: str) -> str:
    return " ".join(p for p in (where, path) if p)


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------- operator domains


def _report_domains(walker: _Walker, where: str, ctx: ScanContext) -> None:
    for domain, op_type, path in walker.node_uses:
        if (domain, op_type) in walker.local_functions:
            continue  # a function defined in this file: built from other nodes, all walked
        use = walker.domains.setdefault(domain, _DomainUse())
        use.ops.add(op_type)
        use.nodes += 1
        use.first_node = use.first_node or path
    for domain, use in walker.domains.items():
        if domain in STANDARD_DOMAINS or ctx.allow.allows(f"onnx-domain:{domain}"):
            continue
        if use.nodes == 0 and domain in walker.function_domains:
            continue  # imported only to call the model's own functions
        if use.nodes:
            ops = ", ".join(sorted(use.ops)[:5]) + (" ..." if len(use.ops) > 5 else "")
            message = (
                f"{use.nodes} node(s) use custom operator domain {_short(domain)!r} "
                f"(ops: {_short(ops)}): running them needs a native operator library "
                f"that the file does not contain; allow with 'onnx-domain:{_short(domain)}'"
            )
        else:
            message = (
                f"the model imports custom operator domain {_short(domain)!r}; allow "
                f"with 'onnx-domain:{_short(domain)}'"
            )
        ctx.add(
            "SC021",
            ScanVerdict.SUSPICIOUS,
            message,
            _at(where, use.first_node or use.first_import),
        )


# ---------------------------------------------------------------- external data


def _report_external(refs: list[_ExternalRef], where: str, ctx: ScanContext) -> None:
    by_location: dict[str, list[_ExternalRef]] = {}
    for ref in refs:
        locations = _check_entries(ref, where, ctx)
        for location in locations:
            by_location.setdefault(location, []).append(ref)
    for location, users in by_location.items():
        _check_location(location, users, where, ctx)


def _check_entries(ref: _ExternalRef, where: str, ctx: ScanContext) -> list[str]:
    """Problems with one tensor's entries (SC022); returns the locations it names."""
    loc = _at(where, ref.path)
    tensor = _short(ref.tensor) or "(unnamed)"
    keys = [k for k, _ in ref.entries]
    for key in sorted({k for k in keys if keys.count(k) > 1}):
        # loaders disagree on which duplicate wins, so the file may load what the scan missed
        ctx.add(
            "SC022",
            ScanVerdict.ERROR,
            f"tensor {tensor!r} repeats external_data key {_short(key)!r}",
            loc,
        )
    unknown = sorted({k for k in keys if k not in _KNOWN_KEYS})
    if unknown:
        # onnx <= 1.20 copied every key onto a Python object with setattr (CWE-915)
        ctx.add(
            "SC022",
            ScanVerdict.SUSPICIOUS,
            f"tensor {tensor!r} has unknown external_data keys "
            f"{', '.join(repr(_short(k, 40)) for k in unknown[:5])}",
            loc,
        )
    for key in ("offset", "length"):
        for value in ref.values(key):
            if not _DIGITS.fullmatch(value):
                ctx.add(
                    "SC022",
                    ScanVerdict.ERROR,
                    f"tensor {tensor!r} has external_data {key} {_short(value)!r}, "
                    "not a non-negative integer",
                    loc,
                )
    locations = ref.values("location")
    if ref.external and not any(locations):
        ctx.add(
            "SC022",
            ScanVerdict.ERROR,
            f"tensor {tensor!r} stores its data externally but names no location",
            loc,
        )
    return [location for location in locations if location]


def _spelling_problem(location: str) -> str | None:
    """Why a location escapes the model folder by its spelling alone (None if it does not)."""
    if "\x00" in location:
        return "contains a NUL byte (C loaders stop reading the path there)"
    if location.startswith(("/", "\\")):
        return "is an absolute path"
    if _DRIVE.match(location):
        return "names a Windows drive"
    for segment in re.split(r"[\\/]", location):
        # Windows drops trailing dots and spaces, so '.. ' and '...' can climb like '..'
        if len(segment) >= 2 and not segment.rstrip(". "):
            return f"climbs out of the model folder with {segment!r}"
    return None


def _check_location(location: str, users: list[_ExternalRef], where: str, ctx: ScanContext) -> None:
    first = users[0]
    tensors = _tensor_list(users)
    loc = _at(where, first.path)
    problem = _spelling_problem(location)
    if problem is not None:
        ctx.add(
            "SC020",
            ScanVerdict.UNSAFE,
            f"external data of {tensors} at {_short(location)!r}: the path {problem}",
            loc,
        )
        return  # never touch a path that points outside the folder
    if ctx.base_dir is None or ctx.depth > 0:
        # inside an archive the path is relative to the member, not to a folder on disk
        return
    try:
        base = ctx.base_dir.resolve()
        target = (base / location).resolve()
    except (OSError, RuntimeError, ValueError) as err:
        ctx.add(
            "SC022",
            ScanVerdict.ERROR,
            f"external data {_short(location)!r} of {tensors} cannot be resolved: {err}",
            loc,
        )
        return
    if not target.is_relative_to(base):
        ctx.add(
            "SC020",
            ScanVerdict.UNSAFE,
            f"external data of {tensors} at {_short(location)!r} resolves to {target}, "
            f"outside the model folder {base} (a symbolic link leads out)",
            loc,
        )
        return
    if any(u.external for u in users):
        _check_file(target, location, [u for u in users if u.external], where, ctx)


def _check_file(
    target: Path, location: str, users: list[_ExternalRef], where: str, ctx: ScanContext
) -> None:
    tensors = _tensor_list(users)
    loc = _at(where, users[0].path)
    try:
        info = os.stat(target)
    except OSError:
        ctx.add(
            "SC022",
            ScanVerdict.ERROR,
            f"external data file {_short(location)!r} of {tensors} does not exist",
            loc,
        )
        return
    if not stat.S_ISREG(info.st_mode):
        # a FIFO or device would hang or flood the loader
        ctx.add(
            "SC022",
            ScanVerdict.ERROR,
            f"external data {_short(location)!r} of {tensors} is not a regular file",
            loc,
        )
        return
    if info.st_nlink > 1:
        # a hard link can make a file from anywhere on the volume look local; onnx rejects it
        ctx.add(
            "SC020",
            ScanVerdict.SUSPICIOUS,
            f"external data file {_short(location)!r} of {tensors} has {info.st_nlink} hard "
            "links: its content may belong to a file outside the model folder",
            loc,
        )
    _check_bounds(info.st_size, location, users, where, ctx)


def _check_bounds(
    size: int, location: str, users: Iterable[_ExternalRef], where: str, ctx: ScanContext
) -> None:
    reported = 0
    for ref in users:
        offsets = [int(v) for v in ref.values("offset") if _DIGITS.fullmatch(v)]
        lengths = [int(v) for v in ref.values("length") if _DIGITS.fullmatch(v)]
        offset = max(offsets, default=0)
        length = max(lengths, default=0)
        if offset + length <= size:
            continue
        reported += 1
        if reported > _MAX_REPORTS_PER_FILE:
            continue
        ctx.add(
            "SC022",
            ScanVerdict.ERROR,
            f"tensor {_short(ref.tensor)!r} reads bytes {offset}..{offset + length} of "
            f"{_short(location)!r}, which holds {size} bytes",
            _at(where, ref.path),
        )
    if reported > _MAX_REPORTS_PER_FILE:
        ctx.add(
            "SC022",
            ScanVerdict.ERROR,
            f"{reported - _MAX_REPORTS_PER_FILE} more tensors read beyond the end of "
            f"{_short(location)!r}",
            where,
        )


def _tensor_list(users: list[_ExternalRef]) -> str:
    first = f"tensor {_short(users[0].tensor) or '(unnamed)'!r}"
    return first if len(users) == 1 else f"{first} and {len(users) - 1} more"
