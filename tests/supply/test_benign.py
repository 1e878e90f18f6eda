"""Benign model files must scan ``safe``: scikit-learn, NumPy, pandas and torch objects written
by pickle (protocols 0-5), joblib (every compression) and torch.save (zip and legacy).

A false positive trains users to pass ``--allow`` blindly, so each one is a bug. The corpus is
``_payloads.BENIGN`` (shared with ``benchmarks/bench_scan.py``). False positives the scanner
has today are strict xfails in ``FALSE_POSITIVES`` (keyed by the object's name): once fixed
they pass, the xfail fails, and the entry must go.
"""

from __future__ import annotations

import importlib.util
import pickle
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bastion.supply import ScanVerdict, scan_bytes, scan_path

_spec = importlib.util.spec_from_file_location(
    "_supply_payloads", Path(__file__).with_name("_payloads.py")
)
assert _spec is not None
assert _spec.loader is not None
P = sys.modules.get("_supply_payloads") or importlib.util.module_from_spec(_spec)
if "_supply_payloads" not in sys.modules:
    sys.modules["_supply_payloads"] = P
    _spec.loader.exec_module(P)

# object name (or "name/serialization") -> why the scan is not "safe" today
FALSE_POSITIVES: dict[str, str] = {}


def _marks(name: str) -> list[Any]:
    for key in (name, name.split("/")[0]):
        if key in FALSE_POSITIVES:
            return [pytest.mark.xfail(strict=True, reason=FALSE_POSITIVES[key])]
    return []


def test_the_corpus_covers_every_library_and_writer() -> None:
    names = [b.name for b in P.BENIGN]
    assert len(set(names)) == len(names)
    tags = {t for b in P.BENIGN for t in b.tags}
    assert tags >= {"sklearn", "numpy", "pandas", "torch", "pickle", "joblib"}
    for how in (
        *(f"pickle-p{p}" for p in range(6)),
        "joblib",
        "joblib-zlib",
        "joblib-gzip",
        "joblib-bz2",
        "joblib-lzma",
        "joblib-xz",
    ):
        assert any(n.endswith("/" + how) for n in names), how
    assert {
        "torch-state-dict/zip",
        "torch-state-dict/legacy",
        "torch-module/zip",
        "torch-module/legacy",
    } <= set(names)


@pytest.mark.parametrize(
    "name", [pytest.param(b.name, id=b.name, marks=_marks(b.name)) for b in P.BENIGN]
)
def test_benign_file_scans_safe(name: str) -> None:
    benign = next(b for b in P.BENIGN if b.name == name)
    data = benign.build()
    result = scan_bytes(data, benign.filename)
    assert result.verdict is ScanVerdict.SAFE, [f.to_dict() for f in result.findings]
    assert result.format != "data"  # recognised, not waved through as unknown bytes
    assert result.globals  # every one of these imports something: the walker saw it


def test_joblib_and_torch_formats_are_recognised() -> None:
    by_name = {b.name: b for b in P.BENIGN}
    formats = {
        name: scan_bytes(by_name[name].build(), "m").format
        for name in (
            "sklearn-logreg/joblib",
            "sklearn-logreg/joblib-zlib",
            "sklearn-logreg/joblib-xz",
            "torch-module/zip",
            "torch-module/legacy",
            "numpy-float-array/pickle-p5",
        )
    }
    assert formats["sklearn-logreg/joblib"] == "joblib"
    assert formats["sklearn-logreg/joblib-zlib"].endswith("zlib")
    assert formats["sklearn-logreg/joblib-xz"].endswith("xz")
    assert formats["torch-module/zip"] == "torch-zip"
    assert formats["torch-module/legacy"] == "torch-legacy"
    assert formats["numpy-float-array/pickle-p5"] == "pickle"


@pytest.mark.slow
@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_a_large_array_scans_safe_in_every_binary_protocol(protocol: int, tmp_path: Path) -> None:
    # 16 MB of float64: the walker skips the buffer by its length, it never copies it
    array = np.random.default_rng(protocol).random(2_000_000)
    file = tmp_path / "big.pkl"
    with open(file, "wb") as fh:
        pickle.dump({"weights": array, "bias": array[:10]}, fh, protocol=protocol)
    result = scan_path(file)
    assert result.safe, [f.to_dict() for f in result.findings]
    assert result.size == file.stat().st_size
