"""The guards in front of the OIP app: body cap, per-address and per-token rate limits (also
shared through the real Redis by two gateway instances), authentication and roles."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from bastion.gateway.guards.auth import TokenAuthorizer
from bastion.gateway.guards.rate_limit import InMemoryLimiter, RateLimit, RedisLimiter
from bastion.gateway.oip import create_oip_app, run_in_thread
from bastion.governance.access import AccessControl
from bastion.governance.db import dispose, engine_for, resolve_location
from bastion.models.sklearn import SklearnAdapter

pytest.importorskip("fastapi")

BODY = {"inputs": [{"name": "input-0", "shape": [1, 1], "datatype": "FP64", "data": [2.0]}]}


@pytest.fixture
def parts(tmp_path: Path) -> Any:
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    model = SklearnAdapter(LogisticRegression().fit(X, [0, 0, 1, 1]))
    location = resolve_location(tmp_path, f"sqlite:///{tmp_path / 'r.db'}")
    access = AccessControl(engine_for(location))
    root = access.add_user("root", "admin", by=access.local_identity())
    viewer = access.add_user("vic", "viewer", by=access.authenticate(root))
    yield model, access, viewer
    dispose(location)


def infer(url: str, token: str | None, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{url}/v2/models/m/infer", json=BODY, headers=headers, **kw)


def test_body_cap_auth_and_rate_limits(parts: Any) -> None:
    model, access, viewer = parts
    app = create_oip_app(
        {"m": model},
        authorizer=TokenAuthorizer(access),
        max_body_bytes=2_000,
        address_limiter=InMemoryLimiter(RateLimit(rate_per_s=0.01, burst=6)),
        token_limiter=InMemoryLimiter(RateLimit(rate_per_s=0.01, burst=3)),
    )
    with run_in_thread(app) as url:
        assert httpx.get(f"{url}/v2/health/live").status_code == 200  # never limited
        big = {"inputs": [{**BODY["inputs"][0], "data": [0.0] * 1_000}]}
        too_big = httpx.post(f"{url}/v2/models/m/infer", json=big)
        assert too_big.status_code == 413  # before authentication: no token was needed
        assert "limit of 2000 bytes" in too_big.json()["error"]
        assert infer(url, None).status_code == 401
        statuses = [infer(url, viewer).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]  # the identity's burst of 3
        limited = infer(url, viewer)
        assert limited.status_code == 429
        assert int(limited.headers["Retry-After"]) >= 1
        # the address's own burst of 6 is spent too, so even token guessing is throttled
        assert infer(url, "bst_guess").status_code == 429


@pytest.mark.redis
def test_two_gateways_share_one_limit_through_redis(parts: Any) -> None:
    url_env = os.environ.get("BASTION_TEST_REDIS_URL")
    if not url_env:
        pytest.skip("BASTION_TEST_REDIS_URL is not set")
    redis = pytest.importorskip("redis")
    model, access, viewer = parts
    prefix = f"bastion-test:{uuid.uuid4().hex}:"
    limit = RateLimit(rate_per_s=0.01, burst=5)

    def gateway() -> Any:
        limiter = RedisLimiter(limit, redis.Redis.from_url(url_env), prefix=prefix)
        return create_oip_app(
            {"m": model}, authorizer=TokenAuthorizer(access), token_limiter=limiter
        )

    try:
        with run_in_thread(gateway()) as one, run_in_thread(gateway()) as two:
            codes = [infer(url, viewer).status_code for url in (one, two) * 4]
        assert codes.count(200) == 5  # one burst between the two replicas, not two
        assert codes.count(429) == 3
    finally:
        client = redis.Redis.from_url(url_env)
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
