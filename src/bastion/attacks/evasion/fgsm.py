"""FGSM: one step of size eps along the sign (L-inf) or direction (L2) of the loss gradient.

What it does
    Each input moves once, by eps, along the sign (L-inf) or the normalised direction (L2)
    of its cross-entropy loss's input gradient, then is projected onto the feasible box.
Why it matters
    The cheapest white-box attack (Goodfellow et al. 2015): a baseline and a smoke test. It is
    weak: a model that resists FGSM may fall to PGD or APGD (gradient masking shows up as
    FGSM doing better than PGD), so a gate should not rely on it alone.
References
    Goodfellow, Shlens, Szegedy (2015), "Explaining and Harnessing Adversarial Examples",
    ICLR. MITRE ATLAS AML.T0015, AML.T0043.000; OWASP ML01.
Metrics
    As :mod:`bastion.attacks.evasion.pgd` (one gradient step, then one check of the result).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np

from bastion.attacks.base import ATTACKS, AttackConfig, EvasionAttack
from bastion.attacks.budget import Budget
from bastion.attacks.constraints import FeatureConstraints
from bastion.attacks.evasion.pgd import WHITE_BOX_REQUIRES, WHITE_BOX_TAGS, WhiteBoxConfig
from bastion.attacks.results import EvasionResult
from bastion.models.base import Capability, ModelAdapter

__all__ = ["FGSM", "FGSMConfig"]


class FGSMConfig(WhiteBoxConfig):
    """FGSM has no options beyond the shared execution options."""


@ATTACKS.register
class FGSM(EvasionAttack):
    """Fast gradient sign method (Goodfellow et al. 2015), L-inf or L2.

    Example::

        >>> result = FGSM().run(model, X, y, eps=0.1)  # doctest: +SKIP
        >>> result.metrics()["attack_success_rate"]  # doctest: +SKIP
    """

    id: ClassVar[str] = "fgsm"
    title: ClassVar[str] = "Fast gradient sign method (FGSM)"
    requires: ClassVar[frozenset[Capability]] = WHITE_BOX_REQUIRES
    tags: ClassVar[tuple[str, ...]] = WHITE_BOX_TAGS
    Config: ClassVar[type[AttackConfig]] = FGSMConfig

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
        """Attack every row of ``X``; parameters as :meth:`bastion.attacks.evasion.pgd.PGD.run`.

        Returns
        -------
        EvasionResult
            Per-point results named ``fgsm``.

        Raises
        ------
        CapabilityError
            The model has no torch module, logits or gradients.
        ConfigError
            ``eps`` / ``norm`` / budget / constraints do not fit the data.
        """
        self.check_model(model)
        from bastion.attacks.evasion import _torch

        schedule = _torch.PGDSchedule(steps=1, step_size=1.0, random_start=False, restarts=1)
        return _torch.run_attack(
            self.id,
            model,
            X,
            y,
            eps=eps,
            norm=norm,
            constraints=constraints,
            budget=budget,
            seed=seed,
            options=self.config,
            schedule=schedule,
        )
