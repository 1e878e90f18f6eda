"""What every white-box evasion result must satisfy, whatever the attack or the device."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from bastion.attacks.results import EvasionResult


def white_box(attack: str, iterations: int, **options: Any) -> Any:
    """PGD or APGD with ``iterations`` steps (PGD's ``steps``, APGD's ``n_iter``)."""
    from bastion.attacks.base import ATTACKS

    cls = ATTACKS.get(attack)
    knob = {"pgd": "steps", "apgd": "n_iter"}[attack]
    return cls(cls.Config(**{knob: iterations, **options}))  # type: ignore[call-arg]


@contextmanager
def rows_seen(module: Any) -> Iterator[list[int]]:
    """Count the rows ``module`` really receives (a forward hook), to hold a result's
    bookkept ``queries`` against: ``[total]`` once the block ends."""
    seen = [0]

    def hook(_module: Any, inputs: tuple[Any, ...]) -> None:
        seen[0] += int(inputs[0].shape[0])

    handle = module.register_forward_pre_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def norms(result: EvasionResult, X: np.ndarray, scale: np.ndarray | float = 1.0) -> np.ndarray:
    delta = (result.x_adv - X).reshape(len(X), -1) / scale
    if result.norm == "inf":
        return np.asarray(np.abs(delta).max(axis=1))
    return np.asarray(np.linalg.norm(delta, axis=1))


def check_result(result: EvasionResult, model: Any, X: np.ndarray, cons: Any) -> None:
    """What every white-box result must satisfy, whatever the attack."""
    flat_adv, flat_x = result.x_adv.reshape(len(X), -1), X.reshape(len(X), -1)
    # a fresh array: on the CPU the device's float64 rows share the caller's memory
    assert not np.shares_memory(result.x_adv, X)
    # adversarial points are feasible; an unbroken point is returned as it came (a test row
    # may lie outside bounds inferred from the training data)
    assert cons.violations(flat_adv[result.success], flat_x[result.success]) == 0
    norms_ = norms(result, X, cons.scale)
    assert (norms_[result.success] <= result.eps + 1e-6).all()
    np.testing.assert_allclose(norms_[result.success], result.perturbation[result.success])
    assert np.isnan(result.perturbation[~result.success]).all()
    # unbroken points come back unchanged, and every success is the model's own verdict
    np.testing.assert_array_equal(result.x_adv[~result.success], X[~result.success])
    np.testing.assert_array_equal(model.predict(result.x_adv), result.adv_pred)
    assert (result.adv_pred[result.success] != result.y_true[result.success]).all()
    assert not (result.success & ~result.clean_correct).any()
