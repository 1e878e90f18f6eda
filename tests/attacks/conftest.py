"""Fixtures shared by the attack tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture
def slow_attribute_fits(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Make attribute inference's classifier fits take time: ``slow(seconds)`` on every fit,
    ``slow(seconds, only=k)`` on the k-th fit alone (its cross-fit runs two fits a split:
    the attack's and the baseline's), to put a time budget's end where a test wants it."""
    from bastion.attacks.privacy import inversion

    fit_predict = inversion._fit_predict

    def slow(seconds: float, only: int | None = None) -> None:
        calls: list[int] = []

        def slowed(*args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            if only is None or len(calls) == only:
                time.sleep(seconds)
            return fit_predict(*args, **kwargs)

        monkeypatch.setattr(inversion, "_fit_predict", slowed)

    return slow
