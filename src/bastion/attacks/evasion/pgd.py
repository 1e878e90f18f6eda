"""PGD: projected gradient descent on the loss, in an L-inf or L2 ball (white-box, PyTorch).

What it does
    From a random point of the eps ball around each input, ``steps`` steps of size
    ``step_size`` follow the sign (L-inf) or the direction (L2) of the cross-entropy loss's
    input gradient, each followed by a projection onto the ball intersected with the
    feasible box; ``restarts`` rounds restart from new random points for the inputs still
    unbroken. The first misclassified iterate of each input is kept (an input already broken
    leaves the working batch), not the last iterate.
Why it matters
    PGD is the reference first-order attack (Madry et al. 2018): a model that PGD breaks at
    a small eps is not robust, whatever its clean accuracy. Run it with enough steps: the
    peers' few-step defaults give false assurance.
Defaults
    40 steps (Madry et al.'s MNIST setting), step ``2.5 * eps / steps`` (the rule of Madry's
    ``robustness`` library: a path of 2.5 eps reaches every point of the ball), random start,
    1 restart.
References
    Madry, Makelov, Schmidt, Tsipras, Vladu (2018), "Towards Deep Learning Models Resistant
    to Adversarial Attacks", ICLR. MITRE ATLAS AML.T0015 (evade ML model), AML.T0043.000
    (craft adversarial data: white-box optimisation); OWASP ML01.
Metrics
    Per point (:class:`~bastion.attacks.results.EvasionResult`): success (correct before,
    misclassified at a feasible ``x_adv`` within eps, checked by a final model prediction),
    perturbation in eps units (std units for tabular data), forward passes as queries.
    ``extra``: ``zero_gradient_fraction``, ``nan_gradients``, ``restarts``, ``iterations``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from bastion.attacks.base import ATTACKS, AttackConfig, EvasionAttack
from bastion.attacks.budget import Budget
from bastion.attacks.constraints import FeatureConstraints
from bastion.attacks.results import EvasionResult
from bastion.models.base import Capability, ModelAdapter
from bastion.threats import (
    ATLAS_CRAFT_ADVERSARIAL_DATA,
    ATLAS_EVASION,
    ATLAS_WHITE_BOX_OPTIMIZATION,
    OWASP_INPUT_MANIPULATION,
)

__all__ = ["PGD", "WHITE_BOX_REQUIRES", "WHITE_BOX_TAGS", "PGDConfig", "WhiteBoxConfig"]

WHITE_BOX_REQUIRES = frozenset({Capability.PREDICT, Capability.LOGITS, Capability.LOSS_GRADIENT})
WHITE_BOX_TAGS = (
    ATLAS_EVASION,
    ATLAS_CRAFT_ADVERSARIAL_DATA,
    ATLAS_WHITE_BOX_OPTIMIZATION,
    OWASP_INPUT_MANIPULATION,
)


class WhiteBoxConfig(AttackConfig):
    """Execution options shared by the white-box attacks (FGSM, PGD, APGD, auto).

    Attributes
    ----------
    batch_size:
        Points attacked together (one forward and one backward pass per step for the batch).
    early_exit:
        Points already misclassified leave the working batch (their adversarial is kept):
        fewer forward passes, same successes. Off to measure per-step cost. When PGD or APGD
        replays a CUDA graph (below), broken points stay in the graph's batch and are looked
        for every 8 steps; they leave it, under a new capture, once every point broke or the
        time saved on the remaining steps is estimated to exceed a capture's (both timed
        during the attack), so a point may take more loop forwards (queries) than in the
        eager loop, and, as the choice follows timings, per-point query counts may differ
        between two runs with the same seed (adversarial points too, rarely, by the last
        bit of a smaller batch's matmul); ``cuda_graphs=False`` repeats them exactly.
        Measured on an H100,
        digits MLP, 4,096 points, 40 steps, before graphs served early exit: 18 ms with early
        exit off (graph) against 51 ms with it on (eager).
    precision:
        ``"fp32"`` (default) or ``"bf16"``: opt-in bfloat16 autocast of the model's forward
        pass inside the attack loop (meant for CUDA). Success is always verified in the
        model's own precision at the end.
    channels_last:
        Opt-in: run 4-D (image) inputs and the module in channels-last memory format inside
        the loop (CUDA convolutions); the module's format is restored afterwards.
    cuda_graphs:
        On a CUDA device, with no rounding constraints, PGD and APGD capture one step as a
        CUDA graph after three eager steps and replay it: a small model's step is bound by
        launching its kernels, which a replay does at once (APGD's checkpoints run between
        replays). With early exit too, without a total query budget (``max_queries``: broken
        points kept in the batch would spend it); in bf16, PGD's points stopped by the loop's
        verdicts are confirmed in the model's own precision at each look, and those refuted
        move on (bf16 PGD under ``max_queries_per_sample`` runs eagerly: a point kept in the
        batch would pass its cap). A model that cannot be captured runs eagerly;
        ``extra["cuda_graph"]`` says whether a graph ran. Off: every step eager. Turn it off
        for a module whose forward pass makes choices in Python (Python or numpy randomness,
        attributes it changes): a replay repeats the choice made at the capture (torch's own
        random numbers are drawn anew at each replay). FGSM (one step) ignores it.
    """

    batch_size: int = Field(default=512, ge=1)
    early_exit: bool = True
    precision: Literal["fp32", "bf16"] = "fp32"
    channels_last: bool = False
    cuda_graphs: bool = True


class PGDConfig(WhiteBoxConfig):
    """PGD's options.

    Attributes
    ----------
    steps:
        Gradient steps per restart.
    step_size:
        Step length in eps units (a fraction of eps, measured in the ball's own units);
        ``None`` means ``2.5 / steps``.
    random_start:
        Start from a uniform random point of the ball (else from the input).
    restarts:
        Rounds from new random starts, each on the points still unbroken.
    """

    steps: int = Field(default=40, ge=1)
    step_size: float | None = Field(default=None, gt=0)
    random_start: bool = True
    restarts: int = Field(default=1, ge=1)


@ATTACKS.register
class PGD(EvasionAttack):
    """Projected gradient descent (Madry et al. 2018), L-inf or L2, with random restarts.

    Example::

        >>> attack = PGD(PGDConfig(steps=40))  # doctest: +SKIP
        >>> result = attack.run(model, X, y, eps=0.3, constraints=FeatureConstraints.box(784, 0, 1))
        >>> result.metrics()["robust_accuracy"]  # doctest: +SKIP
    """

    id: ClassVar[str] = "pgd"
    title: ClassVar[str] = "Projected gradient descent (PGD)"
    requires: ClassVar[frozenset[Capability]] = WHITE_BOX_REQUIRES
    tags: ClassVar[tuple[str, ...]] = WHITE_BOX_TAGS
    Config: ClassVar[type[AttackConfig]] = PGDConfig

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
        """Attack every row of ``X``; see :class:`~bastion.attacks.base.EvasionAttack`.

        Parameters
        ----------
        model:
            A white-box adapter (a :class:`~bastion.models.torch.TorchAdapter`).
        X, y:
            Inputs (flat rows, or rows of the model's ``input_shape``) and their labels.
        eps:
            Radius of the ball, in ``constraints.scale`` units (std units for tabular data,
            input units for images).
        norm:
            ``"inf"`` or ``"2"``.
        constraints:
            Feasibility constraints (bounds, immutable, integer, one-hot); unconstrained
            when None.
        budget:
            Query and time limits; the attack stops cleanly and returns what it found.
        seed:
            Seeds the random starts.

        Returns
        -------
        EvasionResult
            Per-point results named ``pgd``.

        Raises
        ------
        CapabilityError
            The model has no torch module, logits or gradients.
        ConfigError
            ``eps`` / ``norm`` / budget / constraints do not fit the data.
        """
        self.check_model(model)
        from bastion.attacks.evasion import _torch

        cfg = self.options(PGDConfig)
        step = cfg.step_size if cfg.step_size is not None else 2.5 / cfg.steps
        schedule = _torch.PGDSchedule(
            steps=cfg.steps, step_size=step, random_start=cfg.random_start, restarts=cfg.restarts
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
