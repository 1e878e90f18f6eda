"""The registry's tables (SQLAlchemy Core). Migrations in :mod:`bastion.governance.migrations`
create them; this module is the live description the code queries through.

Times are UTC ISO-8601 strings (``2026-11-26T05:52:33.123456Z``): they sort, compare equal on
SQLite and PostgreSQL, and hash the same everywhere (the audit chain hashes them).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = [
    "aliases",
    "approvals",
    "artifacts",
    "audit_checkpoints",
    "audit_events",
    "audit_head",
    "datasets",
    "lineage_edges",
    "metadata",
    "model_files",
    "model_versions",
    "models",
    "runs",
    "tokens",
    "users",
]

metadata = MetaData()

artifacts = Table(
    "artifacts",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("encrypted", Boolean, nullable=False, default=False),
    Column("created_at", String(32), nullable=False),
)

models = Table(
    "models",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", String(32), nullable=False),
    Column("created_by", String(200), nullable=False),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_id", Integer, ForeignKey("models.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("manifest_sha256", String(64), nullable=False),
    Column("report_sha256", String(64)),
    Column("bundle_sha256", String(64)),
    Column("key_id", String(64)),
    Column("gate_passed", Boolean),
    Column("datasets", Text, nullable=False, default="{}"),  # JSON name -> sha256
    Column("metrics", Text, nullable=False, default="{}"),  # JSON
    Column("code_version", String(200)),
    Column("created_at", String(32), nullable=False),
    Column("created_by", String(200), nullable=False),
    UniqueConstraint("model_id", "version", name="uq_model_version"),
)

model_files = Table(
    "model_files",
    metadata,
    Column("version_id", Integer, ForeignKey("model_versions.id"), primary_key=True),
    Column("path", String(1000), primary_key=True),
    Column("sha256", String(64), ForeignKey("artifacts.sha256"), nullable=False),
)

aliases = Table(
    "aliases",
    metadata,
    Column("model_id", Integer, ForeignKey("models.id"), primary_key=True),
    Column("alias", String(100), primary_key=True),
    Column("version_id", Integer, ForeignKey("model_versions.id"), nullable=False),
    Column("updated_at", String(32), nullable=False),
    Column("updated_by", String(200), nullable=False),
)

approvals = Table(
    "approvals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("version_id", Integer, ForeignKey("model_versions.id"), nullable=False),
    Column("approver", String(200), nullable=False),
    Column("comment", Text, nullable=False, default=""),
    Column("created_at", String(32), nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("role", String(40), nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", String(32), nullable=False),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("label", String(200), nullable=False, default=""),
    Column("created_at", String(32), nullable=False),
    Column("expires_at", String(32)),
    Column("revoked", Boolean, nullable=False, default=False),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("ts", String(32), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(100), nullable=False),
    Column("object", String(500), nullable=False),
    Column("details", Text, nullable=False),  # canonical JSON
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# one row: the chain's head; appends lock it, so the chain never forks
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("head_hash", String(64), nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("signature", Text, nullable=False),  # base64 DER ECDSA
)

datasets = Table(
    "datasets",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("location", String(2000), nullable=False),
    Column("schema", Text, nullable=False, default="{}"),
    Column("rows", BigInteger),
    Column("created_at", String(32), nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(36), primary_key=True),  # uuid
    Column("kind", String(40), nullable=False),  # gate | training | release
    Column("name", String(200), nullable=False),
    Column("status", String(20), nullable=False),
    Column("started_at", String(32), nullable=False),
    Column("ended_at", String(32)),
    Column("actor", String(200), nullable=False),
    Column("facets", Text, nullable=False, default="{}"),
)

# node kinds: dataset (sha256), run (uuid), model_version (model@version), report (sha256)
lineage_edges = Table(
    "lineage_edges",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("src_kind", String(20), nullable=False),
    Column("src_id", String(300), nullable=False),
    Column("relation", String(40), nullable=False),
    Column("dst_kind", String(20), nullable=False),
    Column("dst_id", String(300), nullable=False),
    UniqueConstraint("src_kind", "src_id", "relation", "dst_kind", "dst_id", name="uq_edge"),
)
