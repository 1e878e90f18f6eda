"""Gate checks of the Attack pillar: attacks run inside `bastion check` and become findings.

Opt-in: a check runs when its section (``checks.robustness.<name>`` ...) is in the policy.
"""
