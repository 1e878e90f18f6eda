"""Alembic migrations of the registry schema (applied by bastion.governance.db.upgrade)."""
