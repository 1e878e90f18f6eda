"""The L2 step's projection onto the ball intersected with the box is the nearest point."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from bastion.attacks.evasion._torch import _l2_box_shrink  # noqa: E402

EPS = 0.7


def _instances(seed: int, rows: int = 400, dim: int = 7) -> tuple[Any, Any, Any, Any]:
    """Boxes around x0 (some coordinates unbounded, some with x0 on a face), steps of every
    size (some inside the ball, some far out, some coordinates not moving)."""
    rng = np.random.default_rng(seed)
    x0 = rng.uniform(-1, 1, (rows, dim))
    lo = x0 - rng.exponential(0.3, (rows, dim))
    hi = x0 + rng.exponential(0.3, (rows, dim))
    lo[rng.random((rows, dim)) < 0.1] = -np.inf
    hi[rng.random((rows, dim)) < 0.1] = np.inf
    on_face = rng.random((rows, dim)) < 0.05
    lo[on_face] = x0[on_face]
    delta = rng.normal(0, 1, (rows, dim)) * rng.choice([0.05, 0.3, 1.0, 5.0], (rows, 1))
    delta[rng.random((rows, dim)) < 0.1] = 0.0
    return tuple(torch.as_tensor(a) for a in (x0, lo, hi, delta))  # type: ignore[return-value]


def _project(x0: Any, lo: Any, hi: Any, delta: Any) -> Any:
    s = _l2_box_shrink(delta, x0, lo, hi, EPS)
    return torch.clamp(x0 + s * delta, lo, hi)


def _by_bisection(x0: Any, lo: Any, hi: Any, delta: Any, eps: float = EPS) -> Any:
    """The largest s in [0, 1] with |clamp(x0 + s delta) - x0| <= eps, by 200 halvings."""
    a = torch.zeros(delta.shape[0], 1, dtype=delta.dtype)
    b = torch.ones(delta.shape[0], 1, dtype=delta.dtype)
    for _ in range(200):
        mid = (a + b) / 2
        length = torch.linalg.vector_norm(torch.clamp(x0 + mid * delta, lo, hi) - x0, dim=1)
        fits = (length <= eps).unsqueeze(1)
        a, b = torch.where(fits, mid, a), torch.where(fits, b, mid)
    return torch.clamp(x0 + a * delta, lo, hi)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_projection_is_feasible_and_matches_bisection(seed: int) -> None:
    x0, lo, hi, delta = _instances(seed)
    p = _project(x0, lo, hi, delta)
    assert torch.all((p >= lo) & (p <= hi))
    assert torch.all(torch.linalg.vector_norm(p - x0, dim=1) <= EPS * (1 + 1e-9))
    assert torch.allclose(p, _by_bisection(x0, lo, hi, delta), atol=1e-9)


@pytest.mark.parametrize("seed", [3, 4])
def test_no_feasible_point_is_nearer(seed: int) -> None:
    """Projection onto a convex set: <z - P(z), y - P(z)> <= 0 for every feasible y."""
    x0, lo, hi, delta = _instances(seed, rows=200)
    z = x0 + delta
    p = _project(x0, lo, hi, delta)
    rng = np.random.default_rng(seed)
    for _ in range(50):
        # random feasible points: a random step, clamped to the box, shrunk into the ball
        step = torch.as_tensor(rng.normal(0, 1, delta.shape)) * float(rng.uniform(0.1, 3))
        y = torch.clamp(x0 + step, lo, hi) - x0
        y = x0 + y * (EPS / torch.linalg.vector_norm(y, dim=1, keepdim=True)).clamp(max=1)
        assert torch.all(((z - p) * (y - p)).sum(dim=1) <= 1e-9)


def test_it_is_nearer_than_scaling_then_clamping() -> None:
    """Where the clamp bites, the reference code's order (scale onto the sphere, then clamp)
    is never nearer, and strictly farther somewhere."""
    x0, lo, hi, delta = _instances(5)
    z = x0 + delta
    p = _project(x0, lo, hi, delta)
    length = torch.linalg.vector_norm(delta, dim=1, keepdim=True)
    scaled = torch.clamp(x0 + delta * (EPS / length.clamp_min(1e-12)).clamp(max=1), lo, hi)
    ours = torch.linalg.vector_norm(z - p, dim=1)
    theirs = torch.linalg.vector_norm(z - scaled, dim=1)
    assert torch.all(ours <= theirs + 1e-12)
    assert bool((ours < theirs - 1e-6).any())


def test_unbounded_box_is_plain_scaling() -> None:
    x0, _, _, delta = _instances(6)
    inf = torch.full_like(x0, np.inf)
    p = _project(x0, -inf, inf, delta)
    length = torch.linalg.vector_norm(delta, dim=1, keepdim=True)
    expected = x0 + delta * (EPS / length.clamp_min(1e-12)).clamp(max=1)
    assert torch.allclose(p, expected, atol=1e-12)


def test_float32_stays_in_the_ball_when_most_coordinates_saturate() -> None:
    """In float32: most of a long step pushes blank or full pixels outwards (they are at
    their bounds from the start and carry most of the step's squared length), and the
    radius is reached among the few interior pixels, where the sum of what still moves is
    small next to the total: it must not be taken as a difference of large sums."""
    rng = np.random.default_rng(7)
    rows, dim, inner, eps = 300, 784, 84, 0.3
    x0 = rng.choice([0.0, 1.0], (rows, dim))
    delta = np.where(x0 > 0.5, 1.0, -1.0) * rng.uniform(5.0, 10.0, (rows, dim))  # outwards
    x0[:, :inner] = rng.uniform(0.3, 0.7, (rows, inner))
    delta[:, :inner] = rng.normal(0.0, 0.05, (rows, inner))
    lo, hi = np.zeros((rows, dim)), np.ones((rows, dim))
    exact64 = _by_bisection(*(torch.as_tensor(a) for a in (x0, lo, hi, delta)), eps=eps)
    x, low, high, d = (torch.as_tensor(a, dtype=torch.float32) for a in (x0, lo, hi, delta))
    p = torch.clamp(x + _l2_box_shrink(d, x, low, high, eps) * d, low, high).double()
    length = torch.linalg.vector_norm(p - torch.as_tensor(x0), dim=1)
    assert torch.all(length <= eps * (1 + 1e-5))
    assert torch.allclose(p, exact64, atol=1e-5)


def test_a_step_of_norm_eps_beside_unmoving_coordinates_keeps_its_length() -> None:
    """In float32, a step of norm exactly eps (FGSM's) with a coordinate that does not move
    (sorted last, at t = 1) left no room by rounding, and the factor was 0: the point never
    moved. Wherever the zero sits, the factor is 1 to rounding."""
    rng = np.random.default_rng(0)
    delta = rng.normal(size=(2_000, 6)).astype(np.float32)
    delta[rng.random(delta.shape) < 0.3] = 0.0
    delta[:, 0] += 1.0  # no row without a moving coordinate
    delta = torch.as_tensor(delta)
    delta = delta / torch.linalg.vector_norm(delta, dim=1, keepdim=True) * EPS
    x0 = torch.zeros_like(delta)
    unbounded = torch.full_like(delta, math.inf)
    s = _l2_box_shrink(delta.clone(), x0, -unbounded, unbounded, EPS)
    assert float(s.min()) > 1 - 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("eps", [1e-3, 1e-7, 1e-9])
def test_a_tiny_radius_uses_all_of_it(dtype: Any, eps: float) -> None:
    """The squared norm of the moving part was floored at 1e-12: a step of 2e-7 (squared
    4e-14) got the factor 0.1 where it is 0.5, and attacks used a fifth of their radius."""
    delta = torch.tensor([[2 * eps, 0.0, 0.0]], dtype=dtype)
    x0 = torch.zeros_like(delta)
    unbounded = torch.full_like(delta, math.inf)
    s = _l2_box_shrink(delta, x0, -unbounded, unbounded, eps)
    assert float(s) == pytest.approx(0.5, rel=1e-5)
