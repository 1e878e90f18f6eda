"""The Attack pillar: ethical hacking of the user's own models in a controlled environment.

Families: ``evasion`` (adversarial examples), ``extraction`` (model stealing), ``poisoning``
(simulated and detected), ``privacy`` (membership and attribute inference). Every attack
declares the model capabilities it needs, is seeded and budgeted (queries, wall time), and
returns per-sample results; gate checks turn results into findings.
"""
