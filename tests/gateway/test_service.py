"""The watch loop around a served release: drift and OOD-burst alerts, OOD blocking, metrics."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bastion.data.profile import Profile
from bastion.gateway.guards.auth import GuardRejectedError
from bastion.gateway.guards.rate_limit import RateLimit, RedisLimiter
from bastion.gateway.metrics import GatewayMetrics
from bastion.gateway.oip import CURRENT_CLIENT, create_oip_app, run_in_thread
from bastion.gateway.service import GatewayService, WatchOptions
from bastion.models.sklearn import SklearnAdapter
from bastion.monitoring.alerts import Alerter

pytest.importorskip("fastapi")
REDIS_URL = os.environ.get("BASTION_TEST_REDIS_URL")


@pytest.fixture(scope="module")
def release() -> dict[str, Any]:
    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    frame = frame.rename(columns={"target": "diagnosis"})
    train = frame.sample(frac=0.6, random_state=0)
    test = frame.drop(train.index)
    features = [c for c in frame.columns if c != "diagnosis"]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(train[features].to_numpy(), train["diagnosis"])
    report = {
        "datasets": [{"name": "train", "features": features, "target": "diagnosis"}],
        "profiles": {"train": Profile.from_frame(train, seed=0).summary(5)},
    }
    return {"model": model, "report": report, "test": test[features].to_numpy()}


def serve(
    release: dict[str, Any], ood_mode: Any, **watch: Any
) -> tuple[Any, GatewayService, list[Any]]:
    audited: list[Any] = []
    metrics = GatewayMetrics()
    alerter = Alerter(audit=lambda *event: audited.append(event), on_fire=metrics.alert)
    clock = watch.pop("clock", time.monotonic)
    options = WatchOptions(
        ood_mode=ood_mode, min_rows_for_drift=50, ood_burst_min_requests=3, **watch
    )
    service = GatewayService(metrics, alerter, options, clock=clock)
    service.serve("m", "m@1", release["report"])
    app = create_oip_app(
        {"m": SklearnAdapter(release["model"])},
        authorizer=bearer_names,
        input_schema=service.input_check("m"),
        on_predict=service.on_predict,
        on_feedback=service.on_feedback,
        monitor_snapshot=service.snapshot,
        client_guard=service.admit,
        on_release=service.release,
        metrics=metrics,
    )
    return app, service, audited


def bearer_names(header: str | None, operation: str) -> str:
    """Test authorizer: the bearer token is the identity's name; only "admin" administers."""
    name = (header or "").removeprefix("Bearer ").strip()
    if not name:
        raise GuardRejectedError(401, "missing bearer token")
    if operation in ("serve.admin", "serve.metrics") and name != "admin":
        raise GuardRejectedError(403, f"{name} may not {operation}")
    return name


def as_(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {name}"}


def body(rows: np.ndarray) -> dict[str, Any]:
    return {"inputs": [{"name": "input-0", "shape": list(rows.shape), "datatype": "FP64",
                        "data": rows.ravel().tolist()}]}  # fmt: skip


def test_drift_fires_an_alert_and_metrics_show_it(release: dict[str, Any]) -> None:
    app, service, audited = serve(release, "off")
    X = release["test"]
    with run_in_thread(app) as url:
        assert (
            httpx.post(f"{url}/v2/models/m/infer", headers=as_("admin"), json=body(X)).status_code
            == 200
        )
        service.evaluate()
        assert not [e for e in audited if e[1] == "alert.drift"]  # same distribution
        shifted = X.copy()
        shifted[:, 0] *= 1.8
        for _ in range(3):
            assert (
                httpx.post(
                    f"{url}/v2/models/m/infer", headers=as_("admin"), json=body(shifted)
                ).status_code
                == 200
            )
        service.evaluate()
        service.evaluate()  # deduplicated while the condition lasts
        drift = [e for e in audited if e[1] == "alert.drift"]
        assert len(drift) == 1
        assert drift[0][2] == "m@1"
        assert "mean_radius" in drift[0][3]["details"]["features"]
        text = httpx.get(f"{url}/metrics", headers=as_("admin")).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = families["bastion_gateway_requests"].samples
    assert any(s.labels.get("route") == "/v2/models/{name}/infer" for s in requests)
    drift_gauges = [
        s for s in families["bastion_drift_score"].samples
        if s.labels["feature"] == "mean_radius" and s.labels["statistic"] == "psi"
    ]  # fmt: skip
    assert drift_gauges
    assert drift_gauges[0].value > 0.2
    assert families["bastion_alerts"].samples[0].value >= 1


def test_ood_block_mode_answers_422_and_counts_the_rejection(release: dict[str, Any]) -> None:
    app, service, _ = serve(release, "block")
    detector = service._served["m"].ood
    typical = release["test"][~detector.score(release["test"]).anomalous]
    X = typical[:5].copy()
    X[2, 3] = X[:, 3].max() * 50  # far outside the reference range
    with run_in_thread(app) as url:
        refused = httpx.post(f"{url}/v2/models/m/infer", headers=as_("admin"), json=body(X))
        assert refused.status_code == 422
        assert "row 2" in refused.json()["error"]
        text = httpx.get(f"{url}/metrics", headers=as_("admin")).text
    rejections = {
        tuple(sorted(s.labels.items())): s.value
        for f in text_string_to_metric_families(text)
        if f.name == "bastion_gateway_rejections"
        for s in f.samples
        if s.name.endswith("_total")
    }
    assert rejections[(("guard", "ood"), ("status", "422"))] == 1


def test_an_ood_burst_raises_an_alert_in_flag_mode(release: dict[str, Any]) -> None:
    app, service, audited = serve(release, "flag")
    rng = np.random.default_rng(0)
    noise = release["test"][:20] + rng.normal(0, 3, (20, 30)) * release["test"].std(axis=0)
    with run_in_thread(app) as url:
        for _ in range(4):
            assert (
                httpx.post(
                    f"{url}/v2/models/m/infer", headers=as_("admin"), json=body(noise)
                ).status_code
                == 200
            )
        service.evaluate()
    assert [e for e in audited if e[1] == "alert.ood_burst"]
    assert pd.notna(service.snapshot("m")["n_rows"])


def test_an_error_spike_raises_and_clears(release: dict[str, Any]) -> None:
    _app, service, audited = serve(release, "off")
    metrics = service.metrics
    for status in [200] * 15 + [500] * 10:
        metrics.observe_request("m", "/v2/models/{name}/infer", status, 0.01)
    service.evaluate()
    spikes = [e for e in audited if e[1] == "alert.error_spike"]
    assert len(spikes) == 1
    assert spikes[0][3]["details"] == {"requests": 25.0, "errors": 10.0}
    for _ in range(30):
        metrics.observe_request("m", "/v2/models/{name}/infer", 200, 0.01)
    service.evaluate()  # a calm interval ends the condition: the next spike fires again
    for _ in range(25):
        metrics.observe_request("m", "/v2/models/{name}/infer", 503, 0.01)
    service.evaluate()
    assert len([e for e in audited if e[1] == "alert.error_spike"]) == 2


def test_the_worker_batches_deferred_work_and_feedback_waits_for_it(
    release: dict[str, Any],
) -> None:
    _app, service, audited = serve(release, "flag")
    X = release["test"]
    service.start()
    try:
        for i in range(20):
            service.on_predict("m", None, X[i : i + 1], np.array([1]), f"r{i}")
        # feedback drains the queue first, so a prediction still queued is found
        assert service.on_feedback("m", "r19", [1]) == 1
        snap = service.snapshot("m")
        assert snap["n_rows"] == 20
        assert snap["accuracy"] == 1.0
    finally:
        service.stop()
    assert not [e for e in audited if e[1] == "alert.ood_burst"]


def test_ood_profile_picks_the_reference_and_an_unknown_one_is_refused(
    release: dict[str, Any],
) -> None:
    from bastion.exceptions import ConfigError
    from bastion.gateway.guards.ood import OODDetector

    report = dict(release["report"])
    train = report["profiles"]["train"]
    narrow = {"columns": {k: {**v, "max": v["min"]} if v.get("kind") == "numeric" else v
                          for k, v in train["columns"].items()}}  # fmt: skip
    report["profiles"] = {"train": train, "narrow": narrow}
    alerter = Alerter(audit=lambda *_: None)
    default = GatewayService(GatewayMetrics(), alerter, WatchOptions())
    default.serve("m", "m@1", report)
    chosen = GatewayService(GatewayMetrics(), alerter, WatchOptions(ood_profile="narrow"))
    chosen.serve("m", "m@1", report)
    X = release["test"][:20]
    expected = OODDetector.from_report(report, profile="narrow").score(X).anomalous
    assert chosen._served["m"].ood.score(X).anomalous.tolist() == expected.tolist()
    assert expected.sum() > default._served["m"].ood.score(X).anomalous.sum()
    unknown = GatewayService(GatewayMetrics(), alerter, WatchOptions(ood_profile="nope"))
    with pytest.raises(ConfigError, match=r"available: \['narrow', 'train'\]"):
        unknown.serve("m", "m@1", report)
    assert "m" not in unknown._served


# -- extraction: a flagged client is throttled or blocked, a benign one is not ----------------


def t_rnd(seeds: np.ndarray, step: np.ndarray, seed: int = 0) -> Iterator[np.ndarray]:
    """A T-RND extraction stream (Juuti et al. 2019), 10 rows a request: the seeds, then each
    round one random-sign step of ``step`` per feature from every row so far."""
    rng = np.random.default_rng(seed)
    rows = seeds
    yield rows
    while True:
        new = rows + step * rng.choice([-1.0, 1.0], size=rows.shape)
        for i in range(0, len(new), 10):
            yield new[i : i + 10]
        rows = np.vstack([rows, new])


def flag_by_attacking(url: str, service: GatewayService, X: np.ndarray, who: str = "eve") -> int:
    """Send the attacker's stream until the detector flags it; the requests it took."""
    stream = t_rnd(X[:10], 0.05 * X.std(axis=0))
    for n in range(1, 61):
        answer = httpx.post(f"{url}/v2/models/m/infer", headers=as_(who), json=body(next(stream)))
        assert answer.status_code == 200, answer.text  # not refused before being flagged
        if service.flagged("m"):
            return n
    raise AssertionError("the attacker was never flagged")


def rejections(url: str) -> dict[tuple[str, str], float]:
    text = httpx.get(f"{url}/metrics", headers=as_("admin")).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    return {
        (s.labels["guard"], s.labels["status"]): s.value
        for s in families["bastion_gateway_rejections"].samples
        if s.name.endswith("_total")
    }


def test_a_flagged_client_is_throttled_and_a_benign_one_is_not(release: dict[str, Any]) -> None:
    app, service, audited = serve(release, "off", extraction="throttle", extraction_rate=0.01)
    X = release["test"]
    with run_in_thread(app) as url:
        took = flag_by_attacking(url, service, X)
        assert 10 <= took <= 20  # PRADA needs > 100 distances: 11 requests of 10 rows
        alerts = [e for e in audited if e[1] == "alert.extraction"]
        assert [a[2] for a in alerts] == ["m@1:id:eve"]
        assert alerts[0][3]["details"]["action"] == "throttle"
        # the bucket holds one request (burst 1), then 0.01 requests per second
        infer = f"{url}/v2/models/m/infer"
        assert httpx.post(infer, headers=as_("eve"), json=body(X[:1])).status_code == 200
        refused = httpx.post(infer, headers=as_("eve"), json=body(X[:1]))
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "100"
        # a benign client sending every held-out row, 10 a request, is neither flagged nor slowed
        for i in range(0, len(X), 10):
            answer = httpx.post(infer, headers=as_("bob"), json=body(X[i : i + 10]))
            assert answer.status_code == 200
        assert service.flagged("m") == 1
        status = service._served["m"].extraction.status("id:bob")
        assert status.n_queries == len(X)
        assert not status.flagged
        assert rejections(url)[("extraction", "429")] == 1
        # only an administrator lifts the flag; it resolves the alert and the client is free
        release_url = f"{url}/v2/models/m/extraction/release"
        assert httpx.post(release_url, headers=as_("bob"), json={"client": "id:eve"}).is_error
        lifted = httpx.post(release_url, headers=as_("admin"), json={"client": "id:eve"})
        assert lifted.json() == {"client": "id:eve", "released": True}
        again = httpx.post(release_url, headers=as_("admin"), json={"client": "id:eve"})
        assert again.json()["released"] is False
        assert httpx.post(release_url, headers=as_("admin"), json={}).status_code == 400
        assert httpx.post(infer, headers=as_("eve"), json=body(X[:1])).status_code == 200
    resolved = [e for e in audited if e[1] == "alert.resolved"]
    assert len(resolved) == 1
    assert resolved[0][2] == "m@1:id:eve"
    assert resolved[0][3]["details"] == {"reason": "released", "by": "id:admin"}
    assert service.flagged("m") == 0


def test_block_mode_refuses_a_flagged_client_with_403(release: dict[str, Any]) -> None:
    app, service, _ = serve(release, "off", extraction="block")
    X = release["test"]
    with run_in_thread(app) as url:
        flag_by_attacking(url, service, X)
        infer = f"{url}/v2/models/m/infer"
        refused = httpx.post(infer, headers=as_("eve"), json=body(X[:1]))
        assert refused.status_code == 403
        assert "extraction" in refused.json()["error"]
        assert httpx.post(infer, headers=as_("bob"), json=body(X[:10])).status_code == 200
        assert rejections(url)[("extraction", "403")] == 1


def test_alert_mode_only_alerts_and_flags_lapse_when_the_client_goes_quiet(
    release: dict[str, Any],
) -> None:
    now = [0.0]
    app, service, audited = serve(
        release, "off", extraction="alert", extraction_idle_s=600.0, clock=lambda: now[0]
    )
    X = release["test"]
    with run_in_thread(app) as url:
        flag_by_attacking(url, service, X)
        for _ in range(3):  # alert mode: the flagged client is still served
            answer = httpx.post(f"{url}/v2/models/m/infer", headers=as_("eve"), json=body(X[:5]))
            assert answer.status_code == 200
    now[0] = 500.0
    service.evaluate()
    assert service.flagged("m") == 1  # quiet for 500 s of 600: still flagged
    now[0] = 1200.0
    service.evaluate()
    assert service.flagged("m") == 0
    resolved = [e for e in audited if e[1] == "alert.resolved"]
    assert [(e[2], e[3]["details"]) for e in resolved] == [("m@1:id:eve", {"reason": "expired"})]


def test_the_flag_set_is_capped(release: dict[str, Any]) -> None:
    _app, service, audited = serve(release, "off", extraction="alert", extraction_max_clients=2)
    flags = service._flags["m"]
    for client in ("a", "b", "c"):
        flags.add(client, f"m@1:{client}")
        service.alerter.raise_("extraction", f"m@1:{client}")
    assert len(flags) == 2
    service.evaluate()  # the dropped flag's alert is resolved
    assert [e[2] for e in audited if e[1] == "alert.resolved"] == ["m@1:a"]


@pytest.mark.skipif(not REDIS_URL, reason="BASTION_TEST_REDIS_URL is not set")
def test_replicas_share_the_throttle_through_redis(release: dict[str, Any]) -> None:
    assert REDIS_URL is not None
    limiter = RedisLimiter.from_url(
        REDIS_URL, RateLimit(0.01, 1), prefix=f"bastion-test:{uuid.uuid4().hex}:"
    )
    replicas = []
    for _ in range(2):
        options = WatchOptions(ood_mode="off", extraction="throttle", extraction_rate=0.01)
        service = GatewayService(GatewayMetrics(), Alerter(), options, throttle=limiter)
        service.serve("m", "m@1", release["report"])
        replicas.append(service)
    stream = t_rnd(release["test"][:10], 0.05 * release["test"].std(axis=0))
    for _ in range(20):
        batch = next(stream)
        labels = release["model"].predict(batch)
        for n, service in enumerate(replicas):
            # each replica's detector sees the client's traffic (a sticky load balancer
            # would send it all to one; here both are flagged)
            token = CURRENT_CLIENT.set("id:eve")
            try:
                service.on_predict("m", None, batch, labels, f"r{n}")
            finally:
                CURRENT_CLIENT.reset(token)
    assert all(s.flagged("m") == 1 for s in replicas)
    replicas[0].admit("m", "id:eve")  # the one request the shared bucket holds
    with pytest.raises(GuardRejectedError) as refused:
        replicas[1].admit("m", "id:eve")  # the other replica finds the bucket empty
    assert refused.value.status == 429
    assert refused.value.guard == "extraction"
    replicas[1].admit("m", "id:bob")  # not flagged: never touches the throttle
