"""APGD: auto-PGD with the paper's step-size schedule, momentum and best-point memory.

What it does
    Croce and Hein's Auto-PGD (2020): 100 iterations by default from a random point of the
    ball, initial step 2 eps, momentum 0.75 after the first step, and checkpoints at 22%,
    41%, 55%, ... of the run (p(j+1) = p(j) + max(p(j) - p(j-1) - 0.03, 0.06)) where a
    point's step halves, and its iterate returns to its best point, when fewer than
    rho = 75% of the steps since the last checkpoint raised its loss or when its best loss
    stalled. Every point keeps the best adversarial found (a broken point leaves the
    working batch), never the last iterate.
Losses
    ``ce`` (cross-entropy) and ``dlr`` (difference of logits ratio, invariant to the logits'
    scale, robust to gradient masking by large logits). DLR needs at least 3 classes; on
    binary models it becomes the margin loss (largest other logit minus the true one)
    automatically, and the result is named ``apgd-margin``.
Why it matters
    APGD needs no step-size tuning and is markedly stronger than PGD with a fixed step at the
    same cost; it is the first two members of AutoAttack, the standard robustness benchmark.
References
    Croce and Hein (2020), "Reliable evaluation of adversarial robustness with an ensemble of
    diverse parameter-free attacks", ICML; reference code github.com/fra31/auto-attack.
    MITRE ATLAS AML.T0015, AML.T0043.000; OWASP ML01.
Metrics
    As :mod:`bastion.attacks.evasion.pgd`; ``extra["loss"]`` names the loss used.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from bastion.attacks.base import ATTACKS, AttackConfig, EvasionAttack
from bastion.attacks.budget import Budget
from bastion.attacks.constraints import FeatureConstraints
from bastion.attacks.evasion.pgd import WHITE_BOX_REQUIRES, WHITE_BOX_TAGS, WhiteBoxConfig
from bastion.attacks.results import EvasionResult
from bastion.models.base import Capability, ModelAdapter

__all__ = ["APGD", "APGDConfig"]


class APGDConfig(WhiteBoxConfig):
    """APGD's options (paper defaults).

    Attributes
    ----------
    n_iter:
        Iterations per restart (100 in the paper).
    loss:
        ``"ce"`` or ``"dlr"`` (the margin loss on binary models).
    restarts:
        Random restarts, each on the points still unbroken.
    rho:
        Checkpoint rule: halve the step when at most ``rho`` of the steps since the last
        checkpoint increased the loss.
    momentum:
        Weight of the new step against the previous one (0.75).
    initial_step:
        First step size in eps units (2, i.e. 2 eps).
    """

    n_iter: int = Field(default=100, ge=1)
    loss: Literal["ce", "dlr"] = "ce"
    restarts: int = Field(default=1, ge=1)
    rho: float = Field(default=0.75, gt=0, le=1)
    momentum: float = Field(default=0.75, ge=0, le=1)
    initial_step: float = Field(default=2.0, gt=0)


@ATTACKS.register
class APGD(EvasionAttack):
    """Auto-PGD (Croce and Hein 2020) with the CE or DLR loss, L-inf or L2.

    Example::

        >>> attack = APGD(APGDConfig(loss="dlr"))  # doctest: +SKIP
        >>> result = attack.run(model, X, y, eps=8 / 255, constraints=box)  # doctest: +SKIP
        >>> result.attack  # "apgd-dlr", or "apgd-margin" on a binary model  # doctest: +SKIP
    """

    id: ClassVar[str] = "apgd"
    title: ClassVar[str] = "Auto-PGD (APGD)"
    requires: ClassVar[frozenset[Capability]] = WHITE_BOX_REQUIRES
    tags: ClassVar[tuple[str, ...]] = WHITE_BOX_TAGS
    Config: ClassVar[type[AttackConfig]] = APGDConfig

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
            Per-point results named ``apgd-ce``, ``apgd-dlr`` or ``apgd-margin``.

        Raises
        ------
        CapabilityError
            The model has no torch module, logits or gradients.
        ConfigError
            ``eps`` / ``norm`` / budget / constraints do not fit the data.
        """
        self.check_model(model)
        from bastion.attacks.evasion import _torch

        cfg = self.options(APGDConfig)
        schedule = _torch.APGDSchedule(
            n_iter=cfg.n_iter,
            loss=cfg.loss,
            restarts=cfg.restarts,
            rho=cfg.rho,
            momentum=cfg.momentum,
            initial_step=cfg.initial_step,
        )
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
            options=cfg,
            schedule=schedule,
        )
