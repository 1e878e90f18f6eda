"""The fairness checks (Test pillar), one module per check.

Importing this package registers every check with :data:`bastion.checks.CHECKS`:

=====  ==================  ================================================================
id     policy name         detects
=====  ==================  ================================================================
FA001  demographic_parity  unequal selection rates (difference, optional ratio)
FA002  equalized_odds      unequal true or false positive rates
FA003  equal_opportunity   unequal true positive rates
FA004  disparate_impact    a selection-rate ratio below four fifths (0.8)
=====  ==================  ================================================================

All four share :mod:`bastion.fairness.checks._base` (options, evidence) and compute their
numbers with :mod:`bastion.fairness.metrics`, which matches Fairlearn's to the last bit.
"""

from bastion.fairness.checks import (
    demographic_parity,
    disparate_impact,
    equal_opportunity,
    equalized_odds,
)

__all__ = ["demographic_parity", "disparate_impact", "equal_opportunity", "equalized_odds"]
