"""GatewayMetrics: exposition parses, counts and buckets are right, registries are separate."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from bastion.exceptions import ConfigError
from bastion.gateway.metrics import (
    ALERTS,
    DRIFT_SCORE,
    GUARDS,
    LATENCY_BUCKETS_S,
    REJECTIONS,
    REQUEST_DURATION,
    REQUESTS,
    GatewayMetrics,
)

ROUTE = "/v2/models/{name}/infer"


def samples(metrics: GatewayMetrics) -> dict[str, list[Sample]]:
    """Parse the rendered text the way Prometheus would; sample name -> samples."""
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    out: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out.setdefault(s.name, []).append(s)
    return out


def value(found: dict[str, list[Sample]], name: str, **labels: str) -> float:
    matches = [s.value for s in found[name] if s.labels == labels]
    assert len(matches) == 1, (name, labels, found.get(name))
    return matches[0]


def test_request_counts_by_model_route_status() -> None:
    m = GatewayMetrics()
    for _ in range(3):
        m.observe_request("iris", ROUTE, 200, 0.002)
    m.observe_request("iris", ROUTE, 422, 0.001)
    m.observe_request("wine", ROUTE, "200", 0.004)
    found = samples(m)
    assert value(found, REQUESTS, model="iris", route=ROUTE, status="200") == 3
    assert value(found, REQUESTS, model="iris", route=ROUTE, status="422") == 1
    assert value(found, REQUESTS, model="wine", route=ROUTE, status="200") == 1
    assert len(found[REQUESTS]) == 3


def test_latency_histogram_buckets_are_cumulative() -> None:
    m = GatewayMetrics()
    observed = [0.0003, 0.0007, 0.004, 0.2, 3.0, 12.0]
    for s in observed:
        m.observe_request("iris", ROUTE, 200, s)
    found = samples(m)
    buckets = {
        s.labels["le"]: s.value
        for s in found[f"{REQUEST_DURATION}_bucket"]
        if s.labels["model"] == "iris"
    }
    bounds = [*LATENCY_BUCKETS_S, float("inf")]
    assert [float(le) for le in buckets] == bounds
    for le, count in buckets.items():
        assert count == sum(1 for s in observed if s <= float(le)), le
    assert buckets["0.0005"] == 1
    assert buckets["+Inf"] == len(observed)
    assert value(found, f"{REQUEST_DURATION}_count", model="iris", route=ROUTE) == len(observed)
    assert value(found, f"{REQUEST_DURATION}_sum", model="iris", route=ROUTE) == pytest.approx(
        sum(observed)
    )
    assert LATENCY_BUCKETS_S[0] == 0.0005
    assert LATENCY_BUCKETS_S[-1] == 5.0


def test_rejections_drift_and_alerts() -> None:
    m = GatewayMetrics()
    for guard in GUARDS:
        m.rejected(guard, 403)
    m.rejected("rate_limit_token", 429)
    m.rejected("rate_limit_token", 429)
    m.set_drift("iris", "3", "petal_length", "psi", 0.1)
    m.set_drift("iris", "3", "petal_length", "psi", 0.42)  # a gauge keeps the latest value
    m.set_drift("iris", "3", "sepal_width", "ks", 0.03)
    m.alert("drift")
    m.alert("drift")
    m.alert("extraction")
    found = samples(m)
    assert len(found[REJECTIONS]) == len(GUARDS) + 1
    assert value(found, REJECTIONS, guard="rate_limit_token", status="429") == 2
    assert value(found, REJECTIONS, guard="ood", status="403") == 1
    labels = {"model": "iris", "version": "3", "feature": "petal_length", "statistic": "psi"}
    assert value(found, DRIFT_SCORE, **labels) == 0.42
    assert value(found, DRIFT_SCORE, **{**labels, "feature": "sepal_width", "statistic": "ks"}) == (
        0.03
    )
    assert value(found, ALERTS, kind="drift") == 2
    assert value(found, ALERTS, kind="extraction") == 1


def test_snapshot_matches_exposition() -> None:
    m = GatewayMetrics()
    m.observe_request("iris", ROUTE, 200, 0.002)
    m.observe_request("iris", ROUTE, 200, 0.03)
    m.rejected("auth", 401)
    snap = m.snapshot()
    assert not any(name.endswith("_created") for name in snap)
    assert snap[REQUESTS] == [
        {"labels": {"model": "iris", "route": ROUTE, "status": "200"}, "value": 2.0}
    ]
    assert snap[REJECTIONS] == [{"labels": {"guard": "auth", "status": "401"}, "value": 1.0}]
    assert snap[f"{REQUEST_DURATION}_sum"][0]["value"] == pytest.approx(0.032)
    found = samples(m)
    for name in (f"{REQUEST_DURATION}_bucket", f"{REQUEST_DURATION}_count"):
        assert [e["value"] for e in snap[name]] == [s.value for s in found[name]]
    assert DRIFT_SCORE not in snap  # no series yet


def test_registries_are_per_instance() -> None:
    a, b = GatewayMetrics(), GatewayMetrics()
    a.rejected("auth", 401)
    assert REJECTIONS in a.snapshot()
    assert REJECTIONS not in b.snapshot()
    assert a.registry is not b.registry


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m: m.rejected("firewall", 403), "guard must be one of"),
        (lambda m: m.rejected("auth", 4011), "three-digit HTTP status"),
        (lambda m: m.observe_request("iris", ROUTE, True, 0.1), "three-digit HTTP status"),
        (lambda m: m.observe_request("iris", ROUTE, 200, -0.1), "seconds must be >= 0"),
        (lambda m: m.observe_request("iris", ROUTE, 200, float("nan")), "seconds must be >= 0"),
    ],
)
def test_bad_values_are_refused(call: object, match: str) -> None:
    m = GatewayMetrics()
    with pytest.raises(ConfigError, match=match):
        call(m)  # type: ignore[operator]
    assert REQUESTS not in m.snapshot()
    assert REJECTIONS not in m.snapshot()


def test_extra_guards_and_bad_buckets() -> None:
    m = GatewayMetrics(guards=[*GUARDS, "waf"])
    m.rejected("waf", 403)
    assert m.snapshot()[REJECTIONS][0]["labels"] == {"guard": "waf", "status": "403"}
    with pytest.raises(ConfigError, match="increasing"):
        GatewayMetrics(buckets=[0.1, 0.05])
    with pytest.raises(ConfigError, match="at least one guard"):
        GatewayMetrics(guards=[])
