"""Alembic environment: runs on the connection :func:`bastion.governance.db.upgrade` passes."""

from __future__ import annotations

from alembic import context

from bastion.governance.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
