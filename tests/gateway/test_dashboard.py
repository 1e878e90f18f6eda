"""The gateway dashboard: its JSON, its security headers, and the page in a real browser."""

from __future__ import annotations

import base64
import hashlib
import math
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("prometheus_client")

import httpx

from bastion.data.profile import Profile
from bastion.exceptions import ConfigError
from bastion.gateway.dashboard import DASHBOARD_CSP, add_dashboard, alerts_from, histogram_quantile
from bastion.gateway.guards.auth import GuardRejectedError
from bastion.gateway.metrics import GatewayMetrics
from bastion.gateway.oip import create_oip_app, run_in_thread
from bastion.gateway.service import GatewayService, WatchOptions
from bastion.models.sklearn import SklearnAdapter
from bastion.monitoring.alerts import Alerter

TOKEN = "dashboard-viewer-token"
CHROMIUM = "/usr/bin/chromium"
XSS = '<img src=x onerror="window.__xss=1">'


@dataclass
class Gateway:
    url: str
    service: GatewayService
    alerter: Alerter
    metrics: GatewayMetrics
    rows: np.ndarray  # held-out rows, feature order of the model


def _authorize(header: str | None, operation: str) -> str:
    if header != f"Bearer {TOKEN}":
        raise GuardRejectedError(401, "missing or invalid bearer token", guard="auth")
    return "viewer"


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    frame = load_breast_cancer(as_frame=True).frame.rename(columns={"target": "diagnosis"})
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    train = frame.sample(frac=0.6, random_state=0)
    test = frame.drop(train.index)
    features = [c for c in frame.columns if c != "diagnosis"]
    report = {
        "datasets": [{"name": "train", "features": features, "target": "diagnosis"}],
        "profiles": {"train": Profile.from_frame(train, seed=0).summary(5)},
    }
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    clf.fit(train[features].to_numpy(), train["diagnosis"].to_numpy())
    metrics = GatewayMetrics()
    alerter = Alerter(on_fire=metrics.alert)
    options = WatchOptions(ood_mode="off", extraction="off", min_rows_for_drift=50)
    service = GatewayService(metrics, alerter, options)
    service.serve("cancer", "cancer@1", report)
    app = create_oip_app(
        {"cancer": SklearnAdapter(clf)},
        authorizer=_authorize,
        on_predict=service.on_predict,
        monitor_snapshot=service.snapshot,
        metrics=metrics,
    )
    add_dashboard(
        app,
        models=lambda: sorted(app.state.models),
        snapshot=service.snapshot,
        metrics_snapshot=metrics.snapshot,
        alerts=alerts_from(alerter),
        authorize=_authorize,
        psi_threshold=options.psi_threshold,
    )
    with run_in_thread(app) as url:
        yield Gateway(url, service, alerter, metrics, test[features].to_numpy())
    alerter.close()


def _infer(http: httpx.Client, X: np.ndarray) -> None:
    body = {
        "inputs": [
            {"name": "input-0", "shape": list(X.shape), "datatype": "FP64", "data": X.tolist()}
        ]
    }
    answer = http.post("/v2/models/cancer/infer", json=body)
    assert answer.status_code == 200, answer.text


def _shifted_traffic(gw: Gateway, n_requests: int) -> None:
    """``n_requests`` batches of 10 rows whose mean_radius grew by 60% (drift on feature 0)."""
    X = gw.rows.copy()
    X[:, 0] *= 1.6
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=gw.url, headers=headers) as http:
        for i in range(n_requests):
            _infer(http, X[(10 * i) % 200 : (10 * i) % 200 + 10])


# -- numbers and HTTP --------------------------------------------------------------------------


def test_histogram_quantile_interpolates_inside_the_bucket() -> None:
    buckets = ((0.1, 2.0), (0.2, 4.0), (math.inf, 4.0))
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.75, buckets) == pytest.approx(0.15)
    assert histogram_quantile(1.0, buckets) == pytest.approx(0.2)
    # every observation above the largest finite bound: that bound is all one can say
    assert histogram_quantile(0.5, ((0.1, 0.0), (math.inf, 3.0))) == pytest.approx(0.1)
    assert histogram_quantile(0.5, ((0.1, 0.0), (math.inf, 0.0))) is None
    with pytest.raises(ConfigError, match="q must be in"):
        histogram_quantile(1.5, buckets)


def test_page_is_public_with_a_strict_policy_and_data_needs_the_role(gateway: Gateway) -> None:
    with httpx.Client(base_url=gateway.url) as http:
        page = http.get("/dashboard")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert csp == DASHBOARD_CSP
        assert "default-src 'none'" in csp
        assert "connect-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert "unsafe-eval" not in csp
        # the hash in the policy is the hash of the script actually served
        script = re.search(r"<script>(.*?)</script>", page.text, re.S)
        assert script is not None
        digest = base64.b64encode(hashlib.sha256(script.group(1).encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp
        assert "innerHTML" not in page.text  # data goes into the DOM as text only
        assert http.get("/dashboard/data").status_code == 401
        wrong = http.get("/dashboard/data", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401


def test_data_reports_rate_latency_drift_and_alerts(gateway: Gateway) -> None:
    _shifted_traffic(gateway, 12)
    gateway.service.evaluate()  # 120 shifted rows >= min_rows_for_drift: a drift alert
    with httpx.Client(base_url=gateway.url) as http:
        data = http.get("/dashboard/data", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert data["psi_threshold"] == 0.2
    (model,) = data["models"]
    assert model["name"] == "cancer"
    traffic = model["traffic"]
    assert traffic["requests_total"] == 12
    assert traffic["requests_in_window"] == 12
    assert traffic["errors_total"] == 0
    assert traffic["rate_per_s"] == pytest.approx(12 / traffic["window_s"], rel=1e-3)
    p50, p95 = traffic["latency_ms"]["p50"], traffic["latency_ms"]["p95"]
    assert 0 < p50 <= p95 <= 5000
    drift = model["drift"]
    assert drift["release"] == "cancer@1"
    assert drift["n_rows"] == 120
    assert "mean_radius" in drift["drifted_features"]
    assert drift == gateway.service.snapshot("cancer")  # the service's numbers, unchanged
    kinds = {(a["kind"], a["subject"]) for a in data["alerts"]}
    assert kinds == {("drift", "cancer@1")}


# -- the page in Chromium ----------------------------------------------------------------------


def test_dashboard_renders_and_follows_traffic_in_chromium(gateway: Gateway) -> None:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip(f"{CHROMIUM} is not installed")
    sync_api = pytest.importorskip("playwright.sync_api")

    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page()
            page.on(
                "console",
                lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None,
            )
            page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
            page.goto(gateway.url + "/dashboard")
            assert page.title() == "Bastion gateway dashboard"
            assert "paste an API token" in page.locator("#status").inner_text()

            page.fill("#token", TOKEN)
            page.click("#auth button[type=submit]")
            section = page.locator('section.model[data-model="cancer"]')
            section.wait_for(timeout=10_000)
            for chart in ("rate-chart", "latency-chart", "drift-chart"):
                assert section.locator(f"svg.{chart}").count() == 1
            assert section.locator(".requests-total").inner_text() == "0"
            bars_before = section.locator("svg.drift-chart rect.bar").count()
            assert bars_before == 0  # no traffic yet: the monitor has no rows
            assert section.locator("svg.drift-chart line.threshold").count() == 1
            rate_before = section.locator("svg.rate-chart path.series").get_attribute("d")

            _shifted_traffic(gateway, 20)
            gateway.service.evaluate()
            gateway.alerter.raise_("extraction", XSS, {"note": "</div><script>x()</script>"})

            page.wait_for_function(
                "() => document.querySelector('.requests-total').textContent === '20'",
                timeout=10_000,
            )
            # the next poll has drawn the new state
            page.wait_for_function(
                "() => document.querySelectorAll('svg.drift-chart rect.bar').length === 30",
                timeout=10_000,
            )
            rate_after = section.locator("svg.rate-chart path.series").get_attribute("d")
            assert rate_after
            assert rate_after != rate_before
            assert rate_after.count("L") >= 1  # a line through at least two polls
            p95 = section.locator("svg.latency-chart path.p95").get_attribute("d")
            assert p95
            assert p95.startswith("M")
            drifted = section.locator('svg.drift-chart rect.bar[fill="#b91c1c"]').count()
            snapshot = gateway.service.snapshot("cancer")
            assert drifted == len(snapshot["drifted_features"]) >= 1

            page.wait_for_function(
                "() => document.getElementById('alerts-count').textContent === '2'",
                timeout=10_000,
            )
            alerts = page.locator("#alerts").inner_text()
            assert "drift" in alerts
            assert "cancer@1" in alerts
            assert XSS in alerts  # shown as text ...
            assert page.locator("#alerts img, #alerts script").count() == 0  # ... never parsed
            assert page.evaluate("() => window.__xss") is None
        finally:
            browser.close()
    assert errors == []
