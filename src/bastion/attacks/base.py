"""The attack plugin interface and its registry.

An attack is one module with one class decorated ``@ATTACKS.register``. It declares a stable
``id`` (``pgd``, ``square``, ``extraction`` ...), its ``family``, the model capabilities it
``requires`` (checked before any work starts: a mismatch is a :class:`CapabilityError`), its
threat tags, and a pydantic ``Config`` whose defaults follow the papers, not the peers'
weaker defaults.

Evasion attacks share :class:`EvasionAttack`'s signature so the ``auto`` ensemble, the gate
check and the CLI can run any of them; the other families define their own ``run``.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from bastion.attacks.budget import Budget, wall_deadline
from bastion.attacks.constraints import FeatureConstraints
from bastion.attacks.results import EvasionResult
from bastion.checks import config_as
from bastion.exceptions import CapabilityError
from bastion.models.base import Capability, ModelAdapter
from bastion.registry import Registry

__all__ = ["ATTACKS", "Attack", "AttackConfig", "EvasionAttack", "Family"]

Family = Literal["evasion", "extraction", "poisoning", "privacy"]
C = TypeVar("C", bound="AttackConfig")  # an attack's own Config class


class AttackConfig(BaseModel):
    """Options every attack accepts; subclasses add theirs (paper defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Attack(ABC):
    """Base of every attack: identity, requirements and configuration.

    A subclass's ``run`` is wrapped so that a ``budget=`` with ``max_seconds`` also bounds
    the model's own retries (:func:`~bastion.attacks.budget.wall_deadline`): a remote
    endpoint that fails starts no retry past the attack's time budget, whether the attack
    runs from the gate (whose runner opens the same deadline per check) or from Python.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        run = cls.__dict__.get("run")
        if run is not None and not getattr(run, "__isabstractmethod__", False):
            setattr(cls, "run", _bounded_by_budget(run))  # noqa: B010 (run is not on Attack)

    id: ClassVar[str]
    title: ClassVar[str]
    family: ClassVar[Family]
    requires: ClassVar[frozenset[Capability]] = frozenset({Capability.PREDICT})
    tags: ClassVar[tuple[str, ...]] = ()
    Config: ClassVar[type[AttackConfig]] = AttackConfig

    def __init__(self, config: AttackConfig | None = None) -> None:
        self.config = config_as(config, self.Config) if config else self.Config()

    def options(self, cls: type[C]) -> C:
        """The configuration as the attack's own ``Config`` class (typed for its ``run``)."""
        return config_as(self.config, cls)

    def check_model(self, model: ModelAdapter) -> None:
        """Raise :class:`~bastion.exceptions.CapabilityError` before any work starts."""
        model.require(*sorted(self.requires), by=f"attack {self.id!r}")


def _bounded_by_budget(run: Callable[..., Any]) -> Callable[..., Any]:
    """``run`` inside ``wall_deadline(budget.max_seconds)`` when it is given a budget."""
    if getattr(run, "_bounded_by_budget", False):
        return run

    @functools.wraps(run)
    def bounded(self: Attack, *args: Any, **kwargs: Any) -> Any:
        seconds = getattr(kwargs.get("budget"), "max_seconds", None)
        if seconds is None:
            return run(self, *args, **kwargs)
        with wall_deadline(seconds):
            return run(self, *args, **kwargs)

    bounded._bounded_by_budget = True  # type: ignore[attr-defined]
    return bounded


class EvasionAttack(Attack):
    """An untargeted evasion attack within an ``eps`` ball, under feasibility constraints.

    ``run`` returns an :class:`EvasionResult` whose ``x_adv`` satisfies ``constraints`` and
    whose ``success`` counts only points that were correct before the attack and are
    misclassified at ``x_adv`` with ``||x_adv - x|| <= eps`` (checked after projection, in
    ``constraints.scale`` units, with a small float tolerance).
    """

    family: ClassVar[Family] = "evasion"

    def check_model(self, model: ModelAdapter) -> None:
        """As :meth:`Attack.check_model`; a white-box attack refused for want of gradients
        names the black-box attacks that need only the model's outputs."""
        try:
            super().check_model(model)
        except CapabilityError as err:
            gradients = {Capability.LOGITS, Capability.LOSS_GRADIENT}
            if not self.requires & gradients or not model.has(Capability.PREDICT):
                raise
            raise CapabilityError(
                f"{err}; the black-box attacks 'square' (scores) and 'hopskipjump' (labels "
                "only) need no gradients"
            ) from err

    @abstractmethod
    def run(
        self,
        model: ModelAdapter,
        X: np.ndarray,
        y: np.ndarray,
        *,
        eps: float,
        norm: Literal["inf", "2"] = "inf",
        constraints: FeatureConstraints | None = None,
        budget: Budget | None = None,
        seed: int = 0,
    ) -> EvasionResult:
        """Attack every row of ``X`` (labels ``y``); see the class docstring."""


ATTACKS: Registry[Attack] = Registry(
    "attack",
    modules=(
        "bastion.attacks.evasion",
        "bastion.attacks.extraction",
        "bastion.attacks.poisoning",
        "bastion.attacks.privacy",
    ),
)
