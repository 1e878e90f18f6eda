"""CUDA graphs for the white-box loop: one step captured once, replayed for the others.

A small model's step is bound by launching its kernels, not by running them: on an H100 the
digits MLP's plain forward + input-gradient backward of 4,096 rows keeps the GPU busy 95 us
of the 430 us it takes (16 launches, ~27 us of host time each), so every extra elementwise
kernel of an attack costs more host time than the GPU spends on it. A captured step is
replayed with one launch; its time is the GPU's.

PGD captures its step, APGD its iteration after the first (checkpoints run between
replays). A graph needs a working batch of fixed shape. Without early exit no row leaves it;
with early exit (no rounding to confirm, no total query budget; for PGD in bf16, no
per-point cap either) broken rows stay in the batch (PGD's stopped: their step is multiplied
by 0, as in the eager loop) and are looked for at each wait for the device (in bf16, PGD's
are confirmed there in full precision, and those refuted take the step withheld); they
leave, under a new capture, only when every row broke or :class:`ReplayClock` estimates that
their share of the remaining replays costs more than a capture. A graph still valid at its
round's end is kept (:class:`Cached`) for later rounds of as many rows (chunks, restarts),
which load their values into its tensors instead of capturing. Only on CUDA. A module that
cannot be captured (a host sync inside its forward pass, say) falls back to eager steps.

This module imports torch at import time (from ``_torch``, which the attacks import lazily).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import torch

__all__ = [
    "DRAIN_EVERY",
    "KEPT_GRAPHS",
    "MIN_STEPS",
    "WARMUP_STEPS",
    "Cached",
    "Replay",
    "ReplayClock",
    "available",
    "capture_step",
    "drain",
    "release_pool",
    "side_stream",
]

# steps run on a side stream before the capture: lazy initialisations (cuBLAS workspaces,
# cuDNN algorithm choices, autograd's stream bookkeeping) must not happen inside it. One
# does it: each further one is an eager step in place of a replay (H200, digits MLP,
# 32,768 rows, 40 steps: 28.3 ms with one against 31.2 ms with two, best of 3; in a later
# call 35.4 against 35.6 ms; the CUDA tests compare the graph's results with the eager
# loop's)
WARMUP_STEPS = 1
# replays needed for a capture to pay: on an H100 a capture of the digits MLP's step cost
# ~10 ms, the launches of ~17 eager steps of it
MIN_STEPS = 16
# graphs an attack keeps for later rounds of as many rows (chunks, restarts): each holds
# its own memory pool
KEPT_GRAPHS = 4
# steps between two waits of the host for the device while it replays a graph (budgets and
# Ctrl-C see progress; with early exit, broken rows are looked for then): the eager loop's
# looks on an accelerator fall on the same steps
DRAIN_EVERY = 8

_streams: dict[tuple[torch.device, str], torch.cuda.Stream] = {}


class Replay(Protocol):
    def replay(self) -> None: ...


def available(device: torch.device) -> bool:
    """Whether steps on ``device`` can be captured (CUDA only)."""
    return device.type == "cuda"


def drain(device: torch.device) -> None:
    """Wait until the device has run what was queued on the current stream."""
    torch.cuda.current_stream(device).synchronize()


def _stream(device: torch.device, role: str) -> torch.cuda.Stream:
    """The device's side stream for ``role`` (warm-up or capture), made once and reused, as
    torch keeps one capture stream: cuBLAS keeps a workspace per stream, and one first met
    inside a capture is allocated from (and pins) that graph's memory pool."""
    stream = _streams.get((device, role))
    if stream is None:
        stream = torch.cuda.Stream(device)  # type: ignore[no-untyped-call]
        _streams[(device, role)] = stream
    return stream


@contextmanager
def side_stream(device: torch.device) -> Iterator[None]:
    """Run the block's work on a side stream, ordered after and before the current
    stream's (warm-up steps go there: a capture must follow work on another stream)."""
    main = torch.cuda.current_stream(device)
    side = _stream(device, "warm-up")
    side.wait_stream(main)
    try:
        with torch.cuda.stream(side):
            yield
    finally:
        main.wait_stream(side)


@dataclass
class Cached:
    """A captured step kept for the next restart or chunk of the same attack with as many
    rows: the graph and what it reads and writes (kept alive with it), into which the next
    round loads its own values instead of capturing again (on an H100 a capture of the
    digits MLP's step cost 8-10 ms, some 20 of its replays)."""

    rows: int
    graph: Replay
    state: Any


class ReplayClock:
    """Host-clock timing of one attack's graphs, for the choice between keeping broken rows
    in a graph's batch and capturing a smaller one: what a capture cost (its warm-up steps
    included, until the device has run them) and what a replay costs at each batch size seen
    (the time between two waits for the device over the replays queued in between: the
    host queues them in microseconds, so the wait is the device's time)."""

    def __init__(self) -> None:
        self.capture_s: float | None = None
        self.replay_s: dict[int, float] = {}  # rows -> seconds per replay
        self.replays = 0  # since the timed stretch began
        self._since: float | None = None

    def start(self) -> None:
        """Mark the start of a timed stretch (a capture, or the replays after a look)."""
        self._since = time.perf_counter()
        self.replays = 0

    def captured(self, device: torch.device) -> None:
        """A capture (with its warm-up) ended: wait for the device and record its cost."""
        drain(device)
        now = time.perf_counter()
        if self._since is not None:
            self.capture_s = max(self.capture_s or 0.0, now - self._since)
        self.start()

    def drained(self, rows: int) -> None:
        """The host just waited for the device after :attr:`replays` replays of ``rows``
        rows."""
        now = time.perf_counter()
        if self._since is not None and self.replays:
            self.replay_s[rows] = (now - self._since) / self.replays
        self._since = now
        self.replays = 0

    def saving(self, rows: int, keep: int) -> float | None:
        """Estimated seconds per replay saved by replaying ``keep`` rows instead of ``rows``
        (None: no replay of ``rows`` rows timed yet): the slope between ``rows`` and the
        nearest smaller batch timed (else the nearest larger one); with no other batch
        timed, a line through the origin, which overestimates where a replay costs its
        launches more than its rows (the first recapture then measures the real slope)."""
        if rows not in self.replay_s:
            return None
        spent = self.replay_s[rows]
        others = [n for n in self.replay_s if n != rows]
        if not others:
            return spent / rows * (rows - keep)
        smaller = [n for n in others if n < rows]
        near = max(smaller) if smaller else min(others)
        slope = max((spent - self.replay_s[near]) / (rows - near), 0.0)
        return slope * (rows - keep)

    def worth_recapturing(self, rows: int, keep: int, steps_left: int) -> bool:
        """Whether ``steps_left`` replays of ``keep`` rows plus a new capture are estimated to
        cost less than replays of all ``rows`` (never with too few steps left for a graph)."""
        if steps_left <= WARMUP_STEPS + MIN_STEPS or self.capture_s is None:
            return False
        saving = self.saving(rows, keep)
        return saving is not None and steps_left * saving > self.capture_s


# captures share one memory pool per device and thread (see _shared_pool); False gives each
# capture a pool of its own, freed with its graph (trace_gpu_pgd.py compares the two)
SHARE_POOL = True
_local = threading.local()


def _shared_pool(device: torch.device) -> Any:
    """The memory pool this thread's captures on ``device`` share (None: :data:`SHARE_POOL`
    off, or the pool could not be set up), kept alive by an anchor: a one-kernel graph
    captured into it and kept for the thread's life.

    A graph takes its step's memory from a pool of the caching allocator's. A capture with a
    pool of its own asked the driver for that memory again in every attack (6 cudaMalloc
    calls per run of the digits MLP at 32,768 rows, on an H200): torch neither reuses a
    dead graph's pool for the next capture nor frees it before memory runs short. A pool
    that outlives the graphs keeps the blocks cached for the next capture. (A
    ``torch.cuda.MemPool`` would do, but torch 2.11 fails an internal assertion at the
    second capture into one.) Graphs of one pool may share their temporaries, which is
    safe when they never run at the same time: an attack replays one graph at a time on
    one stream, and another thread gets a pool of its own. The memory stays cached for
    the thread's life (:func:`release_pool` lets it go)."""
    if not SHARE_POOL:
        return None
    anchors: dict[torch.device, Any] | None = getattr(_local, "anchors", None)
    if anchors is None:
        anchors = _local.anchors = {}
    if device not in anchors:
        anchors[device] = _anchor(device)
    anchor = anchors[device]
    return None if anchor is None else anchor.pool()


def _anchor(device: torch.device) -> torch.cuda.CUDAGraph | None:
    """A graph of one tiny kernel, captured on the capture stream into a new pool."""
    graph = torch.cuda.CUDAGraph()
    main = torch.cuda.current_stream(device)
    stream = _stream(device, "capture")
    stream.wait_stream(main)
    try:
        with torch.cuda.stream(stream):
            graph.capture_begin()
            try:
                torch.zeros(1, device=device)
            finally:
                graph.capture_end()
    except Exception:  # captures do not work here: each graph keeps a pool of its own
        torch.cuda.synchronize(device)
        return None
    finally:
        main.wait_stream(stream)
    return graph


def release_pool() -> None:
    """Let this thread's shared capture pool go: once no graph of it is alive, torch frees
    its memory at the next ``torch.cuda.empty_cache()``."""
    anchors = getattr(_local, "anchors", None)
    if anchors:
        anchors.clear()


def capture_step(step: Callable[[], None], device: torch.device) -> Replay | None:
    """Capture ``step`` (which must update its tensors in place) as a CUDA graph.

    The caller has run :data:`WARMUP_STEPS` real steps in :func:`side_stream` first. The
    capture runs nothing: the step's kernels are recorded, to be replayed by the caller.
    Returns None (the tensors untouched) when the step cannot be captured.

    The capture is driven directly rather than through ``torch.cuda.graph``, whose entry
    synchronises the device and empties the allocator's cache first: on an H100 that was
    ~1.7 ms of the ~10 ms a capture of the digits MLP's step cost (instantiating the graph
    is most of the rest).
    """
    graph = torch.cuda.CUDAGraph()
    main = torch.cuda.current_stream(device)
    stream = _stream(device, "capture")
    stream.wait_stream(main)
    pool = _shared_pool(device)
    try:
        with torch.cuda.stream(stream):
            if pool is None:
                graph.capture_begin()
            else:
                graph.capture_begin(pool=pool)
            try:
                step()
            finally:
                graph.capture_end()
    except Exception:  # a sync or an op graphs refuse inside the module: stay eager
        torch.cuda.synchronize(device)
        # the failed capture_end skipped torch's epilogue, leaving the device's random
        # generators in capture mode: every later random draw on it raised "Offset
        # increment outside graph capture encountered unexpectedly" (the user's own
        # training after the attack, say; seen on an H200, torch 2.11). A capture that
        # succeeds runs the epilogue again
        _anchor(device)
        return None
    finally:
        main.wait_stream(stream)
    return graph
