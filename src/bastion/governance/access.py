"""Who may do what: users, roles, API tokens, and the role x operation matrix.

Roles: ``viewer`` (read), ``data-scientist`` (register and release models, record runs),
``approver`` (approve promotions; read the audit trail), ``admin`` (everything, users and
keys). Tokens are 32 random bytes (``bst_`` + URL-safe base64), shown once when created and
stored only as their SHA-256 (a token is high-entropy: no salt or slow hash is needed to
resist guessing, and lookups stay one indexed query).

Every registry operation calls :meth:`AccessControl.require` with an :class:`Identity`; the
matrix :data:`PERMISSIONS` is the one place that says which roles may perform it. A registry
with no users at all runs in *single-user mode*: the local operator acts as ``admin`` under
their OS user name (recorded as ``local:<name>`` in the audit trail); creating the first user
ends that mode, after which every operation needs a token.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import Engine, func, select

from bastion.exceptions import BastionError, ConfigError
from bastion.governance import schema
from bastion.governance.audit import AuditLog, utc_now

__all__ = [
    "PERMISSIONS",
    "ROLES",
    "AccessControl",
    "AccessDeniedError",
    "AuthenticationError",
    "Identity",
    "hash_token",
]

ROLES = ("viewer", "data-scientist", "approver", "admin")

# operation -> roles allowed; anything not listed is denied
PERMISSIONS: dict[str, frozenset[str]] = {
    "registry.read": frozenset(ROLES),
    "registry.verify": frozenset(ROLES),
    "lineage.read": frozenset(ROLES),
    "registry.register": frozenset({"data-scientist", "admin"}),
    "registry.release": frozenset({"data-scientist", "admin"}),
    "registry.alias": frozenset({"data-scientist", "admin"}),
    "lineage.record": frozenset({"data-scientist", "admin"}),
    "registry.approve": frozenset({"approver", "admin"}),
    "registry.promote": frozenset({"approver", "admin"}),
    "audit.read": frozenset({"approver", "admin"}),
    "audit.checkpoint": frozenset({"approver", "admin"}),
    "users.manage": frozenset({"admin"}),
    "keys.manage": frozenset({"admin"}),
    "serve.infer": frozenset(ROLES),
    "serve.feedback": frozenset({"data-scientist", "approver", "admin"}),
    "serve.metrics": frozenset({"approver", "admin"}),
    "serve.admin": frozenset({"admin"}),
}
_TOKEN_PREFIX = "bst_"


class AuthenticationError(BastionError, PermissionError):
    """No token, or a token that is unknown, revoked, expired or of a disabled user (401)."""


class AccessDeniedError(BastionError, PermissionError):
    """The caller's role does not allow the operation (403)."""


@dataclass(frozen=True)
class Identity:
    """Who is asking: a user name and role (``local:<os user>`` in single-user mode)."""

    name: str
    role: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass
class AccessControl:
    """Users, tokens and checks in one registry database.

    Example::

        >>> ac = AccessControl(engine)                          # doctest: +SKIP
        >>> token = ac.add_user("alice", "data-scientist", by=admin)
        >>> ac.require(ac.authenticate(token), "registry.register")
    """

    engine: Engine

    # -- identities ------------------------------------------------------------------------
    def single_user_mode(self) -> bool:
        with self.engine.connect() as conn:
            return (
                int(conn.execute(select(func.count()).select_from(schema.users)).scalar_one()) == 0
            )

    def local_identity(self) -> Identity:
        return Identity(f"local:{getpass.getuser()}", "admin")

    def authenticate(self, token: str | None) -> Identity:
        """The identity a token stands for; without users, the local admin.

        Raises:
            AuthenticationError: a token is needed and missing, or it is not valid.
        """
        if not token:
            if self.single_user_mode():
                return self.local_identity()
            raise AuthenticationError(
                "this registry has users: pass an API token (--token or BASTION_TOKEN)"
            )
        digest = hash_token(token.strip())
        t, u = schema.tokens, schema.users
        with self.engine.connect() as conn:
            row = conn.execute(
                select(
                    u.c.name, u.c.role, u.c.disabled, t.c.revoked, t.c.expires_at, t.c.token_hash
                )
                .select_from(t.join(u, t.c.user_id == u.c.id))
                .where(t.c.token_hash == digest)
            ).first()
        # compare in constant time even though the lookup was by digest
        if row is None or not hmac.compare_digest(str(row.token_hash), digest):
            raise AuthenticationError("unknown API token")
        if row.revoked:
            raise AuthenticationError("this API token was revoked")
        if row.disabled:
            raise AuthenticationError(f"user {row.name!r} is disabled")
        if row.expires_at is not None and str(row.expires_at) <= utc_now():
            raise AuthenticationError("this API token has expired")
        return Identity(str(row.name), str(row.role))

    @staticmethod
    def allowed(identity: Identity, operation: str) -> bool:
        if operation not in PERMISSIONS:
            raise ConfigError(f"unknown operation {operation!r}")
        return identity.role in PERMISSIONS[operation]

    def require(self, identity: Identity, operation: str) -> None:
        """Raise :class:`AccessDeniedError` unless the identity's role allows ``operation``."""
        if not self.allowed(identity, operation):
            allowed = ", ".join(sorted(PERMISSIONS[operation]))
            raise AccessDeniedError(
                f"{identity.name} ({identity.role}) may not {operation}; it needs one of: {allowed}"
            )

    # -- users and tokens -------------------------------------------------------------------
    def add_user(self, name: str, role: str, *, by: Identity, label: str = "") -> str:
        """Create a user and their first token; returns the token (shown once)."""
        self.require(by, "users.manage")
        if role not in ROLES:
            raise ConfigError(f"role must be one of {list(ROLES)}; received {role!r}")
        if not name or any(ord(c) < 33 for c in name) or name.startswith("local:"):
            raise ConfigError(f"user name {name!r} must be printable, without spaces or 'local:'")
        with self.engine.begin() as conn:
            exists = conn.execute(
                select(schema.users.c.id).where(schema.users.c.name == name)
            ).first()
            if exists is not None:
                raise ConfigError(f"user {name!r} already exists")
            conn.execute(
                schema.users.insert().values(
                    name=name, role=role, disabled=False, created_at=utc_now()
                )
            )
            user_id = conn.execute(
                select(schema.users.c.id).where(schema.users.c.name == name)
            ).scalar_one()
            token = self._insert_token(conn, int(user_id), label)
        AuditLog(self.engine).append(by.name, "user.add", f"user:{name}", {"role": role})
        return token

    def create_token(
        self, name: str, *, by: Identity, label: str = "", expires_at: str | None = None
    ) -> str:
        """A new token for ``name`` (admins for anyone; users for themselves)."""
        if by.name != name:
            self.require(by, "users.manage")
        with self.engine.begin() as conn:
            row = conn.execute(select(schema.users.c.id).where(schema.users.c.name == name)).first()
            if row is None:
                raise ConfigError(f"no user {name!r}")
            token = self._insert_token(conn, int(row.id), label, expires_at)
        AuditLog(self.engine).append(by.name, "token.create", f"user:{name}", {"label": label})
        return token

    def revoke_tokens(self, name: str, *, by: Identity) -> int:
        """Revoke every token of ``name``; returns how many."""
        if by.name != name:
            self.require(by, "users.manage")
        t, u = schema.tokens, schema.users
        with self.engine.begin() as conn:
            user = conn.execute(select(u.c.id).where(u.c.name == name)).first()
            if user is None:
                raise ConfigError(f"no user {name!r}")
            n = conn.execute(
                t.update()
                .where(t.c.user_id == user.id, t.c.revoked.is_(False))
                .values(revoked=True)
            ).rowcount
        AuditLog(self.engine).append(by.name, "token.revoke", f"user:{name}", {"count": n})
        return int(n)

    def set_disabled(self, name: str, disabled: bool, *, by: Identity) -> None:
        self.require(by, "users.manage")
        with self.engine.begin() as conn:
            n = conn.execute(
                schema.users.update().where(schema.users.c.name == name).values(disabled=disabled)
            ).rowcount
        if not n:
            raise ConfigError(f"no user {name!r}")
        AuditLog(self.engine).append(
            by.name, "user.disable" if disabled else "user.enable", f"user:{name}", {}
        )

    def users(self, *, by: Identity) -> list[dict[str, object]]:
        self.require(by, "users.manage")
        u = schema.users
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(u.c.name, u.c.role, u.c.disabled, u.c.created_at).order_by(u.c.name)
            )
            return [dict(r._mapping) for r in rows]

    @staticmethod
    def _insert_token(conn: object, user_id: int, label: str, expires_at: str | None = None) -> str:
        raw = secrets.token_bytes(32)
        token = _TOKEN_PREFIX + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
        conn.execute(  # type: ignore[attr-defined]
            schema.tokens.insert().values(
                user_id=user_id,
                token_hash=hash_token(token),
                prefix=token[:10],
                label=label,
                created_at=utc_now(),
                expires_at=expires_at,
                revoked=False,
            )
        )
        return token
