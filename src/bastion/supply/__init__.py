"""Supply-chain protection: scan model artifacts before anything loads them, then load them
through an unpickler that admits only what the scan allowed.

Public API: :func:`scan_path`, :func:`scan_paths`, :func:`scan_bytes`,
:class:`~bastion.supply.results.FileScan`, :class:`~bastion.supply.allowlist.Allowlist`.
Importing this package imports no heavy dependency (the scanner is pure Python).
"""

from __future__ import annotations

from bastion.supply.allowlist import DEFAULT_ALLOWLIST, Allowlist
from bastion.supply.context import ScanLimits
from bastion.supply.results import FileScan, ScanFinding, ScanVerdict
from bastion.supply.scanner import iter_files, scan_bytes, scan_path, scan_paths

__all__ = [
    "DEFAULT_ALLOWLIST",
    "Allowlist",
    "FileScan",
    "ScanFinding",
    "ScanLimits",
    "ScanVerdict",
    "iter_files",
    "scan_bytes",
    "scan_path",
    "scan_paths",
]
