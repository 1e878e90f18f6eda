"""The gateway's role x endpoint matrix, over HTTP, with the registry's tokens."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from bastion.gateway.admin import add_admin_routes
from bastion.gateway.dashboard import add_dashboard
from bastion.gateway.guards.auth import TokenAuthorizer
from bastion.gateway.metrics import GatewayMetrics
from bastion.gateway.oip import create_oip_app, run_in_thread
from bastion.governance.access import PERMISSIONS, ROLES, AccessControl
from bastion.governance.audit import AuditLog
from bastion.governance.db import dispose, engine_for, resolve_location
from bastion.models.sklearn import SklearnAdapter
from bastion.monitoring.alerts import Alerter

pytest.importorskip("fastapi")

BODY = {"id": "r", "inputs": [{"name": "input-0", "shape": [1, 1], "datatype": "FP64",
                               "data": [2.0]}]}  # fmt: skip
# endpoint -> (method, path, json body, operation it needs)
ENDPOINTS: dict[str, tuple[str, str, Any, str]] = {
    "metadata": ("GET", "/v2/models/m", None, "serve.infer"),
    "ready": ("GET", "/v2/models/m/ready", None, "serve.infer"),
    "infer": ("POST", "/v2/models/m/infer", BODY, "serve.infer"),
    "feedback": ("POST", "/v2/models/m/feedback", {"id": "r", "labels": [1]}, "serve.feedback"),
    "monitor": ("GET", "/v2/models/m/monitor", None, "serve.metrics"),
    "metrics": ("GET", "/metrics", None, "serve.metrics"),
    "dashboard data": ("GET", "/dashboard/data", None, "serve.metrics"),
    "extraction release": (
        "POST",
        "/v2/models/m/extraction/release",
        {"client": "id:eve"},
        "serve.admin",
    ),
    "admin alerts": ("GET", "/v2/admin/alerts", None, "serve.admin"),
    "admin audit": ("GET", "/v2/admin/audit?limit=5", None, "serve.admin"),
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Any:
    home = tmp_path_factory.mktemp("matrix")
    location = resolve_location(home, f"sqlite:///{home / 'r.db'}")
    engine = engine_for(location)
    access = AccessControl(engine)
    root = access.add_user("root", "admin", by=access.local_identity())
    admin = access.authenticate(root)
    tokens = {role: access.add_user(f"u-{role}", role, by=admin) for role in ROLES}
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    authorizer = TokenAuthorizer(access)
    metrics = GatewayMetrics()
    app = create_oip_app(
        {"m": SklearnAdapter(LogisticRegression().fit(X, [0, 0, 1, 1]))},
        authorizer=authorizer,
        on_predict=lambda *_: None,
        on_feedback=lambda _n, _rid, labels: len(labels),
        monitor_snapshot=lambda _n: {"monitoring": False},
        on_release=lambda _n, _client, _by: False,
        metrics=metrics,
    )
    add_dashboard(
        app,
        models=lambda: ["m"],
        snapshot=lambda _n: {"monitoring": False},
        metrics_snapshot=metrics.snapshot,
        alerts=None,
        authorize=authorizer,
    )
    add_admin_routes(app, authorize=authorizer, alerter=Alerter(), audit_log=AuditLog(engine))
    with run_in_thread(app) as url:
        yield url, tokens
    dispose(location)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
def test_role_x_endpoint(gateway: Any, role: str, endpoint: str) -> None:
    url, tokens = gateway
    method, path, body, operation = ENDPOINTS[endpoint]
    headers = {"Authorization": f"Bearer {tokens[role]}"}
    answer = httpx.request(method, url + path, json=body, headers=headers)
    expected = 200 if role in PERMISSIONS[operation] else 403
    assert answer.status_code == expected, answer.text
    anonymous = httpx.request(method, url + path, json=body)
    assert anonymous.status_code == 401
