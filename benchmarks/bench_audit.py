"""Audit chain throughput: acknowledged appends per second and verification of 1M events.

Goals (issue 4): >= 5,000 acknowledged appends/s on SQLite (group commit allowed); verifying
1M events in <= 5 s. Measured on a fresh SQLite registry (WAL, synchronous=NORMAL: committed
transactions survive a process crash) in a temporary folder:

- one thread, one transaction per event (``AuditLog.append``);
- 16 threads through ``AuditWriter`` (group commit: each call returns after the transaction
  holding its event committed);
- batches of 10,000 events per transaction (``AuditLog.append_many``), which also builds the
  chain that ``verify_chain`` then re-hashes from the first event to the last.

Usage::

    .venv/bin/python benchmarks/bench_audit.py [--events 1000000] [--threads 16]
        [--url postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time

from bastion.governance.audit import AuditLog, AuditWriter, verify_chain
from bastion.governance.db import dispose, engine_for, resolve_location


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="chain length to verify")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--single", type=int, default=2_000, help="events for the 1-thread run")
    parser.add_argument("--url", help="a database URL instead of a temporary SQLite file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        location = resolve_location(tmp, args.url)
        log = AuditLog(engine_for(location))

        t0 = time.perf_counter()
        for i in range(args.single):
            log.append("gateway", "predict.flagged", f"client:{i}", {"score": i / 7})
        single = args.single / (time.perf_counter() - t0)

        per_thread = 20_000 // args.threads
        with AuditWriter(log) as writer:

            def work(k: int) -> None:
                for i in range(per_thread):
                    writer.append(f"replica-{k}", "alert", f"client:{k}:{i}", {"i": i})

            threads = [threading.Thread(target=work, args=(k,)) for k in range(args.threads)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            grouped = per_thread * args.threads / (time.perf_counter() - t0)

        remaining = args.events - log.head()[0]
        t0 = time.perf_counter()
        done = 0
        while done < remaining:
            n = min(10_000, remaining - done)
            log.append_many(
                [("gateway", "predict.flagged", f"client:{done + j}", {"j": j}) for j in range(n)]
            )
            done += n
        batched = remaining / (time.perf_counter() - t0) if remaining else float("nan")

        t0 = time.perf_counter()
        result = verify_chain(log.engine)
        verify_s = time.perf_counter() - t0
        dispose(location)
    backend = "sqlite" if location.is_sqlite else location.url.split("://")[0]
    print(f"bench_audit ({backend}):")
    print(f"  1 thread, 1 transaction per event:     {single:10.0f} acknowledged appends/s")
    print(
        f"  {args.threads} threads, group commit (AuditWriter): {grouped:10.0f} acknowledged "
        f"appends/s -> goal >= 5000: {'met' if grouped >= 5000 else 'NOT met'}"
    )
    print(f"  batches of 10,000 per transaction:     {batched:10.0f} appends/s")
    print(
        f"  verify {result.events:,} events: {verify_s:.2f} s (ok={result.ok}) -> goal <= 5 s "
        f"for 1M: {'met' if verify_s <= 5 * result.events / 1_000_000 else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
