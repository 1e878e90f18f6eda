"""Governance: the registry, signed releases, the audit chain, lineage, model cards and ML-BOMs,
encryption at rest and access control (the Protect pillar beyond artifact scanning)."""
