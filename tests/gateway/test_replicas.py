"""Stateless replicas: two ``bastion serve`` processes on one PostgreSQL registry and one Redis
hold one rate limit between them and write one audit chain (real servers, real processes)."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import httpx
import pytest

from bastion.governance.audit import verify_chain
from bastion.governance.db import engine_for, resolve_location
from bastion.governance.registry import Registry

from .conftest import add_users, cli_environment, make_release, serving

pytest.importorskip("fastapi")

BODY = {"inputs": [{"name": "input-0", "shape": [1, 1], "datatype": "FP64", "data": [3.0]}]}


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
def test_two_serve_processes_hold_one_rate_limit_and_one_audit_chain(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    pg_schema_url: str,
    redis_prefix: str,
) -> None:
    from bastion.cli.main import run

    redis_url = os.environ["BASTION_TEST_REDIS_URL"]  # set: redis_prefix skips otherwise
    env = cli_environment(tmp_path / "home", monkeypatch, database_url=pg_schema_url)
    assert run(["keys", "generate"]) == 0
    release = make_release(tmp_path / "r1", None)
    assert run(["registry", "sign", str(release)]) == 0
    assert run(["registry", "register", "m", str(release)]) == 0
    assert run(["registry", "alias", "m@1", "staging"]) == 0
    root, client = add_users(run, capsys)

    rate, burst, duration_s = 2.0, 5, 3.0
    serve_env = {
        **env,
        "BASTION_TOKEN": root,
        "BASTION_REDIS_URL": redis_url,
        "BASTION_REDIS_PREFIX": redis_prefix,
    }
    # The per-address limit (every request comes from 127.0.0.1) is set out of the way: the
    # per-identity limit is the one under test.
    args = ["--watch-s", "0", "--rate", "10000", "--token-rate", str(rate), "--burst", str(burst)]
    answers: list[tuple[int, httpx.Response]] = []
    with serving("m@staging", serve_env, args, replicas=2, logs=tmp_path / "logs") as servers:
        auth = {"Authorization": f"Bearer {client}"}
        with httpx.Client(timeout=10, headers=auth) as http:
            started = time.monotonic()
            while time.monotonic() - started < duration_s:
                which = len(answers) % 2  # alternate, as a round-robin load balancer would
                url = f"{servers[which].url}/v2/models/m/infer"
                answers.append((which, http.post(url, json=BODY)))
            elapsed = time.monotonic() - started

    codes = [(which, answer.status_code) for which, answer in answers]
    assert {code for _, code in codes} == {200, 429}, codes
    allowed = sum(code == 200 for _, code in codes)
    # One bucket: ``burst`` at once, then ``rate`` per second over the (client-side, so wider)
    # window; never more. Requests arrive every few milliseconds, so each refilled token is
    # taken almost at once: at most a token or two short at the end of the window. Two
    # independent buckets would have let through about twice as many.
    ceiling = math.floor(burst + rate * elapsed + 1e-6)
    assert burst + math.floor(rate * elapsed) - 2 <= allowed <= ceiling, (allowed, elapsed)
    for which in (0, 1):  # each replica both served and refused
        assert {code for w, code in codes if w == which} == {200, 429}, which
    for _, answer in answers:
        if answer.status_code == 200:
            assert answer.json()["outputs"][0]["data"] == [1]
        else:
            assert int(answer.headers["Retry-After"]) >= 1

    # One audit trail in PostgreSQL: both processes appended to the same, unbroken chain.
    registry = Registry.open(token=root)
    starts = [e for e in registry.audit.events() if e.action == "serve.start"]
    assert sorted(e.details["port"] for e in starts) == sorted(s.port for s in servers)
    assert {e.object for e in starts} == {"model:m@1"}
    verification = verify_chain(engine_for(resolve_location()))
    assert verification.ok, verification.problem
    assert verification.events == len(list(registry.audit.events()))
