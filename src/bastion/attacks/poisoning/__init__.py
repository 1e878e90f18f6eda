"""Poisoning: simulated attacks on the training data, and detectors of poisoned rows.

- :mod:`~bastion.attacks.poisoning.simulate`: label flipping and backdoors, retraining with
  the user's procedure (attacks ``label_flip`` and ``backdoor``).
- :mod:`~bastion.attacks.poisoning.detect`: label issues by confident learning and kNN
  label consistency.
- :mod:`~bastion.attacks.poisoning.spectral`: spectral signatures and activation clustering
  on a torch model's activations (torch imported lazily).
"""

from bastion.attacks.poisoning import backdoor, label_flip
from bastion.attacks.poisoning.detect import (
    LabelIssues,
    confident_learning,
    find_label_issues,
    knn_label_consistency,
    precision_recall,
)
from bastion.attacks.poisoning.simulate import (
    PoisoningSimulation,
    add_backdoor,
    apply_trigger,
    flip_labels,
    simulate_poisoning,
)

__all__ = [
    "LabelIssues",
    "PoisoningSimulation",
    "add_backdoor",
    "apply_trigger",
    "backdoor",
    "confident_learning",
    "find_label_issues",
    "flip_labels",
    "knn_label_consistency",
    "label_flip",
    "precision_recall",
    "simulate_poisoning",
]
