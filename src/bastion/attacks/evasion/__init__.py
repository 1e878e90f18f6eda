"""Evasion attacks."""

from bastion.attacks.evasion import apgd, auto, fgsm, pgd  # noqa: F401  (white-box attacks)
from bastion.attacks.evasion import hopskipjump as hopskipjump  # black-box
from bastion.attacks.evasion import square as square  # black-box
