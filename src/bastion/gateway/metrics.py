"""Prometheus metrics of the gateway: traffic, latency, guard refusals, drift and alerts.

What: one :class:`GatewayMetrics` object per app owns a private ``CollectorRegistry`` (never
the process-global one, so several apps, or the tests, in one process do not collide on
metric names) and six metric families:

=========================================== ========= ====================================
name                                        type      labels
=========================================== ========= ====================================
``bastion_gateway_requests_total``          counter   model, route, status
``bastion_gateway_request_duration_seconds`` histogram model, route
``bastion_gateway_rejections_total``        counter   guard, status
``bastion_drift_score``                     gauge     model, version, feature, statistic
``bastion_alerts_total``                    counter   kind
``bastion_prediction_log_requests_total``   counter   outcome (written, failed, skipped)
=========================================== ========= ====================================

Why: rejections per guard show an attack in progress (a burst of ``extraction`` or
``rate_limit_token`` refusals; MITRE ATLAS AML.M0024 "AI Telemetry Logging"), drift scores show
the data moving under a model, and request counts and latency are the service-level signals
the alerts are judged against.

How: the latency buckets are spaced roughly 1-2.5-5 per decade from 0.5 ms to 5 s, which
covers a small tabular model answering in under a millisecond as well as a large one taking
seconds. Label values are bounded on purpose: ``route`` must be the route *template*
(``/v2/models/{name}/infer``), never the raw path, and ``guard`` must be one of
:data:`GUARDS` (or a name given to the constructor), because every new label value is a new
time series kept in memory forever.

prometheus-client loads when the object is created (``pip install 'bastion[gateway]'``).

Example::

    >>> m = GatewayMetrics()  # doctest: +SKIP
    >>> m.observe_request("iris", "/v2/models/{name}/infer", 200, 0.0012)  # doctest: +SKIP
    >>> body, content_type = m.render()  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from bastion._optional import require
from bastion.exceptions import ConfigError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = [
    "ALERTS",
    "DRIFT_SCORE",
    "GUARDS",
    "LATENCY_BUCKETS_S",
    "PREDICTION_LOG",
    "PREDICTION_LOG_OUTCOMES",
    "REJECTIONS",
    "REQUESTS",
    "REQUEST_DURATION",
    "GatewayMetrics",
]

REQUESTS = "bastion_gateway_requests_total"
REQUEST_DURATION = "bastion_gateway_request_duration_seconds"
REJECTIONS = "bastion_gateway_rejections_total"
DRIFT_SCORE = "bastion_drift_score"
ALERTS = "bastion_alerts_total"
PREDICTION_LOG = "bastion_prediction_log_requests_total"
PREDICTION_LOG_OUTCOMES: tuple[str, ...] = ("written", "failed", "skipped")

# Upper bounds in seconds; prometheus-client adds +Inf.
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)

# The guards the gateway ships; each name is one label value of ``REJECTIONS``.
GUARDS: tuple[str, ...] = (
    "body_size",
    "rate_limit_address",
    "rate_limit_token",
    "auth",
    "role",
    "schema",
    "ood",
    "extraction",
)


def _status(status: int | str) -> str:
    """An HTTP status as its three-digit label value, or ConfigError."""
    text = str(status)
    if isinstance(status, bool) or not (len(text) == 3 and text.isdigit()):
        raise ConfigError(f"status must be a three-digit HTTP status, got {status!r}")
    return text


class GatewayMetrics:
    """The gateway's metrics on their own registry.

    Parameters
    ----------
    guards:
        Guard names accepted by :meth:`rejected`; defaults to :data:`GUARDS`. An unknown name
        is refused rather than recorded so that label cardinality stays bounded.
    buckets:
        Histogram upper bounds in seconds, increasing; defaults to :data:`LATENCY_BUCKETS_S`.

    Raises
    ------
    MissingExtraError
        prometheus-client is not installed.
    ConfigError
        ``guards`` is empty or ``buckets`` is not increasing and positive.
    """

    def __init__(
        self,
        *,
        guards: Iterable[str] = GUARDS,
        buckets: Iterable[float] = LATENCY_BUCKETS_S,
    ) -> None:
        prom = require("prometheus_client", "gateway metrics")
        self.guards: frozenset[str] = frozenset(guards)
        if not self.guards:
            raise ConfigError("guards must name at least one guard, got none")
        self.buckets: tuple[float, ...] = tuple(float(b) for b in buckets)
        if not self.buckets or any(
            b <= 0 or b >= nxt for b, nxt in zip(self.buckets, self.buckets[1:], strict=False)
        ):
            raise ConfigError(f"buckets must be positive and increasing, got {self.buckets!r}")
        self.registry: CollectorRegistry = prom.CollectorRegistry()
        # Metric names are given without the _total suffix; prometheus-client appends it.
        self._requests: Counter = prom.Counter(
            REQUESTS.removesuffix("_total"),
            "Inference requests answered, by model, route template and HTTP status.",
            ("model", "route", "status"),
            registry=self.registry,
        )
        self._latency: Histogram = prom.Histogram(
            REQUEST_DURATION,
            "Time from request received to response sent, in seconds.",
            ("model", "route"),
            buckets=self.buckets,
            registry=self.registry,
        )
        self._rejections: Counter = prom.Counter(
            REJECTIONS.removesuffix("_total"),
            "Requests refused by a guard, by guard name and HTTP status.",
            ("guard", "status"),
            registry=self.registry,
        )
        self._drift: Gauge = prom.Gauge(
            DRIFT_SCORE,
            "Latest drift statistic per model version and feature (p-value or distance).",
            ("model", "version", "feature", "statistic"),
            registry=self.registry,
        )
        self._alerts: Counter = prom.Counter(
            ALERTS.removesuffix("_total"),
            "Alerts fired (after deduplication), by kind.",
            ("kind",),
            registry=self.registry,
        )
        self._prediction_log: Counter = prom.Counter(
            PREDICTION_LOG.removesuffix("_total"),
            "Requests the opt-in prediction log wrote, failed to write, or skipped (not tabular).",
            ("outcome",),
            registry=self.registry,
        )

    def observe_request(self, model: str, route: str, status: int | str, seconds: float) -> None:
        """Count one answered request and record its latency.

        ``route`` is the route template, not the raw path. Negative ``seconds`` (a clock
        stepping back) are refused with ConfigError rather than recorded in the lowest bucket.
        """
        if not seconds >= 0:  # also catches NaN
            raise ConfigError(f"seconds must be >= 0, got {seconds!r}")
        self._requests.labels(model=model, route=route, status=_status(status)).inc()
        self._latency.labels(model=model, route=route).observe(seconds)

    def rejected(self, guard: str, status: int | str) -> None:
        """Count one request refused by ``guard`` (one of :attr:`guards`) with ``status``."""
        if guard not in self.guards:
            raise ConfigError(f"guard must be one of {sorted(self.guards)}, got {guard!r}")
        self._rejections.labels(guard=guard, status=_status(status)).inc()

    def set_drift(
        self, model: str, version: str, feature: str, stattest: str, value: float
    ) -> None:
        """Set the latest drift statistic ``stattest`` of ``feature`` for ``model@version``."""
        self._drift.labels(model=model, version=version, feature=feature, statistic=stattest).set(
            value
        )

    def alert(self, kind: str) -> None:
        """Count one fired alert of ``kind`` (pass this as the alerter's ``on_fire``)."""
        self._alerts.labels(kind=kind).inc()

    def prediction_log(self, outcome: str, requests: int = 1) -> None:
        """Count ``requests`` requests of the prediction log with ``outcome`` (one of
        :data:`PREDICTION_LOG_OUTCOMES`)."""
        if outcome not in PREDICTION_LOG_OUTCOMES:
            raise ConfigError(
                f"outcome must be one of {list(PREDICTION_LOG_OUTCOMES)}, got {outcome!r}"
            )
        self._prediction_log.labels(outcome=outcome).inc(requests)

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition of every metric, and its content type.

        Example (FastAPI)::

            body, ctype = metrics.render()
            return Response(content=body, media_type=ctype)
        """
        prom = require("prometheus_client", "gateway metrics")
        body: bytes = prom.generate_latest(self.registry)
        return body, str(prom.CONTENT_TYPE_LATEST)

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Current values as plain data, for the dashboard or a JSON endpoint.

        Returns
        -------
        dict
            Sample name (``bastion_gateway_requests_total``,
            ``bastion_gateway_request_duration_seconds_bucket``, ``..._sum``, ``..._count``,
            ``bastion_drift_score``, ...) -> list of ``{"labels": {...}, "value": float}``,
            in the registry's order. Sample names absent from the dict have no series yet.
            The ``*_created`` timestamps prometheus-client adds are left out.
        """
        out: dict[str, list[dict[str, Any]]] = {}
        for family in self.registry.collect():
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                out.setdefault(sample.name, []).append(
                    {"labels": dict(sample.labels), "value": float(sample.value)}
                )
        return out
