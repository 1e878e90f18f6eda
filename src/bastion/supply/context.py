"""State shared by one file's scan: limits, the allowlist, where we are, what was found.

Format scanners receive a :class:`ScanContext` and report through :meth:`ScanContext.add`;
containers (zip, tar, compressed streams, npz) hand their members back to the dispatcher with
:meth:`ScanContext.scan_member`, which detects each member's format from its content.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bastion.supply.results import ScanFinding, ScanVerdict

if TYPE_CHECKING:
    from bastion.supply.allowlist import Allowlist

__all__ = ["ScanContext", "ScanLimits"]


@dataclass(frozen=True)
class ScanLimits:
    """Bounds that keep a hostile file from exhausting the scanner.

    Attributes:
        max_depth: containers nested inside containers (a zip in a zip is depth 2).
        max_decompressed: bytes produced by all decompression in one file.
        max_ratio: decompressed / compressed bytes of one member or stream, checked once the
            output passes ``ratio_floor`` bytes (small files compress well legitimately).
        ratio_floor: see ``max_ratio``.
        max_members: members of one archive.
    """

    max_depth: int = 4
    max_decompressed: int = 64 << 30
    max_ratio: float = 1000.0
    ratio_floor: int = 64 << 20
    max_members: int = 100_000


@dataclass
class ScanContext:
    """One file's scan in progress.

    Attributes:
        allow: the allowlist of importable callables.
        limits: see :class:`ScanLimits`.
        base_dir: folder of the top-level file (ONNX external data must stay inside it).
        depth: how many containers enclose what is being scanned.
        findings: what was found so far.
        globals_seen: ``module.name`` of every import in every pickle stream.
        decompressed: bytes produced by decompression so far.
        in_torch_archive: inside a torch.save archive or legacy checkpoint (persistent ids
            are expected there).
        dispatch: scans one member's bytes (set by the scanner).
    """

    allow: Allowlist
    limits: ScanLimits = field(default_factory=ScanLimits)
    base_dir: Path | None = None
    depth: int = 0
    findings: list[ScanFinding] = field(default_factory=list)
    globals_seen: set[str] = field(default_factory=set)
    decompressed: int = 0
    in_torch_archive: bool = False
    dispatch: Callable[[memoryview, str, ScanContext], str] | None = None

    def add(self, rule: str, verdict: ScanVerdict, message: str, location: str = "") -> None:
        """Record a finding."""
        self.findings.append(ScanFinding(rule, verdict, message, location))

    def scan_member(self, data: memoryview, where: str) -> str:
        """Scan a container's member (detected by content); returns its format name."""
        if self.dispatch is None:  # pragma: no cover - the scanner always sets it
            raise RuntimeError("ScanContext.dispatch is not set")
        if self.depth >= self.limits.max_depth:
            self.add(
                "SC012",
                ScanVerdict.SUSPICIOUS,
                f"containers nested {self.depth + 1} deep (limit {self.limits.max_depth}): "
                "the member was not scanned",
                where,
            )
            return "nested"
        self.depth += 1
        try:
            return self.dispatch(data, where, self)
        finally:
            self.depth -= 1

    def count_decompressed(self, n: int, where: str) -> bool:
        """Add ``n`` decompressed bytes; False (and an SC011 finding) once over the limit."""
        self.decompressed += n
        if self.decompressed > self.limits.max_decompressed:
            self.add(
                "SC011",
                ScanVerdict.UNSAFE,
                f"decompressed data exceeds {self.limits.max_decompressed} bytes",
                where,
            )
            return False
        return True
