"""Artifact scanning speed and strength: Bastion's ``scan_path`` against modelscan, picklescan
and fickling, in one process, on the same files.

Speed. Three artifacts are written to a work folder and each scanner reads them from disk:

- ``numpy-200mb.pkl``: ``pickle.dump`` of ``np.random.rand(25_000_000)`` (about 200 MB; one
  large bytes argument that a scanner should skip, not copy);
- ``forest.joblib``: a 100-tree random forest on breast cancer, ``joblib.dump(compress=3)``
  (zlib: a scanner must decompress to see anything);
- ``state_dict.pt``: a torch ``state_dict`` of a 16-million-parameter MLP (``torch.save`` zip).

Each scanner's time is the best of ``--repeat`` runs on this process's CPU clock
(``time.process_time``: user + system time, steady on a shared machine where wall time is
not; every scanner is single-threaded), taken round-robin across the scanners with
``gc.collect()`` before each. Bastion's time includes the sha256 of the file, which
it records for the loader; the sha256 of the 200 MB file alone (``hashlib``, 1 MiB reads: what
``sha256sum`` does) is printed for scale. The ratio is Bastion / the fastest peer on that file.

Start-up: the CPU time (user + system, of the child) of ``python -c "import bastion.supply"``
and of each peer's import in a fresh interpreter, best of ``max(--repeat, 3)``
(``python -c pass`` for the floor): what a CI step that calls ``bastion scan`` pays before
reading a byte.

Strength. Every file of the malicious corpus and of the benign corpus in
``tests/supply/_payloads.py`` (the tests' own builders) is written to disk and scanned by each
tool. Two outcomes are counted per tool:

- *blocks*: a CI gate calling the tool's CLI would fail on the file (picklescan exit != 0:
  dangerous globals or a parse error; modelscan exit != 0: issues, errors, or "no supported
  file"; fickling: a severity above LIKELY_SAFE or a scan error; Bastion: any verdict but
  ``safe``); a crash of the scanner counts as blocking and is also counted on its own;
- *detects*: the tool names the file dangerous (picklescan: dangerous globals; modelscan:
  issues; fickling: LIKELY_UNSAFE or worse; Bastion: ``unsafe``).

Detection rates are over the malicious files that really run for some loader (the
decompression bombs and the zip files no loader opens are left out and counted separately);
false-positive rates are over the benign corpus. Rows where any tool lets a payload through are
listed. Peers are called through their Python APIs, which is what their CLIs call:
``picklescan.scanner.scan_file_path``, ``modelscan.modelscan.ModelScan().scan``,
``fickling.scan_file`` / ``fickling.scan_zip_archive`` (for zip files). Scanning never runs a
payload: the script checks afterwards that no marker file appeared.

Usage::

    .venv/bin/python benchmarks/bench_scan.py [--repeat 3] [--mb 200] [--no-peers]
        [--skip-speed] [--skip-startup] [--skip-strength] [--workdir DIR] [--out FILE]

``--no-peers`` measures Bastion alone (peers that are not installed are skipped either way).
The work folder (a temporary one by default) receives about ``--mb`` + 100 MB.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import importlib.util
import io
import json
import logging
import platform
import resource
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from bastion.supply import ScanVerdict, scan_path

PAYLOADS = Path(__file__).resolve().parents[1] / "tests" / "supply" / "_payloads.py"
UNRUNNABLE = ("none",)  # loaders of files that no real loader opens (see _payloads.Payload)


@dataclass(frozen=True)
class Outcome:
    """What one tool made of one file."""

    blocks: bool
    detects: bool
    crashed: bool = False
    detail: str = ""


@dataclass
class Tool:
    """A scanner: its name, the import a CLI run starts with, and a file -> Outcome call."""

    name: str
    import_stmt: str
    scan: Callable[[Path], Outcome]
    version: str = ""
    state: dict[str, Any] = field(default_factory=dict)


# -- the contenders ------------------------------------------------------------------------------
def _bastion(path: Path) -> Outcome:
    result = scan_path(path)
    verdict = result.verdict
    rules = ",".join(sorted({f.rule for f in result.findings}))
    return Outcome(
        verdict is not ScanVerdict.SAFE,
        verdict is ScanVerdict.UNSAFE,
        detail=f"{verdict.value} {rules}",
    )


def _picklescan(path: Path) -> Outcome:
    from picklescan.scanner import scan_file_path

    result = scan_file_path(str(path))
    return Outcome(
        result.issues_count > 0 or result.scan_err,
        result.issues_count > 0,
        detail=f"issues={result.issues_count} err={result.scan_err}",
    )


def _modelscan(tool: Tool) -> Callable[[Path], Outcome]:
    def scan(path: Path) -> Outcome:
        from modelscan.modelscan import ModelScan

        scanner = tool.state.get("scanner")
        if scanner is None:  # loading its scanners once is what one CLI run does
            scanner = tool.state["scanner"] = ModelScan()
        scanner.scan(str(path))
        issues, errors = len(scanner.issues.all_issues), len(scanner.errors)
        code = 3 if not scanner.scanned else 2 if errors else 1 if issues else 0
        return Outcome(code != 0, issues > 0, detail=f"exit={code}")

    return scan


def _fickling(path: Path) -> Outcome:
    import fickling
    from fickling.analysis import Severity

    if zipfile.is_zipfile(path):
        results = list(fickling.scan_zip_archive(str(path), graceful=True).values())
    else:
        results = [fickling.scan_file(str(path), graceful=True)]
    worst = max((r.severity for r in results), default=Severity.LIKELY_SAFE)
    blocks = not results or any(not bool(r) for r in results)
    return Outcome(blocks, worst >= Severity.LIKELY_UNSAFE, detail=worst.name)


def tools(with_peers: bool) -> list[Tool]:
    from importlib.metadata import PackageNotFoundError, version

    import bastion

    out = [Tool("bastion", "import bastion.supply", _bastion, bastion.__version__)]
    if not with_peers:
        return out
    for name, stmt in (
        ("picklescan", "import picklescan.scanner"),
        ("modelscan", "import modelscan.modelscan"),
        ("fickling", "import fickling"),
    ):
        try:
            ver = version(name)
        except PackageNotFoundError:
            print(f"({name} is not installed: skipped)")
            continue
        tool = Tool(name, stmt, _picklescan, ver)
        if name == "modelscan":
            tool.scan = _modelscan(tool)
        elif name == "fickling":
            tool.scan = _fickling
        out.append(tool)
    return out


def run(tool: Tool, path: Path) -> Outcome:
    """The tool's outcome, with a crash turned into a blocking outcome (a CLI that raises exits
    non-zero)."""
    try:
        with _quiet():
            return tool.scan(path)
    except Exception as err:  # a peer's (or Bastion's) crash is a result here
        return Outcome(True, False, crashed=True, detail=f"{type(err).__name__}: {err}"[:120])


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Peers log every finding and print progress; keep the tables readable."""
    logging.disable(logging.CRITICAL)
    sink = io.StringIO()
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(sink),
            contextlib.redirect_stderr(sink),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


# -- speed -----------------------------------------------------------------------------------------
def make_artifacts(folder: Path, mb: int) -> dict[str, Path]:
    import pickle

    import joblib
    import torch
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier

    paths = {
        "numpy-200mb.pkl": folder / "numpy-200mb.pkl",
        "forest.joblib": folder / "forest.joblib",
        "state_dict.pt": folder / "state_dict.pt",
    }
    n = mb * 1_000_000 // 8
    with open(paths["numpy-200mb.pkl"], "wb") as fh:
        pickle.dump(np.random.default_rng(0).random(n), fh)
    X, y = load_breast_cancer(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=100, random_state=0).fit(X, y)
    joblib.dump(forest, paths["forest.joblib"], compress=3)
    torch.manual_seed(0)
    net = torch.nn.Sequential(*(torch.nn.Linear(2048, 2048) for _ in range(4)))
    torch.save(net.state_dict(), paths["state_dict.pt"])
    return paths


def best_of(
    fn: Callable[[], Any], repeat: int, clock: Callable[[], float] = time.process_time
) -> float:
    """Best of ``repeat`` runs of ``fn`` on ``clock`` (this process's CPU time by default:
    steady on a shared machine, and the scanners are single-threaded)."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = clock()
        fn()
        best = min(best, clock() - start)
    return best


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _bastion_no_digest(path: Path) -> Outcome:
    result = scan_path(path, digest=False)
    return Outcome(result.verdict is not ScanVerdict.SAFE, result.verdict is ScanVerdict.UNSAFE)


def speed(contenders: list[Tool], artifacts: dict[str, Path], repeat: int) -> dict[str, Any]:
    # the same scan without the file's sha256 (what `bastion scan --no-digest` does): the peers
    # record no digest, so this is the like-for-like column
    contenders = [
        *contenders[:1],
        Tool("bastion-nodigest", "import bastion.supply", _bastion_no_digest),
        *contenders[1:],
    ]
    times: dict[str, dict[str, float]] = {name: {} for name in artifacts}
    outcomes: dict[str, dict[str, str]] = {name: {} for name in artifacts}
    for name, path in artifacts.items():
        for tool in contenders:
            outcomes[name][tool.name] = run(tool, path).detail  # warm-up, and what it said
        for _ in range(repeat):  # round-robin: drift on the machine hits everyone alike
            for tool in contenders:
                t = best_of(lambda tool=tool, path=path: run(tool, path), 1)
                times[name][tool.name] = min(times[name].get(tool.name, t), t)
    hashes = {
        name: best_of(lambda p=path: sha256_file(p), repeat) for name, path in artifacts.items()
    }
    hash_s = hashes["numpy-200mb.pkl"]
    print(
        f"\n## Scan time: CPU seconds, best of {repeat} (ratios = bastion, and bastion "
        "without the digest, / fastest peer)\n"
    )
    names = [t.name for t in contenders]
    print(f"| artifact | size MB | {' | '.join(names)} | ratio | ratio no digest | sha256 alone |")
    print("|---|---:|" + "---:|" * len(names) + "---:|---:|---:|")
    for art, row in times.items():
        peers = [v for k, v in row.items() if not k.startswith("bastion")]
        ratio = f"{row['bastion'] / min(peers):.2f}" if peers else "-"
        bare = f"{row['bastion-nodigest'] / min(peers):.2f}" if peers else "-"
        size = artifacts[art].stat().st_size / 1e6
        print(
            f"| {art} | {size:.1f} | "
            + " | ".join(f"{row[n]:.3f}" for n in names)
            + f" | {ratio} | {bare} | {hashes[art]:.3f} |"
        )
    print(f"\nsha256 of numpy-200mb.pkl alone (hashlib, 1 MiB reads): {hash_s:.3f} CPU s")
    print(
        "Bastion's time includes the sha256 of the whole file (what sha256sum does: the last "
        "column); a peer that reports exit=3 or no globals for a compressed file (below) did "
        "not read its content."
    )
    print("\nWhat each scanner said about these (benign) artifacts:")
    for art, said in outcomes.items():
        print(f"- {art}: " + "; ".join(f"{k}: {v}" for k, v in said.items()))
    return {"times_s": times, "sha256_s": hashes, "said": outcomes}


def startup(contenders: list[Tool], repeat: int) -> dict[str, float]:
    stmts = {"python -c pass": "pass", **{t.name: t.import_stmt for t in contenders}}
    out = {}
    for label, stmt in stmts.items():
        out[label] = best_of(
            lambda stmt=stmt: subprocess.run([sys.executable, "-c", stmt], check=True),
            max(repeat, 3),
            clock=_children_cpu,
        )
    print(f"\n## Start-up: CPU seconds of a fresh interpreter, best of {max(repeat, 3)}\n")
    print("| python -c | seconds |\n|---|---:|")
    for label, seconds in out.items():
        print(f"| `{stmts[label]}` | {seconds:.3f} |")
    return out


# -- strength --------------------------------------------------------------------------------------
def load_payloads() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_supply_payloads", PAYLOADS)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {PAYLOADS}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["_supply_payloads"] = module
    spec.loader.exec_module(module)
    return module


def strength(contenders: list[Tool], folder: Path) -> dict[str, Any]:
    payloads = load_payloads()
    malicious: list[tuple[Any, Path, Path]] = []
    for p in payloads.MALICIOUS:
        sub = folder / "malicious" / p.name
        sub.mkdir(parents=True)
        marker = sub / "ran"
        (sub / p.filename).write_bytes(p.build(marker))
        malicious.append((p, sub / p.filename, marker))
    benign: list[tuple[Any, Path]] = []
    for b in payloads.BENIGN:
        sub = folder / "benign" / b.name.replace("/", "__")
        sub.mkdir(parents=True)
        (sub / b.filename).write_bytes(b.build())
        benign.append((b, sub / b.filename))

    mal = {t.name: {p.name: run(t, f) for p, f, _ in malicious} for t in contenders}
    ben = {t.name: {b.name: run(t, f) for b, f in benign} for t in contenders}
    markers = [str(m) for _, _, m in malicious if m.exists()]

    counted = [p for p, _, _ in malicious if not p.dos and p.loader not in UNRUNNABLE]
    left_out = [p.name for p, _, _ in malicious if p not in counted]
    n, nb = len(counted), len(benign)
    print(f"\n## Strength: {n} malicious files that run under some loader, {nb} benign files\n")
    print(
        "| tool | blocks malicious | detects (names danger) | crashes | "
        "blocks benign (FP) | detects benign |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    summary: dict[str, dict[str, float]] = {}
    for t in contenders:
        m = [mal[t.name][p.name] for p in counted]
        b = list(ben[t.name].values())
        crashes = sum(o.crashed for o in m) + sum(o.crashed for o in b)
        row = {
            "blocks_malicious": sum(o.blocks for o in m) / n,
            "detects_malicious": sum(o.detects for o in m) / n,
            "crashes": crashes,
            "fp_blocks_benign": sum(o.blocks for o in b) / nb,
            "fp_detects_benign": sum(o.detects for o in b) / nb,
        }
        summary[t.name] = row
        print(
            f"| {t.name} | {row['blocks_malicious']:.1%} | {row['detects_malicious']:.1%} | "
            f"{crashes} | {row['fp_blocks_benign']:.1%} | {row['fp_detects_benign']:.1%} |"
        )
    print(f"\nLeft out of the rates (bombs, files no loader opens): {', '.join(left_out)}")
    names = [t.name for t in contenders]
    key = "U = detects, b = blocks without naming danger, . = passes it, ! = crash"
    print(f"\n### Malicious files some tool passes ({key})\n")
    print("| payload | " + " | ".join(names) + " |\n|---|" + ":-:|" * len(names))
    for p in counted:
        marks = [_mark(mal[t][p.name]) for t in names]
        if "." in marks or "!" in marks:
            print(f"| {p.name} | " + " | ".join(marks) + " |")
    print(
        "\n### Benign objects some tool blocks (files blocked / files written: pickle "
        "protocols 0-5 and six joblib variants per object)\n"
    )
    print("| object | " + " | ".join(names) + " |\n|---|" + "--:|" * len(names))
    groups: dict[str, list[str]] = {}
    for b, _ in benign:
        groups.setdefault(b.name.split("/")[0], []).append(b.name)
    for group, members in groups.items():
        counts = [sum(ben[t][m].blocks for m in members) for t in names]
        if any(counts):
            print(f"| {group} | " + " | ".join(f"{c}/{len(members)}" for c in counts) + " |")
    print(f"\nMarker files created while scanning: {len(markers)} {markers if markers else ''}")
    return {
        "summary": summary,
        "malicious": {t: {k: o.__dict__ for k, o in v.items()} for t, v in mal.items()},
        "benign_blocked": {t: [k for k, o in v.items() if o.blocks] for t, v in ben.items()},
        "markers": markers,
        "left_out": left_out,
    }


def _mark(outcome: Outcome) -> str:
    if outcome.crashed:
        return "!"
    return "U" if outcome.detects else "b" if outcome.blocks else "."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--mb", type=int, default=200, help="size of the NumPy pickle in MB")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-startup", action="store_true")
    parser.add_argument("--skip-strength", action="store_true")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="write the numbers as JSON")
    args = parser.parse_args(argv)

    contenders = tools(not args.no_peers)
    print(
        f"# bench_scan: Python {platform.python_version()}, {platform.machine()}, "
        + ", ".join(f"{t.name} {t.version}" for t in contenders)
    )
    report: dict[str, Any] = {"tools": {t.name: t.version for t in contenders}}
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        root = Path(tmp)
        if not args.skip_speed:
            artifacts = make_artifacts(root, args.mb)
            report["speed"] = speed(contenders, artifacts, args.repeat)
            for path in artifacts.values():
                path.unlink()
        if not args.skip_startup:
            report["startup_s"] = startup(contenders, args.repeat)
        if not args.skip_strength:
            report["strength"] = strength(contenders, root)
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
