"""Encryption at rest: throughput and peak memory of ``bastion.governance.crypto`` on a large file.

A random file of ``--mb`` MiB (1 GiB by default) is written to a work folder, and each
operation runs in a fresh Python process so that its peak resident set size (``ru_maxrss``)
is its own (``VmHWM`` on Linux). Rows:

- ``copy (floor)``: ``shutil.copyfile`` plus ``fsync``: what the disk allows for a
  read-and-write of the same size;
- ``encrypt_file`` / ``decrypt_file``: the file API as the CLI calls it (atomic temporary
  file, ``fsync``, rename; decryption verifies every chunk);
- ``encrypt_stream`` / ``decrypt_stream``: the same work into a null sink: reading plus
  AES-256-GCM, without the write-back;
- ``one-shot AESGCM``: the naive alternative, ``AESGCM.encrypt`` over the whole file read
  into memory (skipped above 2 GiB - 1, the limit of one call, or with ``--no-naive``): it
  shows the memory that streaming saves.

Throughput is MiB of plaintext per wall-clock second (best of ``--repeat``); memory is the
process's peak RSS (``VmHWM``; ``ru_maxrss`` would include the parent's RSS at
fork) and its growth over the RSS just before the operation (interpreter and
imports excluded). The file is freshly written, so reads come from the page cache: the
numbers measure the CPU and write path, not a cold disk. The decrypted file's sha256 is
checked against the original.

Usage::

    .venv/bin/python benchmarks/bench_crypto.py [--mb 1024] [--chunk-size 1048576]
        [--repeat 1] [--workdir DIR] [--no-naive]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MIB = 1 << 20


class _Sink:
    """A binary file object that discards what it is given."""

    def write(self, data: memoryview | bytes) -> int:
        return len(data)


def _status_mib(field: str) -> float | None:
    """A memory line of /proc/self/status in MiB (Linux only; None elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _rss_mib() -> float:
    return _status_mib("VmRSS") or 0.0


def _peak_rss_mib() -> float:
    # VmHWM belongs to this process image; ru_maxrss also counts the parent's RSS at fork
    peak = _status_mib("VmHWM")
    if peak is not None:
        return peak
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / MIB if sys.platform == "darwin" else maxrss / 1024  # bytes, else KiB


def _child(op: str, src: str, dst: str, key: str, chunk_size: int) -> None:
    """Run one operation in this (fresh) process and print its timing and memory as JSON."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from bastion.governance.crypto import (
        decrypt_file,
        decrypt_stream,
        encrypt_file,
        encrypt_stream,
        load_kek,
    )

    kek = load_kek(key_file=key)
    before = _rss_mib()
    start = time.perf_counter()
    if op == "copy":
        shutil.copyfile(src, dst)
        with open(dst, "rb+") as f:
            os.fsync(f.fileno())
    elif op == "encrypt_file":
        encrypt_file(src, dst, kek, chunk_size=chunk_size, overwrite=True)
    elif op == "decrypt_file":
        decrypt_file(src, dst, kek, overwrite=True)
    elif op == "encrypt_stream":
        with open(src, "rb") as f:
            encrypt_stream(f, _Sink(), kek, chunk_size=chunk_size)
    elif op == "decrypt_stream":
        with open(src, "rb") as f:
            decrypt_stream(f, _Sink(), kek)
    elif op == "naive":
        data = Path(src).read_bytes()
        sealed = AESGCM(os.urandom(32)).encrypt(os.urandom(12), data, None)
        Path(dst).write_bytes(sealed)
    else:
        raise SystemExit(f"unknown operation {op}")
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak": _peak_rss_mib(), "before": before}))


def _run(op: str, src: Path, dst: Path, key: Path, chunk_size: int) -> dict[str, float]:
    argv = [sys.executable, __file__, "--child", op, str(src), str(dst), str(key)]
    argv += ["--chunk-size", str(chunk_size)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{op} failed:\n{done.stderr}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(8 * MIB):
            h.update(block)
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=1024, help="Plaintext size in MiB.")
    parser.add_argument("--chunk-size", type=int, default=MIB)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--no-naive", action="store_true")
    parser.add_argument("--child", nargs=4, metavar=("OP", "SRC", "DST", "KEY"))
    args = parser.parse_args()
    if args.child:
        _child(*args.child, chunk_size=args.chunk_size)
        return

    from bastion.governance.crypto import write_kek

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        plain, enc, out, copy = work / "plain", work / "plain.enc", work / "out", work / "copy"
        key = work / "kek"
        write_kek(key)
        rng = random.Random(0)
        with plain.open("wb") as f:
            for _ in range(args.mb):
                f.write(rng.randbytes(MIB))
        size_mib = args.mb
        rows = [
            ("copy (floor)", "copy", plain, copy),
            ("encrypt_file", "encrypt_file", plain, enc),
            ("decrypt_file", "decrypt_file", enc, out),
            ("encrypt_stream (no write)", "encrypt_stream", plain, out),
            ("decrypt_stream (no write)", "decrypt_stream", enc, out),
        ]
        if not args.no_naive and size_mib * MIB < (1 << 31) - 16:
            rows.append(("one-shot AESGCM (naive)", "naive", plain, copy))
        print(
            f"bastion crypto benchmark: {size_mib} MiB, chunk {args.chunk_size} bytes, "
            f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs"
        )
        print(f"{'operation':28s} {'seconds':>8s} {'MiB/s':>8s} {'peak RSS':>10s} {'growth':>8s}")
        verified = False
        for label, op, src, dst in rows:
            best: dict[str, float] | None = None
            for _ in range(args.repeat):
                result = _run(op, src, dst, key, args.chunk_size)
                if best is None or result["seconds"] < best["seconds"]:
                    best = result
            assert best is not None
            growth = best["peak"] - best["before"]
            print(
                f"{label:28s} {best['seconds']:8.2f} {size_mib / best['seconds']:8.0f} "
                f"{best['peak']:8.0f} MiB {growth:6.0f} MiB"
            )
            if op == "decrypt_file":
                verified = _sha256(out) == _sha256(plain)
            if dst.exists() and op in ("copy", "naive"):
                dst.unlink()
        print(f"decrypted file matches the original (sha256): {verified}")


if __name__ == "__main__":
    main()
