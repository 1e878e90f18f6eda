"""The gateway's token and role checks, with the registry's tokens."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.gateway.guards.auth import GuardRejectedError, TokenAuthorizer
from bastion.governance.access import PERMISSIONS, ROLES, AccessControl, Identity
from bastion.governance.db import dispose, engine_for, resolve_location


@pytest.fixture
def access(tmp_path: Path) -> AccessControl:
    location = resolve_location(tmp_path, f"sqlite:///{tmp_path / 'r.db'}")
    yield AccessControl(engine_for(location))
    dispose(location)


def test_tokens_roles_and_the_cache(access: AccessControl) -> None:
    now = [0.0]
    auth = TokenAuthorizer(access, cache_ttl_s=5.0, clock=lambda: now[0])
    root = access.add_user("root", "admin", by=access.local_identity())
    admin = access.authenticate(root)
    viewer = access.add_user("vic", "viewer", by=admin)
    assert auth(f"Bearer {viewer}", "serve.infer") == Identity("vic", "viewer")
    with pytest.raises(GuardRejectedError) as denied:
        auth(f"Bearer {viewer}", "serve.admin")
    assert denied.value.status == 403
    assert "vic (viewer) may not serve.admin" in denied.value.message
    for header in (None, "", "Basic abc", "Bearer ", f"Bearer {viewer}x"):
        with pytest.raises(GuardRejectedError) as missing:
            auth(header, "serve.infer")
        assert missing.value.status == 401
        assert ("WWW-Authenticate", "Bearer") in missing.value.headers
    # a revoked token keeps working for at most the cache's lifetime
    access.revoke_tokens("vic", by=admin)
    assert auth(f"Bearer {viewer}", "serve.infer").name == "vic"
    now[0] = 6.0
    with pytest.raises(GuardRejectedError, match="revoked"):
        auth(f"Bearer {viewer}", "serve.infer")


@pytest.mark.parametrize("role", ROLES)
def test_the_role_x_endpoint_matrix(access: AccessControl, role: str) -> None:
    root = access.add_user("root", "admin", by=access.local_identity())
    token = access.add_user(f"u-{role}", role, by=access.authenticate(root))
    auth = TokenAuthorizer(access)
    for operation in ("serve.infer", "serve.feedback", "serve.metrics", "serve.admin"):
        if role in PERMISSIONS[operation]:
            assert auth(f"Bearer {token}", operation).role == role
        else:
            with pytest.raises(GuardRejectedError) as denied:
                auth(f"Bearer {token}", operation)
            assert denied.value.status == 403
