"""What a scan found: per-file verdicts and findings (frozen, JSON-ready).

A verdict orders from best to worst: ``safe`` < ``suspicious`` < ``unsafe``; ``error`` means
the file could not be read to the end (malformed, truncated, over a limit) and is never
treated as safe. A file's verdict is the worst of its findings' verdicts.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FileScan", "ScanFinding", "ScanVerdict", "worst"]


class ScanVerdict(enum.Enum):
    """How far a file can be trusted to load."""

    SAFE = "safe"
    SUSPICIOUS = "suspicious"
    ERROR = "error"
    UNSAFE = "unsafe"

    @property
    def rank(self) -> int:
        return _RANK[self]


# error ranks above suspicious: a file that could not be read whole may hide anything after
# the point where reading stopped; unsafe (a named danger) stays the worst
_RANK = {
    ScanVerdict.SAFE: 0,
    ScanVerdict.SUSPICIOUS: 1,
    ScanVerdict.ERROR: 2,
    ScanVerdict.UNSAFE: 3,
}

_SEVERITY = {
    ScanVerdict.SAFE: "info",
    ScanVerdict.SUSPICIOUS: "medium",
    ScanVerdict.ERROR: "high",
    ScanVerdict.UNSAFE: "critical",
}


def worst(verdicts: Any) -> ScanVerdict:
    """The worst verdict of an iterable (``safe`` when empty)."""
    out = ScanVerdict.SAFE
    for v in verdicts:
        if v.rank > out.rank:
            out = v
    return out


@dataclass(frozen=True)
class ScanFinding:
    """One thing the scanner saw.

    Attributes:
        rule: stable rule id (``SC001`` ...; see :mod:`bastion.supply.rules`).
        verdict: what this finding makes of the file.
        message: what was seen, naming the callable, member or field.
        location: where inside the file (``offset 1234``, ``member archive/data.pkl``,
            ``member a.zip > b.pkl offset 17``).
    """

    rule: str
    verdict: ScanVerdict
    message: str
    location: str = ""

    @property
    def severity(self) -> str:
        return _SEVERITY[self.verdict]

    def to_dict(self) -> dict[str, str]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "verdict": self.verdict.value,
            "message": self.message,
            "location": self.location,
        }


@dataclass(frozen=True)
class FileScan:
    """The scan of one file.

    Attributes:
        path: the file as given (or found under a given folder).
        format: detected from content (``pickle``, ``joblib-zlib``, ``torch-zip``, ``onnx``...).
        findings: everything worth reporting, worst first.
        sha256: digest of the bytes that were scanned (what a loader must load).
        size: bytes.
        globals: every ``module.name`` the pickle streams would import, sorted.
    """

    path: str
    format: str
    findings: tuple[ScanFinding, ...] = ()
    sha256: str = ""
    size: int = 0
    globals: tuple[str, ...] = field(default=())

    @property
    def verdict(self) -> ScanVerdict:
        return worst(f.verdict for f in self.findings)

    @property
    def safe(self) -> bool:
        return self.verdict is ScanVerdict.SAFE

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "verdict": self.verdict.value,
            "sha256": self.sha256,
            "size": self.size,
            "globals": list(self.globals),
            "findings": [f.to_dict() for f in self.findings],
        }
