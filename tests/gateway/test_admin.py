"""The admin routes: active and recent alerts, and the audit trail, over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from bastion.gateway.admin import AUDIT_SCAN, add_admin_routes, recent_audit
from bastion.gateway.guards.auth import TokenAuthorizer
from bastion.gateway.oip import create_oip_app, run_in_thread
from bastion.governance.access import AccessControl
from bastion.governance.audit import AuditLog, verify_chain
from bastion.governance.db import dispose, engine_for, resolve_location
from bastion.models.sklearn import SklearnAdapter
from bastion.monitoring.alerts import Alerter

pytest.importorskip("fastapi")


@pytest.fixture
def admin(tmp_path: Path) -> Any:
    from sklearn.linear_model import LogisticRegression

    location = resolve_location(tmp_path, f"sqlite:///{tmp_path / 'r.db'}")
    engine = engine_for(location)
    access = AccessControl(engine)
    root = access.add_user("root", "admin", by=access.local_identity())
    viewer = access.add_user("v", "viewer", by=access.authenticate(root))
    log = AuditLog(engine)
    alerter = Alerter(audit=log.append, history=3)
    app = create_oip_app(
        {"m": SklearnAdapter(LogisticRegression().fit([[0.0], [1.0]], [0, 1]))},
        authorizer=TokenAuthorizer(access),
    )
    add_admin_routes(app, authorize=TokenAuthorizer(access), alerter=alerter, audit_log=log)
    with run_in_thread(app) as url:
        yield (
            url,
            {"Authorization": f"Bearer {root}"},
            {"Authorization": f"Bearer {viewer}"},
            (
                alerter,
                log,
            ),
        )
    dispose(location)


def test_alerts_route_shows_active_alerts_and_recent_notices(admin: Any) -> None:
    url, root, viewer, (alerter, _) = admin
    alerter.raise_("drift", "m@1", {"features": ["x0"]})
    alerter.raise_("extraction", "m@1:id:eve", {"queries": 120})
    alerter.clear("drift", "m@1")
    answer = httpx.get(f"{url}/v2/admin/alerts", headers=root)
    assert answer.status_code == 200
    body = answer.json()
    assert [(a["kind"], a["status"]) for a in body["active"]] == [("extraction", "firing")]
    # newest first: the drift's resolved notice names the firing notice it ends
    recent = body["recent"]
    assert [(a["kind"], a["status"]) for a in recent] == [
        ("drift", "resolved"),
        ("extraction", "firing"),
        ("drift", "firing"),
    ]
    assert recent[0]["resolves"] == recent[2]["id"]
    assert recent[1]["details"] == {"queries": 120}
    # history=3: a fourth notice pushes the oldest out
    alerter.raise_("error_spike", "gateway", {"requests": 40, "errors": 9})
    recent = httpx.get(f"{url}/v2/admin/alerts", headers=root).json()["recent"]
    assert [a["kind"] for a in recent] == ["error_spike", "drift", "extraction"]
    assert httpx.get(f"{url}/v2/admin/alerts", headers=viewer).status_code == 403
    assert httpx.get(f"{url}/v2/admin/alerts").status_code == 401


def test_audit_route_reads_the_chain_newest_first(admin: Any) -> None:
    url, root, viewer, (alerter, log) = admin
    for i in range(5):
        log.append("bastion", "serve.start", f"model:m@{i}", {"port": 8000 + i})
    alerter.raise_("drift", "m@4", {"features": ["x0"]})
    body = httpx.get(f"{url}/v2/admin/audit", params={"limit": 3}, headers=root).json()
    seq, digest = log.head()
    assert body["head"] == {"seq": seq, "hash": digest}
    assert [e["seq"] for e in body["events"]] == [seq, seq - 1, seq - 2]
    assert body["events"][0]["action"] == "alert.drift"
    assert body["events"][1]["object"] == "model:m@4"
    # each event carries its links: the client can check them against the head
    assert body["events"][0]["hash"] == digest
    assert body["events"][0]["prev_hash"] == body["events"][1]["hash"]
    only = httpx.get(
        f"{url}/v2/admin/audit", params={"action": "serve.", "limit": 2}, headers=root
    ).json()
    assert [e["object"] for e in only["events"]] == ["model:m@4", "model:m@3"]
    for bad in ({"limit": 0}, {"limit": 1001}):
        assert httpx.get(f"{url}/v2/admin/audit", params=bad, headers=root).status_code == 400
    assert httpx.get(f"{url}/v2/admin/audit", headers=viewer).status_code == 403
    assert verify_chain(log.engine).ok


def test_audit_filter_reads_a_bounded_window(tmp_path: Path) -> None:
    location = resolve_location(tmp_path, f"sqlite:///{tmp_path / 'r.db'}")
    log = AuditLog(engine_for(location))
    log.append("bastion", "alert.drift", "m@1", {})  # older than the scan window
    log.append_many([("bastion", "serve.start", f"model:m@{i}", {}) for i in range(AUDIT_SCAN)])
    assert recent_audit(log, 10, "alert.")["events"] == []
    assert len(recent_audit(log, 10, "serve.")["events"]) == 10
    dispose(location)
