"""The model registry: models, immutable versions, aliases and four-eyes promotion.

A version is a folder of files (model files, ``report.json``, model card, ML-BOM, signature
bundle) copied into the content-addressed :class:`~bastion.governance.store.Store`; its
metadata (file digests, the folder's manifest digest, the gate report's digest and verdict,
dataset digests, metrics, code version, who registered it) lives in the database. Versions
never change; aliases (``@champion``, ``@staging``, ``@production``) point at them.

Refer to a version as ``name@3`` (a number), ``name@staging`` (an alias) or ``name`` (the
latest). Every operation checks the caller's role (:mod:`bastion.governance.access`) and
every change appends an audit event. Moving ``@production`` needs an approval of that version
by an approver other than whoever registered it (four eyes), a passing gate report and a
signature bundle; each refusal says which condition failed.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from bastion.exceptions import BastionError, ConfigError, DataError
from bastion.governance import schema
from bastion.governance.access import AccessControl, Identity
from bastion.governance.audit import AuditLog, utc_now
from bastion.governance.db import Location, engine_for, resolve_location
from bastion.governance.store import Store

__all__ = [
    "PROTECTED_ALIASES",
    "SIGNATURE_FILE",
    "ModelVersion",
    "PromotionRefusedError",
    "Registry",
    "parse_ref",
]

SIGNATURE_FILE = "model.sig"  # the OpenSSF model-signing default name
PROTECTED_ALIASES = frozenset({"production"})
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class PromotionRefusedError(BastionError, PermissionError):
    """A promotion's conditions (approval, gate, signature) do not hold."""


@dataclass(frozen=True)
class ModelVersion:
    """One registered version."""

    name: str
    version: int
    id: int
    manifest_sha256: str
    report_sha256: str | None
    bundle_sha256: str | None
    key_id: str | None
    gate_passed: bool | None
    datasets: dict[str, str]
    metrics: dict[str, Any]
    code_version: str | None
    created_at: str
    created_by: str
    files: tuple[tuple[str, str], ...] = ()
    aliases: tuple[str, ...] = field(default=())

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "ref": self.ref,
            "manifest_sha256": self.manifest_sha256,
            "report_sha256": self.report_sha256,
            "bundle_sha256": self.bundle_sha256,
            "key_id": self.key_id,
            "gate_passed": self.gate_passed,
            "datasets": self.datasets,
            "metrics": self.metrics,
            "code_version": self.code_version,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "files": [{"path": p, "sha256": s} for p, s in self.files],
            "aliases": list(self.aliases),
        }


def parse_ref(ref: str) -> tuple[str, str | None]:
    """``name@x`` -> (name, x); ``name`` -> (name, None)."""
    name, _, tag = ref.partition("@")
    _check_name(name, "model name")
    if tag == "" and "@" in ref:
        raise ConfigError(f"model reference {ref!r}: nothing after '@'")
    return name, tag or None


def _check_name(value: str, what: str) -> None:
    if not value or len(value) > 200 or not set(value) <= _NAME_CHARS:
        raise ConfigError(
            f"{what} {value!r} must be 1-200 characters of letters, digits, '-', '_' or '.'"
        )


class Registry:
    """One registry (database + blob store), used as one identity.

    Example::

        >>> reg = Registry.open(token=os.environ.get("BASTION_TOKEN"))   # doctest: +SKIP
        >>> v = reg.register("cancer", "release/")                     # doctest: +SKIP
        >>> reg.set_alias("cancer@1", "staging")                        # doctest: +SKIP
    """

    def __init__(
        self, location: Location, identity: Identity | None = None, kek: bytes | None = None
    ) -> None:
        self.location = location
        self.engine: Engine = engine_for(location)
        if kek is None and os.environ.get("BASTION_STORE_KEK"):
            from bastion.governance.crypto import load_kek

            kek = load_kek(key_env="BASTION_STORE_KEK")
        # with a key-encryption key, every blob is stored encrypted at rest
        self.store = Store(location.home / "store", kek)
        self.access = AccessControl(self.engine)
        self.audit = AuditLog(self.engine)
        self.identity = identity or self.access.authenticate(None)

    @classmethod
    def open(
        cls,
        home: str | os.PathLike[str] | None = None,
        url: str | None = None,
        token: str | None = None,
    ) -> Registry:
        """The registry at ``home``/``url`` (defaults: ``BASTION_HOME``,
        ``BASTION_DATABASE_URL``), as the holder of ``token`` (default ``BASTION_TOKEN``;
        none in single-user mode)."""
        location = resolve_location(home, url)
        engine = engine_for(location)
        identity = AccessControl(engine).authenticate(token or os.environ.get("BASTION_TOKEN"))
        return cls(location, identity)

    # -- writing ----------------------------------------------------------------------------
    def register(
        self,
        name: str,
        folder: str | os.PathLike[str],
        *,
        report: Mapping[str, Any] | None = None,
        code_version: str | None = None,
    ) -> ModelVersion:
        """Copy ``folder`` into the store as the next version of ``name``.

        Parameters:
            name: the model's name (created on first use).
            folder: the release folder; ``report.json`` in it is read when ``report`` is None.
            report: the gate report (bastion.report/v1 dict) to record.
            code_version: e.g. a git commit; default: ``git rev-parse HEAD`` of the cwd when
                it is a repository.

        Raises:
            AccessDeniedError: the caller may not register.
            DataError: the folder is missing, empty, or holds links leaving it.
        """
        self.access.require(self.identity, "registry.register")
        _check_name(name, "model name")
        root = Path(folder)
        files = _release_files(root)
        if report is None and (root / "report.json").is_file():
            report = json.loads((root / "report.json").read_text(encoding="utf-8"))
        stored: list[tuple[str, str, int]] = []
        for rel, path in files:
            sha, size = self.store.put(path)
            stored.append((rel, sha, size))
        manifest = _manifest_digest([(rel, sha) for rel, sha, _ in stored])
        by_path = {rel: sha for rel, sha, _ in stored}
        report_sha = by_path.get("report.json")
        bundle_sha = by_path.get(SIGNATURE_FILE)
        key_id = _bundle_key_id(root / SIGNATURE_FILE) if bundle_sha else None
        gate_passed = None if report is None else report.get("verdict", {}).get("passed")
        datasets = _datasets_of(report)
        metrics = _metrics_of(report)
        code = code_version if code_version is not None else _git_head()
        now = utc_now()
        with self.engine.begin() as conn:
            model_id = self._model_id(conn, name, create=True)
            version = (
                int(
                    conn.execute(
                        select(func.coalesce(func.max(schema.model_versions.c.version), 0)).where(
                            schema.model_versions.c.model_id == model_id
                        )
                    ).scalar_one()
                )
                + 1
            )
            for _, sha, size in stored:
                self._record_artifact(conn, sha, size, now)
            conn.execute(
                schema.model_versions.insert().values(
                    model_id=model_id,
                    version=version,
                    manifest_sha256=manifest,
                    report_sha256=report_sha,
                    bundle_sha256=bundle_sha,
                    key_id=key_id,
                    gate_passed=gate_passed,
                    datasets=json.dumps(datasets, sort_keys=True),
                    metrics=json.dumps(metrics, sort_keys=True, default=str),
                    code_version=code,
                    created_at=now,
                    created_by=self.identity.name,
                )
            )
            version_id = conn.execute(
                select(schema.model_versions.c.id).where(
                    schema.model_versions.c.model_id == model_id,
                    schema.model_versions.c.version == version,
                )
            ).scalar_one()
            conn.execute(
                schema.model_files.insert(),
                [{"version_id": version_id, "path": rel, "sha256": sha} for rel, sha, _ in stored],
            )
        self.audit.append(
            self.identity.name,
            "model.register",
            f"model:{name}@{version}",
            {
                "manifest_sha256": manifest,
                "report_sha256": report_sha,
                "bundle_sha256": bundle_sha,
                "gate_passed": gate_passed,
                "files": len(stored),
            },
        )
        return self.get(f"{name}@{version}")

    def set_alias(self, ref: str, alias: str) -> ModelVersion:
        """Point ``alias`` at the version ``ref``; ``production`` goes through
        :meth:`promote`."""
        _check_name(alias, "alias")
        if alias.isdigit():
            raise ConfigError(f"alias {alias!r} would be read as a version number")
        if alias in PROTECTED_ALIASES:
            return self.promote(ref, alias)
        self.access.require(self.identity, "registry.alias")
        return self._move_alias(self.get(ref), alias)

    def approve(self, ref: str, comment: str = "") -> None:
        """Approve ``ref`` for production (an approver who did not register it)."""
        self.access.require(self.identity, "registry.approve")
        mv = self.get(ref)
        if mv.created_by == self.identity.name:
            raise PromotionRefusedError(
                f"{self.identity.name} registered {mv.ref} and cannot approve it: a different "
                "approver must (four eyes)"
            )
        with self.engine.begin() as conn:
            conn.execute(
                schema.approvals.insert().values(
                    version_id=mv.id,
                    approver=self.identity.name,
                    comment=comment,
                    created_at=utc_now(),
                )
            )
        self.audit.append(
            self.identity.name, "model.approve", f"model:{mv.ref}", {"comment": comment}
        )

    def promote(self, ref: str, alias: str = "production") -> ModelVersion:
        """Move a protected alias after checking approval, gate and signature."""
        self.access.require(self.identity, "registry.promote")
        mv = self.get(ref)
        reasons = []
        approvers = self._approvers(mv.id)
        if not [a for a in approvers if a != mv.created_by]:
            reasons.append(
                f"no approval of {mv.ref} by an approver other than {mv.created_by}, who "
                f"registered it (run 'bastion registry approve {mv.ref}' as another approver)"
            )
        if mv.gate_passed is not True:
            reasons.append(
                f"its gate report {'failed' if mv.gate_passed is False else 'is missing'}"
            )
        if mv.bundle_sha256 is None:
            reasons.append(f"it has no signature bundle ({SIGNATURE_FILE})")
        if reasons:
            self.audit.append(
                self.identity.name,
                "model.promote.refused",
                f"model:{mv.ref}",
                {"alias": alias, "reasons": reasons},
            )
            raise PromotionRefusedError(
                f"cannot promote {mv.ref} to @{alias}: " + "; ".join(reasons)
            )
        return self._move_alias(mv, alias)

    def _move_alias(self, mv: ModelVersion, alias: str) -> ModelVersion:
        now = utc_now()
        a = schema.aliases
        with self.engine.begin() as conn:
            model_id = self._model_id(conn, mv.name, create=False)
            previous = conn.execute(
                select(a.c.version_id).where(a.c.model_id == model_id, a.c.alias == alias)
            ).first()
            if previous is None:
                conn.execute(
                    a.insert().values(
                        model_id=model_id,
                        alias=alias,
                        version_id=mv.id,
                        updated_at=now,
                        updated_by=self.identity.name,
                    )
                )
            else:
                conn.execute(
                    a.update()
                    .where(a.c.model_id == model_id, a.c.alias == alias)
                    .values(version_id=mv.id, updated_at=now, updated_by=self.identity.name)
                )
        self.audit.append(
            self.identity.name,
            "model.alias",
            f"model:{mv.name}@{alias}",
            {"version": mv.version, "previous_version_id": previous[0] if previous else None},
        )
        return self.get(mv.ref)

    # -- reading ----------------------------------------------------------------------------
    def get(self, ref: str) -> ModelVersion:
        """The version ``ref`` names.

        Raises:
            DataError: no such model, version or alias.
        """
        self.access.require(self.identity, "registry.read")
        name, tag = parse_ref(ref)
        v, m, a = schema.model_versions, schema.models, schema.aliases
        with self.engine.connect() as conn:
            model = conn.execute(select(m.c.id).where(m.c.name == name)).first()
            if model is None:
                raise DataError(f"no model {name!r} in the registry")
            query = select(v).where(v.c.model_id == model.id)
            if tag is None:
                query = query.order_by(v.c.version.desc()).limit(1)
            elif tag.isdigit():
                query = query.where(v.c.version == int(tag))
            else:
                target = conn.execute(
                    select(a.c.version_id).where(a.c.model_id == model.id, a.c.alias == tag)
                ).first()
                if target is None:
                    raise DataError(f"model {name!r} has no alias @{tag}")
                query = query.where(v.c.id == target.version_id)
            row = conn.execute(query).first()
            if row is None:
                raise DataError(f"no version {tag!r} of model {name!r}")
            files = conn.execute(
                select(schema.model_files.c.path, schema.model_files.c.sha256)
                .where(schema.model_files.c.version_id == row.id)
                .order_by(schema.model_files.c.path)
            ).all()
            names = conn.execute(
                select(a.c.alias).where(a.c.version_id == row.id).order_by(a.c.alias)
            ).all()
        return ModelVersion(
            name=name,
            version=int(row.version),
            id=int(row.id),
            manifest_sha256=str(row.manifest_sha256),
            report_sha256=row.report_sha256,
            bundle_sha256=row.bundle_sha256,
            key_id=row.key_id,
            gate_passed=row.gate_passed,
            datasets=json.loads(row.datasets or "{}"),
            metrics=json.loads(row.metrics or "{}"),
            code_version=row.code_version,
            created_at=str(row.created_at),
            created_by=str(row.created_by),
            files=tuple((str(p), str(s)) for p, s in files),
            aliases=tuple(str(n[0]) for n in names),
        )

    def models(self) -> list[dict[str, Any]]:
        """Every model with its latest version and aliases."""
        self.access.require(self.identity, "registry.read")
        m, v, a = schema.models, schema.model_versions, schema.aliases
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(m.c.name, func.max(v.c.version).label("latest"))
                .select_from(m.join(v, v.c.model_id == m.c.id))
                .group_by(m.c.name)
                .order_by(m.c.name)
            ).all()
            alias_rows = conn.execute(
                select(m.c.name, a.c.alias, v.c.version)
                .select_from(a.join(m, a.c.model_id == m.c.id).join(v, v.c.id == a.c.version_id))
                .order_by(a.c.alias)
            ).all()
        aliases: dict[str, dict[str, int]] = {}
        for name, alias, version in alias_rows:
            aliases.setdefault(str(name), {})[str(alias)] = int(version)
        return [
            {"name": str(r.name), "latest": int(r.latest), "aliases": aliases.get(str(r.name), {})}
            for r in rows
        ]

    def versions(self, name: str) -> list[ModelVersion]:
        self.access.require(self.identity, "registry.read")
        v, m = schema.model_versions, schema.models
        with self.engine.connect() as conn:
            numbers = conn.execute(
                select(v.c.version)
                .select_from(v.join(m, v.c.model_id == m.c.id))
                .where(m.c.name == name)
                .order_by(v.c.version)
            ).all()
        return [self.get(f"{name}@{n[0]}") for n in numbers]

    def export(self, ref: str, dest: str | os.PathLike[str]) -> Path:
        """Write the version's files (verified against their digests) into ``dest``."""
        mv = self.get(ref)
        out = Path(dest)
        if out.exists() and any(out.iterdir()):
            raise ConfigError(f"{out} is not empty")
        for rel, sha in mv.files:
            target = (out / rel).resolve()
            if out.resolve() not in target.parents:
                raise DataError(f"{mv.ref}: file path {rel!r} leaves the export folder")
            self.store.copy_out(sha, target)
        return out

    def add_dataset(self, path: str | os.PathLike[str], name: str | None = None) -> str:
        """Store a dataset file in the registry (encrypted at rest when the store has a key)
        and record it in the lineage graph; returns its sha256.

        Raises:
            AccessDeniedError: the caller may not record lineage.
            DataError: the file cannot be read as a table.
        """
        from bastion.data.dataset import read_table
        from bastion.governance.lineage import Lineage

        self.access.require(self.identity, "lineage.record")
        source = Path(path)
        frame = read_table(source)  # a named DataError for a missing or unreadable file
        sha, size = self.store.put(source)
        now = utc_now()
        with self.engine.begin() as conn:
            self._record_artifact(conn, sha, size, now)
        columns = {str(c): str(t) for c, t in frame.dtypes.items()}
        Lineage(self.engine).record_dataset(
            sha,
            name or source.stem,
            f"registry:sha256:{sha}",
            columns,
            len(frame),
            by=self.identity,
        )
        self.audit.append(
            self.identity.name,
            "dataset.add",
            f"dataset:{sha}",
            {
                "name": name or source.stem,
                "encrypted": self.store.encrypted(sha),
                "rows": len(frame),
            },
        )
        return sha

    def get_dataset(self, sha256: str, dest: str | os.PathLike[str]) -> Path:
        """Write a stored dataset (decrypted, verified against its digest) to ``dest``."""
        self.access.require(self.identity, "registry.read")
        if not self.store.has(sha256):
            raise DataError(f"no dataset {sha256} in the registry store")
        self.store.copy_out(sha256, dest)
        return Path(dest)

    def approvals(self, ref: str) -> list[str]:
        return self._approvers(self.get(ref).id)

    def _approvers(self, version_id: int) -> list[str]:
        ap = schema.approvals
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(ap.c.approver).where(ap.c.version_id == version_id).order_by(ap.c.id)
            ).all()
        return [str(r[0]) for r in rows]

    def _model_id(self, conn: Any, name: str, create: bool) -> int:
        m = schema.models
        row = conn.execute(select(m.c.id).where(m.c.name == name)).first()
        if row is not None:
            return int(row.id)
        if not create:
            raise DataError(f"no model {name!r} in the registry")
        conn.execute(
            m.insert().values(name=name, created_at=utc_now(), created_by=self.identity.name)
        )
        return int(conn.execute(select(m.c.id).where(m.c.name == name)).scalar_one())

    def _record_artifact(self, conn: Any, sha: str, size: int, now: str) -> None:
        """Add a stored blob to the artifacts table unless it is there (content-addressed:
        the same bytes stored twice are one row)."""
        known = conn.execute(
            select(schema.artifacts.c.sha256).where(schema.artifacts.c.sha256 == sha)
        ).first()
        if known is None:
            conn.execute(
                schema.artifacts.insert().values(
                    sha256=sha, size=size, encrypted=self.store.encrypted(sha), created_at=now
                )
            )


# -- helpers --------------------------------------------------------------------------------------
def _release_files(root: Path) -> list[tuple[str, Path]]:
    if not root.is_dir():
        raise DataError(f"release folder {str(root)!r} does not exist")
    files: list[tuple[str, Path]] = []
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            target = path.resolve()
            if root.resolve() not in target.parents:
                raise DataError(f"{path} is a link leaving the release folder")
        if path.is_file():
            files.append((path.relative_to(root).as_posix(), path))
    if not files:
        raise DataError(f"release folder {str(root)!r} holds no files")
    return files


def _manifest_digest(entries: list[tuple[str, str]]) -> str:
    """sha256 over sorted ``path\\0sha256\\n`` lines, as
    :func:`bastion.models.formats.sha256_path` digests a folder."""
    import hashlib

    digest = hashlib.sha256()
    for line in sorted(f"{rel}\0{sha}\n" for rel, sha in entries):
        digest.update(line.encode("utf-8"))
    return digest.hexdigest()


def _bundle_key_id(bundle: Path) -> str | None:
    try:
        doc = json.loads(bundle.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    hint = doc.get("verificationMaterial", {}).get("publicKey", {}).get("hint")
    return str(hint) if hint else None


def _datasets_of(report: Mapping[str, Any] | None) -> dict[str, str]:
    if not report:
        return {}
    out = {}
    for ds in report.get("datasets", []) or []:
        if isinstance(ds, Mapping) and ds.get("sha256"):
            out[str(ds.get("name", ds["sha256"][:12]))] = str(ds["sha256"])
    return out


def _metrics_of(report: Mapping[str, Any] | None) -> dict[str, Any]:
    if not report:
        return {}
    out: dict[str, Any] = {}
    for f in report.get("findings", []) or []:
        for key, value in (f.get("metrics") or {}).items():
            if isinstance(value, int | float) or value is None:
                out[f"{f.get('check_id')}.{key}"] = value
    return out


def _git_head() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None
