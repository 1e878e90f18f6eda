"""Report writers: one plugin per output format, rendered in memory and written atomically.

Formats (id -> file written into the output folder):

====================  =================  ==============================================
id                    file               what it is for
====================  =================  ==============================================
``json``              ``report.json``    the ``bastion.report/v1`` document (the record)
``html``              ``report.html``    a self-contained page for people, with plots
``junit``             ``junit.xml``      CI test reports: one testcase per finding
``sarif``             ``report.sarif``   SARIF 2.1.0 code-scanning alerts
``markdown``          ``summary.md``     a short CI step summary (GitHub-flavoured)
====================  =================  ==============================================

A new format is one module holding a :class:`ReportWriter` subclass decorated with
``@REPORTERS.register`` plus one line in ``REPORTERS``' module list.

Every writer renders the *redacted* report: unless the policy allowed raw rows
(``report.raw_rows_allowed``), ``evidence["samples"]`` is dropped from every finding, so no
writer can leak data rows even if a check forgot to strip them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from bastion.exceptions import ConfigError
from bastion.findings import Finding, Status
from bastion.registry import Registry

if TYPE_CHECKING:
    from bastion.checks import Check
    from bastion.report import Report

__all__ = [
    "CATEGORIES",
    "FORMATS",
    "REPORTERS",
    "ReportWriter",
    "category_of",
    "check_class",
    "is_failure",
    "redact",
    "render",
    "waiver_text",
    "write_reports",
]

FORMATS: tuple[str, ...] = ("json", "html", "junit", "sarif", "markdown")
"""Every built-in format, in the order ``write_reports`` writes them by default."""

CATEGORIES: tuple[str, ...] = (
    "data",
    "validation",
    "fairness",
    "robustness",
    "extraction",
    "poisoning",
    "privacy",
    "other",
)
"""Report sections, in display order: the checks' categories (the Attack pillar's filed
under ``other`` before; a review), and ``other`` for checks of unknown origin. Written out
rather than taken from ``bastion.checks.CATEGORIES``, whose import costs pandas and more
(a test keeps the two equal)."""

# Check-id prefixes of the built-in check families. The registry is only asked for ids
# outside these, so that rendering a hand-built report never imports every check module.
_PREFIX_CATEGORY: dict[str, str] = {
    "DQ": "data",
    "DD": "data",
    "MV": "validation",
    "FA": "fairness",
    "ADV": "robustness",
    "EXT": "extraction",
    "POI": "poisoning",
    "PRV": "privacy",
}


class ReportWriter(ABC):
    """Base class of a report format.

    Subclasses set ``id`` (the ``--format`` value), ``filename`` (written into the output
    folder) and ``media_type``, and implement :meth:`render`, which must be pure: it returns
    the whole document as text and touches no file.
    """

    id: ClassVar[str]
    filename: ClassVar[str]
    media_type: ClassVar[str]

    @abstractmethod
    def render(self, report: Report) -> str:
        """The complete document for ``report`` (already redacted by the caller)."""


REPORTERS: Registry[ReportWriter] = Registry(
    "report format",
    modules=(
        "bastion.reporting.json_report",
        "bastion.reporting.html",
        "bastion.reporting.junit",
        "bastion.reporting.sarif",
        "bastion.reporting.markdown",
    ),
)


# -- helpers shared by the writers ----------------------------------------------------------


def check_class(check_id: str) -> type[Check] | None:
    """The registered check class for ``check_id``, or None when no check declares that id.

    Reports may hold findings from checks this process does not know (a plugin, an attack,
    a report read back from JSON); those simply have no class.
    """
    from bastion.checks import CHECKS

    try:
        return CHECKS.get(check_id)
    except ConfigError:
        return None


def category_of(check_id: str) -> str:
    """The report section of a check: its category (``data``, ``validation``, ``fairness``,
    ``robustness``, ``extraction``, ``poisoning``, ``privacy``) or ``other``.

    Example::

        category_of("DQ002")  # 'data'
    """
    prefix = check_id.rstrip("0123456789").upper()
    if prefix in _PREFIX_CATEGORY:
        return _PREFIX_CATEGORY[prefix]
    cls = check_class(check_id)
    category = getattr(cls, "category", None) if cls is not None else None
    return category if category in CATEGORIES else "other"


def waiver_text(finding: Finding) -> str:
    """``waived by OWNER until DATE: REASON`` for a waived finding, else an empty string."""
    w = finding.waiver
    if w is None:
        return ""
    scope = f" (subject {w.subject})" if w.subject else ""
    return f"waived by {w.owner} until {w.expires.isoformat()}{scope}: {w.reason}"


def is_failure(finding: Finding) -> bool:
    """A finding that reports a problem nobody waived: ``error``, or ``fail`` without waiver."""
    return finding.status is Status.ERROR or (finding.status is Status.FAIL and not finding.waived)


def redact(report: Report) -> Report:
    """``report`` without raw data rows (``evidence["samples"]``) unless the policy allows them.

    Example::

        safe = redact(report)
        assert all("samples" not in f.evidence for f in safe.findings)  # when not allowed
    """
    if report.raw_rows_allowed or not any("samples" in f.evidence for f in report.findings):
        return report
    findings = tuple(
        f.with_updates(
            evidence={k: v for k, v in f.evidence.items() if k != "samples"}
            | {"samples_redacted": True}
        )
        if "samples" in f.evidence
        else f
        for f in report.findings
    )
    return dataclasses.replace(report, findings=findings)


# -- public API ------------------------------------------------------------------------------


def _writer(fmt: str) -> ReportWriter:
    if fmt not in REPORTERS:
        known = ", ".join(REPORTERS.ids())
        raise ConfigError(f"unknown report format {fmt!r} in formats; known formats: {known}")
    return REPORTERS.get(fmt)()


def _checked_formats(formats: Iterable[str]) -> list[str]:
    if isinstance(formats, str):  # a bare "json" would otherwise iterate as j, s, o, n
        formats = (formats,)
    chosen = list(dict.fromkeys(formats))  # drop repeats, keep order
    if not chosen:
        raise ConfigError(f"formats is empty; choose one or more of: {', '.join(FORMATS)}")
    for fmt in chosen:
        _writer(fmt)
    return chosen


def render(report: Report, fmt: str) -> str:
    """Render ``report`` (redacted) as one format, in memory.

    Parameters
    ----------
    report:
        The gate run's report.
    fmt:
        A format id: ``json``, ``html``, ``junit``, ``sarif`` or ``markdown``.

    Returns
    -------
    str
        The whole document.

    Raises
    ------
    ConfigError
        ``fmt`` names no registered format.

    Example::

        text = render(report, "markdown")
    """
    return _writer(fmt).render(redact(report))


def write_reports(
    report: Report, out_dir: str | os.PathLike[str], formats: Iterable[str] = FORMATS
) -> dict[str, Path]:
    """Render every requested format, then write them all into ``out_dir``.

    Everything is rendered in memory first; files are then staged as temporary files in
    ``out_dir`` and moved into place with ``os.replace``. A rendering or staging failure
    therefore leaves no new or half-written report file behind, and a reader never sees a
    truncated file.

    Parameters
    ----------
    report:
        The gate run's report.
    out_dir:
        Folder to write into; created (with parents) when missing.
    formats:
        Format ids, default every built-in one (:data:`FORMATS`). Repeats are ignored.

    Returns
    -------
    dict[str, Path]
        Format id -> path of the file written.

    Raises
    ------
    ConfigError
        A format id is unknown, ``formats`` is empty, or ``out_dir`` exists and is not a
        folder.
    OSError
        The folder or a file cannot be written (nothing is left half-written).

    Example::

        paths = write_reports(report, "out", formats=("json", "markdown"))
        paths["json"]  # PosixPath('out/report.json')
    """
    chosen = _checked_formats(formats)
    safe = redact(report)
    rendered = {fmt: (REPORTERS.get(fmt).filename, _writer(fmt).render(safe)) for fmt in chosen}

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out_dir {str(out)!r} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)

    staged: list[tuple[Path, Path]] = []
    try:
        for filename, text in rendered.values():
            staged.append((_stage(out, filename, text.encode("utf-8")), out / filename))
        for tmp, final in staged:
            os.replace(tmp, final)
    except BaseException:
        for tmp, _ in staged:  # already-replaced temporaries are gone: suppress FileNotFound
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise
    return {fmt: out / filename for fmt, (filename, _) in rendered.items()}


def _stage(folder: Path, filename: str, data: bytes) -> Path:
    """Write ``data`` to a new hidden temporary file beside its destination and fsync it."""
    tmp = folder / f".{filename}.{secrets.token_hex(6)}.tmp"
    # O_EXCL: never follow or reuse a file someone planted; 0o666 lets the umask decide, as
    # for any ordinary file the user creates.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return tmp
