"""write_reports: every format, atomically; unknown formats are configuration errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from bastion.exceptions import ConfigError
from bastion.report import Report
from bastion.reporting import FORMATS, REPORTERS, render, write_reports
from bastion.reporting import writers as writers_module
from bastion.reporting.writers import category_of, redact

from .conftest import RAW_MARKER, make_report

FILES = {
    "json": "report.json",
    "html": "report.html",
    "junit": "junit.xml",
    "sarif": "report.sarif",
    "markdown": "summary.md",
}


def test_formats_registry_matches_the_files() -> None:
    assert FORMATS == ("json", "html", "junit", "sarif", "markdown")
    assert sorted(REPORTERS.ids()) == sorted(FORMATS)
    assert {fmt: REPORTERS.get(fmt).filename for fmt in FORMATS} == FILES


def test_writes_every_format_by_default(tmp_path: Path) -> None:
    report = make_report()
    paths = write_reports(report, tmp_path / "out" / "nested")
    assert {fmt: p.name for fmt, p in paths.items()} == FILES
    assert sorted(os.listdir(tmp_path / "out" / "nested")) == sorted(FILES.values())
    for fmt, path in paths.items():
        assert path.read_text("utf-8") == render(report, fmt)
    assert Report.from_dict(json.loads(paths["json"].read_text("utf-8"))).project == "diagnosis"
    ET.parse(paths["junit"])
    assert json.loads(paths["sarif"].read_text("utf-8"))["version"] == "2.1.0"


def test_selected_formats_only_and_repeats_ignored(tmp_path: Path) -> None:
    paths = write_reports(make_report(), tmp_path, ["markdown", "json", "markdown"])
    assert list(paths) == ["markdown", "json"]
    assert sorted(os.listdir(tmp_path)) == ["report.json", "summary.md"]
    # a bare string is one format, not five letters
    assert list(write_reports(make_report(), tmp_path, "json")) == ["json"]


def test_unknown_format_names_it_and_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"'pdf'.*known formats: html, json, junit, markdown, sarif"
    ):
        write_reports(make_report(), tmp_path, ["json", "pdf"])
    assert os.listdir(tmp_path) == []
    with pytest.raises(ConfigError, match="'xml'"):
        render(make_report(), "xml")
    with pytest.raises(ConfigError, match="formats is empty"):
        write_reports(make_report(), tmp_path, [])


def test_rendering_failure_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("previous run", encoding="utf-8")

    def explode(self: object, report: Report) -> str:
        raise RuntimeError("renderer broke")

    monkeypatch.setattr(REPORTERS.get("sarif"), "render", explode)
    with pytest.raises(RuntimeError, match="renderer broke"):
        write_reports(make_report(), out)
    assert sorted(os.listdir(out)) == ["report.json"]  # no new file, no temp file
    assert (out / "report.json").read_text("utf-8") == "previous run"  # old one untouched


def test_write_failure_removes_staged_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_stage = writers_module._stage
    calls = []

    def flaky_stage(folder: Path, filename: str, data: bytes) -> Path:
        calls.append(filename)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real_stage(folder, filename, data)

    monkeypatch.setattr(writers_module, "_stage", flaky_stage)
    with pytest.raises(OSError, match="No space left"):
        write_reports(make_report(), tmp_path)
    assert os.listdir(tmp_path) == []


def test_files_get_ordinary_permissions(tmp_path: Path) -> None:
    path = write_reports(make_report(), tmp_path, ["markdown"])["markdown"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_out_dir_that_is_a_file_is_a_config_error(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"out_dir .* is not a directory"):
        write_reports(make_report(), target, ["json"])


def test_redact_strips_samples_unless_allowed() -> None:
    report = make_report()
    assert any("samples" in f.evidence for f in report.findings)
    assert not any("samples" in f.evidence for f in redact(report).findings)
    allowed = make_report(raw_rows_allowed=True)
    assert redact(allowed) is allowed


def test_no_writer_leaks_samples() -> None:
    report = make_report()
    for fmt in FORMATS:
        text = render(report, fmt)
        assert RAW_MARKER not in text, fmt
        assert '"samples"' not in text, fmt
        assert "data samples" not in text, fmt
    allowed = make_report(raw_rows_allowed=True)
    assert RAW_MARKER in render(allowed, "json")
    assert RAW_MARKER in render(allowed, "html")


@pytest.mark.parametrize(
    ("check_id", "category"),
    [
        ("DQ002", "data"),
        ("MV003", "validation"),
        ("FA001", "fairness"),
        ("ADV001", "robustness"),
        ("EXT001", "extraction"),
        ("POI003", "poisoning"),
        ("PRV002", "privacy"),
        ("ZZ999", "other"),
    ],
)
def test_category_of(check_id: str, category: str) -> None:
    assert category_of(check_id) == category


def test_importing_writers_does_not_import_matplotlib() -> None:
    code = (
        "import sys, bastion.reporting.writers, bastion.reporting\n"
        "from bastion.reporting import REPORTERS\n"
        "REPORTERS.ids()\n"  # loads every writer module
        "heavy = [m for m in ('matplotlib', 'jinja2', 'torch') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == ""


def test_every_registered_check_has_its_own_report_section() -> None:
    from bastion.checks import CATEGORIES, CHECKS
    from bastion.reporting.writers import CATEGORIES as SECTIONS

    assert (*CATEGORIES, "other") == SECTIONS
    for check in CHECKS:
        assert category_of(check.id) == check.category, check.id
