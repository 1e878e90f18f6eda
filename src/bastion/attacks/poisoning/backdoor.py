"""``backdoor``: a simulated trigger backdoor, retrained with the user's procedure.

What it measures
    Whether a model trained on data where ``rate`` of the rows carry a trigger (a few
    features set to fixed values, feasible under the dataset's constraints) and the target
    label learns to obey the trigger, and what that costs in clean accuracy (Gu et al.,
    "BadNets", 2017; Chen et al., "Targeted backdoor attacks on deep learning systems using
    data poisoning", 2017). MITRE ATLAS AML.T0020 and AML.T0043.004 (backdoor trigger);
    OWASP ML02.
Metrics
    ``backdoor_success_rate`` = Pr[f(x + trigger) = target | y != target] on the test set,
    ``clean_trigger_rate`` (the same for a model trained on clean data), ``clean_accuracy``,
    ``poisoned_accuracy``, ``accuracy_drop``. The victim's predictions are never queried.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from bastion.attacks.base import ATTACKS, Attack, AttackConfig, Family
from bastion.attacks.constraints import FeatureConstraints
from bastion.attacks.poisoning.simulate import PoisoningSimulation, simulate_poisoning
from bastion.models.base import ModelAdapter
from bastion.threats import (
    ATLAS_BACKDOOR_TRIGGER,
    ATLAS_POISON_TRAINING_DATA,
    OWASP_DATA_POISONING,
)

__all__ = ["Backdoor", "BackdoorConfig"]


class BackdoorConfig(AttackConfig):
    """Options of ``backdoor``."""

    rate: float = Field(default=0.05, gt=0.0, lt=1.0, description="share of rows poisoned")
    target_class: Any = Field(default=None, description="default: the most frequent class")
    source_class: Any = Field(default=None, description="one-to-one backdoor from this class")
    trigger: dict[int, float] | None = Field(
        default=None, description="feature position -> value; default: rare upper bounds"
    )
    n_trigger_features: int = Field(default=3, ge=1)


@ATTACKS.register
class Backdoor(Attack):
    """Stamp a trigger on ``rate`` of the training rows, relabel them, retrain, measure.

    Example::

        sim = Backdoor(BackdoorConfig(rate=0.05)).run(estimator, X_tr, y_tr, X_te, y_te)
        sim.backdoor_success_rate
    """

    id = "backdoor"
    title = "Backdoor trigger (simulated poisoning)"
    family: ClassVar[Family] = "poisoning"
    tags = (ATLAS_POISON_TRAINING_DATA, ATLAS_BACKDOOR_TRIGGER, OWASP_DATA_POISONING)
    Config = BackdoorConfig

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
        cfg = self.options(BackdoorConfig)
        return simulate_poisoning(
            model,
            X_train,
            np.asarray(y_train),
            X_test,
            np.asarray(y_test),
            kind="backdoor",
            rate=cfg.rate,
            trigger=cfg.trigger,
            target_class=cfg.target_class,
            source_class=cfg.source_class,
            n_trigger_features=cfg.n_trigger_features,
            constraints=constraints,
            seed=seed,
        )
