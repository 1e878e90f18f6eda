"""Gateway overhead on loopback: the OIP gateway with every guard on vs a bare FastAPI route.

Both servers run the same breast-cancer pipeline (StandardScaler + LogisticRegression, fitted
with a fixed seed) under uvicorn on 127.0.0.1, each in its own subprocess. The *gateway* is
``create_oip_app`` with a registry token authorizer, a body-size cap, in-process per-address
and per-token rate limiters (limits far above the load, so nothing is refused), the input
schema, a :class:`~bastion.gateway.service.GatewayService` (OOD detector in flag mode, drift
monitor, extraction detector) and Prometheus metrics. The *bare* server is one FastAPI route
that parses the same OIP JSON body and calls ``predict``; a third, ``create_oip_app`` with no
guard (skip with ``--no-oip``), splits the cost between the OIP server and the guards. Requests
ask for the ``label`` output only, so every server runs ``predict`` once. An asyncio + httpx
driver keeps ``--concurrency`` requests in flight against each for ``--seconds`` (after a
warm-up), one row per request, cycling through held-out rows. All servers run at once and are
driven in turn, in ``--rounds`` interleaved slices whose order rotates every round (a slow
spell of the shared machine then hits each server alike; ``--rounds 1`` drives each in one
block). It reports throughput, p50/p99 latency pooled over the slices, the throughput ratio
gateway/bare (goal >= 70%) and the p99 added by the gateway
(goal <= 2 ms; measure it with ``--concurrency 1``, where latency is service time rather than
queueing).
``--soak SECONDS`` then drives the gateway alone that long and samples its RSS (flat memory).
Diagnostics of the gateway process (off unless asked; they cost throughput):
``BASTION_BENCH_MEMDIAG=FILE`` makes it append one JSON line every ``--sample`` seconds to
FILE: RSS, glibc ``mallinfo2`` (heap in arenas vs mmapped blocks, in use vs free), Python's
allocated blocks, threads, the size of the pending-feedback map; with
``BASTION_BENCH_TRACEMALLOC=1`` also the traced total and the top allocation differences by
file:line since the previous line (tracemalloc's own bookkeeping adds to RSS).

The driver shares the machine with the servers, so absolute figures are a floor; the ratio
and the added latency compare like with like; the per-round line shows their spread. Every
answer must be 200, else the run fails.

Run: ``.venv/bin/python benchmarks/bench_gateway.py [--seconds 20] [--rounds 5]
[--concurrency 16] [--soak 600]``.
"""

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

MODEL = "cancer"


def _release() -> dict[str, Any]:
    """The model, its release report and held-out rows (deterministic)."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from bastion.data.profile import Profile

    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    features = [c for c in frame.columns if c != "target"]
    train = frame.sample(frac=0.6, random_state=0)
    test = frame.drop(train.index)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(train[features].to_numpy(), train["target"].to_numpy())
    report = {
        "datasets": [{"name": "train", "features": features, "target": "target"}],
        "profiles": {"train": Profile.from_frame(train, seed=0).summary(5)},
    }
    return {"model": model, "report": report, "test": test[features].to_numpy()}


_SERVICE: Any = None  # the gateway's GatewayService, for the memory diagnostics


def _gateway_app(registry_dir: Path) -> Any:
    from bastion.gateway.guards.auth import TokenAuthorizer
    from bastion.gateway.guards.rate_limit import InMemoryLimiter, RateLimit
    from bastion.gateway.metrics import GatewayMetrics
    from bastion.gateway.oip import create_oip_app
    from bastion.gateway.service import GatewayService, WatchOptions
    from bastion.governance.access import AccessControl
    from bastion.governance.db import engine_for, resolve_location
    from bastion.models.sklearn import SklearnAdapter
    from bastion.monitoring.alerts import Alerter

    release = _release()
    location = resolve_location(registry_dir, f"sqlite:///{registry_dir / 'r.db'}")
    access = AccessControl(engine_for(location))
    metrics = GatewayMetrics()
    service = GatewayService(metrics, Alerter(on_fire=metrics.alert), WatchOptions(ood_mode="flag"))
    service.serve(MODEL, f"{MODEL}@1", release["report"])
    service.start()  # the background evaluation runs as in `bastion serve`
    global _SERVICE
    _SERVICE = service
    plenty = RateLimit(rate_per_s=1e9, burst=1_000_000_000)
    return create_oip_app(
        {MODEL: SklearnAdapter(release["model"])},
        authorizer=TokenAuthorizer(access),
        max_body_bytes=1_000_000,
        address_limiter=InMemoryLimiter(plenty),
        token_limiter=InMemoryLimiter(plenty),
        input_schema=service.input_check(MODEL),
        on_predict=service.on_predict,
        on_feedback=service.on_feedback,
        monitor_snapshot=service.snapshot,
        metrics=metrics,
    )


def _bare_app() -> Any:
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool

    model = _release()["model"]
    app = FastAPI()

    @app.post(f"/v2/models/{MODEL}/infer")
    async def infer(request: Request) -> JSONResponse:
        tensor = (await request.json())["inputs"][0]
        X = np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])
        # in a worker thread, as the gateway runs its model
        labels = await run_in_threadpool(model.predict, X)
        return JSONResponse(
            {
                "model_name": MODEL,
                "outputs": [
                    {"name": "label", "datatype": "INT64", "shape": [len(labels)],
                     "data": labels.tolist()}
                ],
            }
        )  # fmt: skip

    return app


def _oip_app() -> Any:
    from bastion.gateway.oip import create_oip_app
    from bastion.models.sklearn import SklearnAdapter

    return create_oip_app({MODEL: SklearnAdapter(_release()["model"])})


def _mallinfo() -> dict[str, int]:
    """glibc's ``mallinfo2`` (bytes): ``arena`` heap obtained with brk/arenas, ``hblkhd`` in
    mmapped blocks, ``uordblks`` in use and ``fordblks`` free inside the heap; {} elsewhere."""
    import ctypes
    import ctypes.util

    fields = ["arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
              "uordblks", "fordblks", "keepcost"]  # fmt: skip

    class Info(ctypes.Structure):
        _fields_ = [(f, ctypes.c_size_t) for f in fields]

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.mallinfo2.restype = Info
    except (OSError, AttributeError):
        return {}
    info = libc.mallinfo2()
    return {f: int(getattr(info, f)) for f in ("arena", "hblkhd", "uordblks", "fordblks")}


def _memory_diagnostics(path: str, period: float) -> None:
    """Append a JSON line of memory facts to ``path`` every ``period`` seconds (a thread)."""
    import gc
    import threading
    import tracemalloc

    traced = os.environ.get("BASTION_BENCH_TRACEMALLOC") == "1"
    if traced:
        tracemalloc.start(1)
    began = time.monotonic()

    def pending() -> int | None:
        served = getattr(_SERVICE, "_served", {}).get(MODEL)
        monitor = getattr(served, "monitor", None)
        return None if monitor is None else len(monitor._pending)

    def pending_sizeof() -> float | None:  # the map's own tables, not its keys and values
        served = getattr(_SERVICE, "_served", {}).get(MODEL)
        monitor = getattr(served, "monitor", None)
        if monitor is None:
            return None
        held = monitor._pending  # an OrderedDict in older versions, else PendingPredictions' dicts
        tables = [held] if isinstance(held, dict) else [held._new, held._old]
        return round(sum(sys.getsizeof(t) for t in tables) / 2**20, 2)

    def loop() -> None:
        import bastion

        with open(path, "a") as out:  # which checkout the gateway imports
            out.write(json.dumps({"bastion": bastion.__file__}) + "\n")
        previous = tracemalloc.take_snapshot() if traced else None
        while True:
            time.sleep(period)
            line: dict[str, Any] = {
                "t": round(time.monotonic() - began, 1),
                "rss_mib": round(_rss_mib(os.getpid()), 1),
                "mallinfo2_mib": {k: round(v / 2**20, 2) for k, v in _mallinfo().items()},
                "py_blocks": sys.getallocatedblocks(),
                "threads": threading.active_count(),
                "gc_objects": len(gc.get_objects()),
                "pending": pending(),
                "pending_sizeof_mib": pending_sizeof(),
            }
            if traced and previous is not None:
                snapshot = tracemalloc.take_snapshot()
                line["traced_mib"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 2)
                line["top_diff"] = [
                    f"{d.traceback[0].filename}:{d.traceback[0].lineno} "
                    f"{d.size_diff / 2**20:+.2f} MiB ({d.size / 2**20:.2f}, {d.count_diff:+d})"
                    for d in snapshot.compare_to(previous, "lineno")[:8]
                ]
                previous = snapshot
            with open(path, "a") as out:
                out.write(json.dumps(line) + "\n")

    threading.Thread(target=loop, name="bench-memdiag", daemon=True).start()


def _serve(kind: str, port: int, registry_dir: str, sample: float = 30.0) -> None:
    import uvicorn

    if kind == "gateway":
        app = _gateway_app(Path(registry_dir))
        if diag := os.environ.get("BASTION_BENCH_MEMDIAG"):
            _memory_diagnostics(diag, sample)
    else:
        app = _oip_app() if kind == "oip" else _bare_app()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(
    kind: str, registry_dir: Path, sample: float = 30.0
) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    port = _free_port()
    cmd = [sys.executable, __file__, "--serve", kind, "--port", str(port), "--sample", str(sample)]
    proc = subprocess.Popen([*cmd, "--registry", str(registry_dir)])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/docs", timeout=1.0)
            return proc, url
        except httpx.TransportError:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the {kind} server did not start")


async def _drive(
    url: str, bodies: list[bytes], headers: dict[str, str], concurrency: int, seconds: float
) -> tuple[int, np.ndarray, float]:
    """Keep ``concurrency`` requests in flight for ``seconds``: (requests, latencies, wall)."""
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    headers = {**headers, "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30.0) as client:
        stop = time.perf_counter() + seconds

        async def worker(offset: int) -> None:
            i = offset
            while time.perf_counter() < stop:
                body = bodies[i % len(bodies)]
                i += concurrency
                started = time.perf_counter()
                response = await client.post(
                    f"/v2/models/{MODEL}/infer", content=body, headers=headers
                )
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise RuntimeError(f"{response.status_code}: {response.text[:300]}")

        began = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        wall = time.perf_counter() - began
    return len(latencies), np.asarray(latencies), wall


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _measure_all(
    kinds: list[str],
    registry_dir: Path,
    bodies: list[bytes],
    headers: dict[str, dict[str, str]],
    args: Any,
) -> dict[str, dict[str, Any]]:
    """Start every server at once, then drive them in turn, ``args.rounds`` slices of
    ``args.seconds / args.rounds`` each, the order rotating every round: a slow spell of a
    shared machine hits every server alike instead of whichever ran then. Per server: the
    pooled throughput and latency percentiles, and per round its req/s and p99."""
    started = {kind: _start(kind, registry_dir, args.sample) for kind in kinds}
    try:
        for kind, (_, url) in started.items():
            asyncio.run(_drive(url, bodies, headers[kind], args.concurrency, args.warmup))
        pooled: dict[str, list[np.ndarray]] = {kind: [] for kind in kinds}
        walls = dict.fromkeys(kinds, 0.0)
        rounds: dict[str, list[tuple[float, float]]] = {kind: [] for kind in kinds}
        span = args.seconds / args.rounds
        for r in range(args.rounds):
            for kind in kinds[r % len(kinds) :] + kinds[: r % len(kinds)]:
                url = started[kind][1]
                n, lat, wall = asyncio.run(
                    _drive(url, bodies, headers[kind], args.concurrency, span)
                )
                pooled[kind].append(lat)
                walls[kind] += wall
                rounds[kind].append((n / wall, float(np.percentile(lat, 99) * 1e3)))
        results: dict[str, dict[str, Any]] = {}
        for kind in kinds:
            lat = np.concatenate(pooled[kind])
            results[kind] = {
                "requests": float(len(lat)),
                "rps": len(lat) / walls[kind],
                "p50_ms": float(np.percentile(lat, 50) * 1e3),
                "p99_ms": float(np.percentile(lat, 99) * 1e3),
                "rss_mib": _rss_mib(started[kind][0].pid),
                "rounds": rounds[kind],
            }
        if "gateway" in started and args.soak:
            for kind, (proc, _) in started.items():
                if kind != "gateway":  # the gateway soaks alone
                    proc.terminate()
            proc, url = started["gateway"]
            results["gateway"]["soak"] = _soak(proc.pid, url, bodies, headers["gateway"], args)
        return results
    finally:
        for proc, _ in started.values():
            proc.terminate()
        for proc, _ in started.values():
            proc.wait(timeout=30)


def _soak(
    pid: int, url: str, bodies: list[bytes], headers: dict[str, str], args: Any
) -> list[tuple[float, float, float]]:
    """Drive the gateway for ``args.soak`` seconds in ``args.sample``-second slices:
    (elapsed s, RSS MiB, req/s of the slice) after each."""
    samples = [(0.0, _rss_mib(pid), 0.0)]
    began = time.perf_counter()
    while (elapsed := time.perf_counter() - began) < args.soak:
        span = min(args.sample, args.soak - elapsed)
        n, _, wall = asyncio.run(_drive(url, bodies, headers, args.concurrency, span))
        samples.append((time.perf_counter() - began, _rss_mib(pid), n / wall))
        print(f"  soak t={samples[-1][0]:6.0f}s rss={samples[-1][1]:7.1f} MiB "
              f"{samples[-1][2]:7.0f} req/s", flush=True)  # fmt: skip
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured time per server")
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="slices per server, interleaved across the servers (1: one block each)",
    )
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--soak", type=float, default=0.0, help="then soak the gateway (s)")
    parser.add_argument("--sample", type=float, default=30.0, help="soak RSS sample period (s)")
    parser.add_argument(
        "--no-oip", action="store_true", help="skip the unguarded create_oip_app server"
    )
    parser.add_argument("--serve", choices=["gateway", "oip", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--registry", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        _serve(args.serve, args.port, args.registry, args.sample)
        return 0

    from bastion.governance.access import AccessControl
    from bastion.governance.db import dispose, engine_for, resolve_location

    rows = _release()["test"]
    bodies = [
        json.dumps({"inputs": [{"name": "input-0", "shape": [1, rows.shape[1]],
                                "datatype": "FP64", "data": row.tolist()}],
                    "outputs": [{"name": "label"}]}).encode()
        for row in rows
    ]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        registry_dir = Path(tmp)
        location = resolve_location(registry_dir, f"sqlite:///{registry_dir / 'r.db'}")
        access = AccessControl(engine_for(location))
        token = access.add_user("bench", "admin", by=access.local_identity())
        dispose(location)
        auth = {"Authorization": f"Bearer {token}"}
        print(f"loopback, {args.concurrency} concurrent, {args.seconds:g} s per server, "
              f"1 row/request, cpu count {os.cpu_count()}", flush=True)  # fmt: skip
        kinds = ["bare"] + ([] if args.no_oip else ["oip"]) + ["gateway"]
        measured = _measure_all(
            kinds, registry_dir, bodies, {"bare": {}, "oip": {}, "gateway": auth}, args
        )
    labels = {"bare": "bare FastAPI", "oip": "create_oip_app, no guard",
              "gateway": "gateway (all guards)"}  # fmt: skip
    runs = [(labels[kind], measured[kind]) for kind in kinds]
    bare, gateway = measured["bare"], measured["gateway"]
    for name, r in runs:
        print(f"{name:26s} {r['rps']:8.0f} req/s  p50 {r['p50_ms']:6.2f} ms  "
              f"p99 {r['p99_ms']:6.2f} ms  ({r['requests']:.0f} requests, "
              f"RSS {r['rss_mib']:.0f} MiB)")  # fmt: skip
    ratio = gateway["rps"] / bare["rps"]
    added = gateway["p99_ms"] - bare["p99_ms"]
    print(f"throughput ratio {ratio:.1%} (goal >= 70%: {'met' if ratio >= 0.7 else 'MISSED'})")
    print(f"added p99 {added:+.2f} ms (goal <= 2 ms: {'met' if added <= 2.0 else 'MISSED'}); "
          f"added p50 {gateway['p50_ms'] - bare['p50_ms']:+.2f} ms")  # fmt: skip
    if args.rounds > 1:
        # each round's gateway slice against the bare slice of the same round
        pairs = list(zip(gateway["rounds"], bare["rounds"], strict=True))
        ratios = sorted(g[0] / b[0] for g, b in pairs)
        adds = sorted(g[1] - b[1] for g, b in pairs)
        print(f"per round ({len(pairs)} x {args.seconds / args.rounds:g} s): throughput ratio "
              f"{ratios[0]:.1%} .. {ratios[-1]:.1%} (median {float(np.median(ratios)):.1%}); "
              f"added p99 {adds[0]:+.2f} .. {adds[-1]:+.2f} ms "
              f"(median {float(np.median(adds)):+.2f} ms)")  # fmt: skip
    if "soak" in gateway:
        soak: Any = gateway["soak"]
        first, last = soak[1][1], soak[-1][1]
        print(f"soak RSS {first:.1f} -> {last:.1f} MiB ({last - first:+.1f} MiB after the "
              f"first {args.sample:g} s slice, over {soak[-1][0]:.0f} s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
