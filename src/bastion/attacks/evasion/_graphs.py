"""CUDA graphs for the white-box loop: one step captured once, replayed for the others.

A small model's step is bound by launching its kernels, not by running them: on an H100 the
digits MLP's plain forward + input-gradient backward of 4,096 rows keeps the GPU busy 95 us
of the 430 us it takes (16 launches, ~27 us of host time each), so every extra elementwise
kernel of an attack costs more host time than the GPU spends on it. A captured step is
replayed with one launch; its time is the GPU's.

A graph needs a working batch of fixed shape, so the loop uses one only when no row leaves
it (early exit off, no rounding to confirm), and only on CUDA. A module that cannot be
captured (a host sync inside its forward pass, say) falls back to eager steps.

This module imports torch at import time (from ``_torch``, which the attacks import lazily).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

import torch

__all__ = [
    "DRAIN_EVERY",
    "MIN_STEPS",
    "WARMUP_STEPS",
    "Replay",
    "available",
    "capture_step",
    "drain",
    "side_stream",
]

# steps run on a side stream before the capture: lazy initialisations (cuBLAS workspaces,
# cuDNN algorithm choices, autograd's stream bookkeeping) must not happen inside it
WARMUP_STEPS = 2
# replays needed for a capture to pay: on an H100 a capture of the digits MLP's step cost
# ~10 ms, the launches of ~17 eager steps of it
MIN_STEPS = 16
# replays queued before the host waits for the device (budgets and Ctrl-C see progress)
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
    try:
        with torch.cuda.stream(stream):
            graph.capture_begin()
            try:
                step()
            finally:
                graph.capture_end()
    except Exception:  # a sync or an op graphs refuse inside the module: stay eager
        torch.cuda.synchronize(device)
        return None
    finally:
        main.wait_stream(stream)
    return graph
