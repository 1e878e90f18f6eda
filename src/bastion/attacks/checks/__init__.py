"""Gate checks of the Attack pillar: attacks run inside `bastion check` and become findings.

Opt-in: a check runs when its section (``checks.robustness.<name>`` ...) is in the policy.
"""

from bastion.attacks.checks import attribute_inference, membership  # noqa: F401  (privacy)
from bastion.attacks.checks import backdoor_activations as backdoor_activations  # poisoning
from bastion.attacks.checks import extraction as extraction  # extraction
from bastion.attacks.checks import label_issues as label_issues  # poisoning
from bastion.attacks.checks import poisoning_simulation as poisoning_simulation  # poisoning
from bastion.attacks.checks import robustness as robustness  # robustness (evasion)
