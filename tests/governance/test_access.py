"""Users, tokens and the role x operation matrix."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bastion.governance import schema
from bastion.governance.access import (
    PERMISSIONS,
    ROLES,
    AccessControl,
    AccessDeniedError,
    AuthenticationError,
    Identity,
    hash_token,
)
from bastion.governance.audit import AuditLog
from bastion.governance.db import Location, engine_for

# the matrix, spelled out independently of PERMISSIONS: a change to either fails this test
EXPECTED = {
    "viewer": {"registry.read", "registry.verify", "lineage.read", "serve.infer"},
    "data-scientist": {
        "registry.read",
        "registry.verify",
        "lineage.read",
        "registry.register",
        "registry.release",
        "registry.alias",
        "lineage.record",
        "serve.infer",
        "serve.feedback",
    },
    "approver": {
        "registry.read",
        "registry.verify",
        "lineage.read",
        "registry.approve",
        "registry.promote",
        "audit.read",
        "audit.checkpoint",
        "serve.infer",
        "serve.feedback",
        "serve.metrics",
    },
    "admin": set(PERMISSIONS),
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("operation", sorted(PERMISSIONS))
def test_role_operation_matrix(role: str, operation: str) -> None:
    identity = Identity("someone", role)
    assert AccessControl.allowed(identity, operation) == (operation in EXPECTED[role])


def test_tokens_are_random_shown_once_and_stored_hashed(location: Location) -> None:
    engine = engine_for(location)
    ac = AccessControl(engine)
    assert ac.single_user_mode()
    local = ac.authenticate(None)
    assert local.role == "admin"
    assert local.name.startswith("local:")
    token = ac.add_user("alice", "data-scientist", by=local)
    assert token.startswith("bst_")
    assert len(token) >= 40
    assert not ac.single_user_mode()
    with engine.connect() as conn:
        stored = conn.execute(select(schema.tokens.c.token_hash, schema.tokens.c.prefix)).all()
    assert [r.token_hash for r in stored] == [hash_token(token)]
    assert token not in {r.token_hash for r in stored}
    assert ac.authenticate(token) == Identity("alice", "data-scientist")
    with pytest.raises(AuthenticationError, match="pass an API token"):
        ac.authenticate(None)
    with pytest.raises(AuthenticationError, match="unknown"):
        ac.authenticate(token[:-1] + ("A" if token[-1] != "A" else "B"))
    second = ac.create_token("alice", by=Identity("alice", "data-scientist"), label="ci")
    assert second != token
    assert ac.revoke_tokens("alice", by=Identity("alice", "data-scientist")) == 2
    with pytest.raises(AuthenticationError, match="revoked"):
        ac.authenticate(second)
    actions = [e.action for e in AuditLog(engine).events()]
    assert actions == ["user.add", "token.create", "token.revoke"]


def test_only_admins_manage_users_and_disabled_users_are_locked_out(location: Location) -> None:
    ac = AccessControl(engine_for(location))
    admin = ac.local_identity()
    root_token = ac.add_user("root", "admin", by=admin)
    root = ac.authenticate(root_token)
    bob_token = ac.add_user("bob", "viewer", by=root)
    bob = ac.authenticate(bob_token)
    with pytest.raises(AccessDeniedError, match=r"bob \(viewer\) may not users.manage"):
        ac.add_user("eve", "admin", by=bob)
    with pytest.raises(AccessDeniedError):
        ac.create_token("root", by=bob)
    ac.set_disabled("bob", True, by=root)
    with pytest.raises(AuthenticationError, match="disabled"):
        ac.authenticate(bob_token)
    with pytest.raises(Exception, match="already exists"):
        ac.add_user("bob", "viewer", by=root)
    expired = ac.create_token("root", by=root, expires_at="2000-01-01T00:00:00.000000Z")
    with pytest.raises(AuthenticationError, match="expired"):
        ac.authenticate(expired)
