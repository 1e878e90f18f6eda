"""The published ways around pickle scanners, each as a real file: none may scan ``safe``.

The corpus (``_payloads.MALICIOUS``) covers the picklescan / modelscan / fickling bypass
advisories: callables the peers never listed, indirect lookups, memo tricks, every protocol,
several streams, payloads before a parse error, compressed joblib files, torch archives and the
zip / tar tricks, NumPy object arrays, polyglots and bombs. Every payload would create a marker
file if loaded; the tests scan each file and check that

- the verdict is never ``safe``;
- a file that imports a known code-execution callable is ``unsafe`` and the report names it;
- the rule the technique should trigger is reported;
- no marker appears: scanning runs nothing (and, as a control, loading three of the payloads
  in a subprocess does create their markers, so the corpus is real).

Techniques the scanner misses today are listed in ``BYPASSES`` / ``WEAK`` / ``CRASHES`` with a
one-line reason and run as strict xfails: once the scanner is fixed they pass, the xfail
turns into a failure, and the entry must be deleted.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bastion.supply import FileScan, ScanLimits, ScanVerdict, scan_path

_spec = importlib.util.spec_from_file_location(
    "_supply_payloads", Path(__file__).with_name("_payloads.py")
)
assert _spec is not None
assert _spec.loader is not None
P = sys.modules.get("_supply_payloads") or importlib.util.module_from_spec(_spec)
if "_supply_payloads" not in sys.modules:
    sys.modules["_supply_payloads"] = P
    _spec.loader.exec_module(P)

# the scan says "safe" and the victim loader runs the payload
BYPASSES: dict[str, str] = {}
# the scan raises instead of returning a result
CRASHES: dict[str, str] = {}
# a known gadget, but the verdict is only suspicious or error
WEAK: dict[str, str] = {}

# scanned with these (a bomb must be caught without decompressing 8 MiB)
SMALL_LIMITS = ScanLimits(max_decompressed=1 << 20, ratio_floor=1 << 16, max_ratio=100.0)
CONTROLS = ("protocol-2", "joblib-zlib", "dotted-global-pandas-subprocess")


def _marks(name: str, *tables: dict[str, str]) -> list[Any]:
    for table in tables:
        if name in table:
            return [pytest.mark.xfail(strict=True, reason=table[name])]
    return []


def _params(payloads: list[Any], *tables: dict[str, str]) -> list[Any]:
    return [pytest.param(p.name, id=p.name, marks=_marks(p.name, *tables)) for p in payloads]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every payload written to ``<root>/<name>/<filename>`` (marker ``<root>/<name>/ran``)
    and scanned once: name -> (file, marker, FileScan or the exception the scan raised)."""
    root = tmp_path_factory.mktemp("malicious")
    out: dict[str, Any] = {"__root__": root}
    for payload in P.MALICIOUS:
        folder = root / payload.name
        folder.mkdir()
        marker = folder / "ran"
        file = folder / payload.filename
        file.write_bytes(payload.build(marker))
        try:
            result: FileScan | Exception = scan_path(
                file, limits=SMALL_LIMITS if payload.dos else None
            )
        except Exception as err:  # a crash is a result here (see CRASHES)
            result = err
        out[payload.name] = (file, marker, result)
    return out


def _payload(name: str) -> Any:
    return next(p for p in P.MALICIOUS if p.name == name)


def _result(corpus: dict[str, Any], name: str) -> FileScan:
    result = corpus[name][2]
    if isinstance(result, Exception):
        raise AssertionError(f"scanning {name} raised {type(result).__name__}: {result}")
    assert isinstance(result, FileScan)
    return result


def test_the_corpus_covers_the_techniques() -> None:
    names = {p.name for p in P.MALICIOUS}
    assert len(names) == len(P.MALICIOUS), "payload names must be unique"
    assert len(P.MALICIOUS) >= 100
    # the tables above only name payloads that exist
    assert set(BYPASSES) | set(CRASHES) | set(WEAK) <= names
    assert {p.loader for p in P.MALICIOUS} >= {"pickle", "joblib", "torch", "numpy", "extract"}


@pytest.mark.parametrize("name", _params(P.MALICIOUS, CRASHES, BYPASSES))
def test_no_payload_scans_safe(corpus: dict[str, Any], name: str) -> None:
    file, marker, _ = corpus[name]
    result = _result(corpus, name)
    assert result.verdict is not ScanVerdict.SAFE, result.to_dict()
    assert result.sha256
    assert result.size == file.stat().st_size
    assert not marker.exists()


_WITH_GADGET = [p for p in P.MALICIOUS if p.gadget]


@pytest.mark.parametrize("name", _params(_WITH_GADGET, CRASHES, BYPASSES, WEAK))
def test_a_known_gadget_makes_the_file_unsafe_and_is_named(
    corpus: dict[str, Any], name: str
) -> None:
    result = _result(corpus, name)
    gadget = _payload(name).gadget
    assert result.verdict is ScanVerdict.UNSAFE, result.to_dict()
    assert gadget in result.globals or any(gadget in f.message for f in result.findings), (
        f"{gadget} is not named: {result.globals}"
    )


_WITH_RULES = [p for p in P.MALICIOUS if p.rules]


@pytest.mark.parametrize("name", _params(_WITH_RULES, CRASHES, BYPASSES))
def test_the_technique_triggers_its_rule(corpus: dict[str, Any], name: str) -> None:
    result = _result(corpus, name)
    found = {f.rule for f in result.findings}
    assert set(_payload(name).rules) <= found, f"expected {_payload(name).rules}, got {found}"


def test_dotted_gadget_names_and_memo_tricks_are_reported_as_imported(
    corpus: dict[str, Any],
) -> None:
    # the walker follows the memo: it reports the name the unpickler will import
    assert "os.system" in _result(corpus, "memo-overwrite").globals
    assert "numpy.system" not in _result(corpus, "memo-overwrite").globals
    assert "posix.system" in _result(corpus, "memo-memoize-get").globals
    assert "lib2to3.pgen2.grammar.Grammar.loads" in _result(corpus, "lib2to3-grammar-loads").globals


def test_scanning_the_whole_corpus_writes_no_marker(corpus: dict[str, Any]) -> None:
    root: Path = corpus["__root__"]
    for payload in P.MALICIOUS:  # a second pass, after the fixture's
        try:
            scan_path(corpus[payload.name][0], limits=SMALL_LIMITS)
        except Exception:
            if payload.name not in CRASHES:
                raise
    assert sorted(p for p in root.rglob("ran")) == []
    # the traversal and symlink payloads aim at the corpus folder: nothing was written there
    assert sorted(p.name for p in root.iterdir()) == sorted(p.name for p in P.MALICIOUS)
    assert all(sorted(os.listdir(root / p.name)) == [p.filename] for p in P.MALICIOUS)


_LOADERS = {
    "pickle": "import pickle, sys; pickle.load(open(sys.argv[1], 'rb'))",
    "joblib": "import joblib, sys; joblib.load(sys.argv[1])",
}


@pytest.mark.parametrize("name", CONTROLS)
def test_control_the_payload_really_runs_when_loaded(name: str, tmp_path: Path) -> None:
    """CONTROL: actually loads ONE payload, in a subprocess, in a temp folder, to prove the
    corpus is not inert; the marker must appear there (and nowhere else)."""
    payload = _payload(name)
    marker = tmp_path / "ran"
    file = tmp_path / payload.filename
    file.write_bytes(payload.build(marker))
    assert not marker.exists()
    code = _LOADERS[payload.loader]
    done = subprocess.run(
        [sys.executable, "-c", code, str(file)],
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
        check=False,
    )
    deadline = time.monotonic() + 10  # Popen payloads return before their child has run
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), done.stderr.decode(errors="replace")[-2000:]


def test_scan_of_a_control_payload_writes_nothing(tmp_path: Path) -> None:
    payload = _payload("protocol-2")
    marker = tmp_path / "ran"
    file = tmp_path / payload.filename
    file.write_bytes(payload.build(marker))
    result = scan_path(file)
    assert result.verdict is ScanVerdict.UNSAFE
    assert sorted(p.name for p in tmp_path.iterdir()) == [payload.filename]
