"""The watch loop around a served release: drift and OOD-burst alerts, OOD blocking, metrics."""

from __future__ import annotations

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
from bastion.gateway.metrics import GatewayMetrics
from bastion.gateway.oip import create_oip_app, run_in_thread
from bastion.gateway.service import GatewayService, WatchOptions
from bastion.models.sklearn import SklearnAdapter
from bastion.monitoring.alerts import Alerter

pytest.importorskip("fastapi")


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


def serve(release: dict[str, Any], ood_mode: Any) -> tuple[Any, GatewayService, list[Any]]:
    audited: list[Any] = []
    metrics = GatewayMetrics()
    alerter = Alerter(audit=lambda *event: audited.append(event), on_fire=metrics.alert)
    options = WatchOptions(ood_mode=ood_mode, min_rows_for_drift=50, ood_burst_min_requests=3)
    service = GatewayService(metrics, alerter, options)
    service.serve("m", "m@1", release["report"])
    app = create_oip_app(
        {"m": SklearnAdapter(release["model"])},
        input_schema=service.input_check("m"),
        on_predict=service.on_predict,
        on_feedback=service.on_feedback,
        monitor_snapshot=service.snapshot,
        metrics=metrics,
    )
    return app, service, audited


def body(rows: np.ndarray) -> dict[str, Any]:
    return {"inputs": [{"name": "input-0", "shape": list(rows.shape), "datatype": "FP64",
                        "data": rows.ravel().tolist()}]}  # fmt: skip


def test_drift_fires_an_alert_and_metrics_show_it(release: dict[str, Any]) -> None:
    app, service, audited = serve(release, "off")
    X = release["test"]
    with run_in_thread(app) as url:
        assert httpx.post(f"{url}/v2/models/m/infer", json=body(X)).status_code == 200
        service.evaluate()
        assert not [e for e in audited if e[1] == "alert.drift"]  # same distribution
        shifted = X.copy()
        shifted[:, 0] *= 1.8
        for _ in range(3):
            assert httpx.post(f"{url}/v2/models/m/infer", json=body(shifted)).status_code == 200
        service.evaluate()
        service.evaluate()  # deduplicated while the condition lasts
        drift = [e for e in audited if e[1] == "alert.drift"]
        assert len(drift) == 1
        assert drift[0][2] == "m@1"
        assert "mean_radius" in drift[0][3]["details"]["features"]
        text = httpx.get(f"{url}/metrics").text
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
        refused = httpx.post(f"{url}/v2/models/m/infer", json=body(X))
        assert refused.status_code == 422
        assert "row 2" in refused.json()["error"]
        text = httpx.get(f"{url}/metrics").text
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
            assert httpx.post(f"{url}/v2/models/m/infer", json=body(noise)).status_code == 200
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
