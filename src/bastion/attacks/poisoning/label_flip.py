"""``label_flip``: simulated label-flipping poisoning, retrained with the user's procedure.

What it measures
    How far a model's test accuracy falls when ``rate`` of its training labels are flipped,
    at random or towards a chosen class (Biggio, Nelson and Laskov, "Poisoning attacks
    against support vector machines", ICML 2012). MITRE ATLAS AML.T0020; OWASP ML02.
Metrics
    ``clean_accuracy``, ``poisoned_accuracy``, ``accuracy_drop`` (see
    :mod:`bastion.attacks.poisoning.simulate`). The victim's predictions are never queried:
    the attack retrains a copy with the user's training function.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from bastion.attacks.base import ATTACKS, Attack, AttackConfig, Family
from bastion.attacks.constraints import FeatureConstraints
from bastion.attacks.poisoning.simulate import PoisoningSimulation, simulate_poisoning
from bastion.models.base import ModelAdapter
from bastion.threats import ATLAS_POISON_TRAINING_DATA, OWASP_DATA_POISONING

__all__ = ["LabelFlip", "LabelFlipConfig"]


class LabelFlipConfig(AttackConfig):
    """Options of ``label_flip``."""

    rate: float = Field(default=0.05, gt=0.0, lt=1.0, description="share of rows flipped")
    mode: Literal["random", "targeted"] = "random"
    source: Any = Field(default=None, description="targeted: class flipped from (any if None)")
    target: Any = Field(default=None, description="targeted: class flipped to")


@ATTACKS.register
class LabelFlip(Attack):
    """Flip ``rate`` of the training labels, retrain, report the accuracy drop.

    Example::

        sim = LabelFlip(LabelFlipConfig(rate=0.1)).run(estimator, X_tr, y_tr, X_te, y_te)
        sim.accuracy_drop
    """

    id = "label_flip"
    title = "Label flipping (simulated poisoning)"
    family: ClassVar[Family] = "poisoning"
    tags = (ATLAS_POISON_TRAINING_DATA, OWASP_DATA_POISONING)
    Config = LabelFlipConfig

    def run(
        self,
        model: Any,
        X_train: Any,
        y_train: Any,
        X_test: Any,
        y_test: Any,
        *,
        constraints: FeatureConstraints | None = None,
        seed: int = 0,
    ) -> PoisoningSimulation:
        """Simulate on the given data; ``model`` is a training function, an estimator or an
        adapter (see :func:`~bastion.attacks.poisoning.simulate.simulate_poisoning`)."""
        if isinstance(model, ModelAdapter):
            self.check_model(model)
        cfg = self.options(LabelFlipConfig)
        del constraints  # flips touch labels only
        return simulate_poisoning(
            model,
            X_train,
            np.asarray(y_train),
            X_test,
            np.asarray(y_test),
            kind="label_flip",
            rate=cfg.rate,
            mode=cfg.mode,
            source=cfg.source,
            target=cfg.target,
            seed=seed,
        )
