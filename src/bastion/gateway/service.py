"""``bastion serve``'s watch loop: guards, detectors, monitoring, metrics and alerts around one
served release.

:class:`GatewayService` holds, per served model, a :class:`~bastion.monitoring.live.LiveMonitor`
(drift of recent traffic against the signed reference profile), an
:class:`~bastion.gateway.guards.ood.OODDetector` (flag or block) with an
:class:`~bastion.gateway.guards.ood.OODBurst` tracker, and an
:class:`~bastion.gateway.guards.extraction.ExtractionDetector` per client; one
:class:`~bastion.gateway.metrics.GatewayMetrics` and one
:class:`~bastion.monitoring.alerts.Alerter` (audit event, signed webhook, log line;
deduplicated while a condition lasts). A background thread evaluates drift and OOD bursts every
``evaluate_s`` seconds; extraction suspicion is raised as soon as a client is flagged.

With a :class:`~bastion.monitoring.prediction_log.PredictionLogWriter` (opt-in), the same
worker appends every answered tabular request to the prediction log, in batches; a failed
write is logged and counted (``bastion_prediction_log_requests_total{outcome="failed"}``),
never raised into a request.
Extraction (``WatchOptions.extraction``): the detector measures queries in
:class:`~bastion.gateway.guards.extraction.ReferenceScores` units built from the release's
reference profile. A flagged client raises an ``extraction`` alert (subject
``model@version:client``) in every mode; ``throttle`` also sends its later requests through
a token bucket of ``extraction_rate`` requests per second (key ``extraction:<client>``, in
the limiter given, so a Redis limiter shares it between replicas; 429 with ``Retry-After``
beyond it), ``block`` refuses them with 403 (a policy refusal: waiting does not help, so no
``Retry-After`` invites retries). Both count as rejections by guard ``extraction``. The flag
is per model name (it survives an alias move) and per replica; at most
``extraction_max_clients`` flags are held (least recently seen dropped first), and a flag
lapses once its client has sent nothing for ``extraction_idle_s`` seconds, the detector's own
idle eviction. A lapsed or dropped flag resolves its alert (``{"reason": "expired"}``); an
administrator lifts one at once with ``POST /v2/models/{name}/extraction/release``
(``{"reason": "released", "by": ...}``), which also forgets the detector's state of the
client.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np

from bastion.exceptions import ConfigError, DataError

if TYPE_CHECKING:
    from bastion.monitoring.prediction_log import PredictionLogWriter

__all__ = ["GatewayService", "WatchOptions"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WatchOptions:
    """What the gateway watches and how it reacts."""

    ood_mode: Literal["flag", "block", "off"] = "flag"
    # the report's reference profile the OOD detector uses; None: "train", else the first
    # dataset's. Named explicitly, a release without it is refused rather than served unguarded
    ood_profile: str | None = None
    ood_burst_share: float = 0.2
    ood_burst_window_s: float = 60.0
    ood_burst_min_requests: int = 20
    psi_threshold: float = 0.2
    min_rows_for_drift: int = 200
    extraction: Literal["alert", "throttle", "block", "off"] = "alert"
    extraction_rate: float = 0.2  # requests/s of a flagged client in throttle mode
    extraction_burst: int = 1
    extraction_idle_s: float = 3600.0  # detector idle eviction and flag expiry
    extraction_max_clients: int = 1024
    evaluate_s: float = 10.0
    error_share: float = 0.05  # 5xx share of the requests since the last evaluation
    error_min_requests: int = 20

    def __post_init__(self) -> None:
        if self.extraction not in ("alert", "throttle", "block", "off"):
            raise ConfigError(
                f"extraction must be alert, throttle, block or off; received {self.extraction!r}"
            )
        if not self.extraction_rate > 0:
            raise ConfigError(f"extraction_rate must be > 0; received {self.extraction_rate!r}")
        if not self.extraction_idle_s > 0:
            raise ConfigError(f"extraction_idle_s must be > 0; received {self.extraction_idle_s!r}")


class _Flags:
    """Clients flagged for extraction: client -> (alert subject, last request), in last-seen
    order; at most ``cap`` entries, and an entry lapses after ``idle_s`` without a request."""

    def __init__(self, cap: int, idle_s: float, clock: Callable[[], float] = time.monotonic):
        self.cap = cap
        self.idle_s = idle_s
        self._clock = clock
        self._lock = threading.Lock()
        self._held: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._gone: list[tuple[str, str]] = []  # dropped, alert not yet resolved

    def add(self, client: str, subject: str) -> None:
        with self._lock:
            if client not in self._held:
                while len(self._held) >= self.cap:
                    old, (old_subject, _) = self._held.popitem(last=False)
                    self._gone.append((old, old_subject))
            self._held[client] = (subject, self._clock())
            self._held.move_to_end(client)

    def seen(self, client: str) -> bool:
        """Whether ``client`` is flagged; a request from it keeps the flag alive."""
        with self._lock:
            entry = self._held.get(client)
            if entry is None:
                return False
            now = self._clock()
            if now - entry[1] > self.idle_s:
                return False  # lapsed; lapse() resolves it
            self._held[client] = (entry[0], now)
            self._held.move_to_end(client)
            return True

    def pop(self, client: str) -> str | None:
        with self._lock:
            entry = self._held.pop(client, None)
        return None if entry is None else entry[0]

    def lapse(self) -> list[tuple[str, str]]:
        """Remove and return (client, subject) of the flags dropped or idle too long."""
        now = self._clock()
        with self._lock:
            out, self._gone = self._gone, []
            while self._held:
                client, (subject, last) = next(iter(self._held.items()))
                if now - last <= self.idle_s:
                    break
                del self._held[client]
                out.append((client, subject))
        return out

    def __len__(self) -> int:
        with self._lock:
            return len(self._held)


class _Item(NamedTuple):
    """One answered request, queued for the watch worker."""

    name: str
    X: np.ndarray
    labels: np.ndarray
    request_id: str
    client: str  # CURRENT_CLIENT: "id:NAME" or "addr:HOST", never a token
    ts: float  # when it was answered (epoch seconds)
    ref: str  # the release that answered it


class _Served:
    """One model's monitors and detectors (rebuilt when the alias moves)."""

    def __init__(self, ref: str, report: Mapping[str, Any], options: WatchOptions) -> None:
        from bastion.gateway.guards.ood import OODBurst, OODDetector
        from bastion.gateway.guards.schema import InputSchema
        from bastion.monitoring.live import LiveMonitor

        self.ref = ref
        self.schema = InputSchema.from_report(report)
        self.features = self.schema.features if self.schema is not None else None
        self.monitor: LiveMonitor | None = None
        self.ood: Any = None
        self.extraction: Any = None
        try:
            self.monitor = LiveMonitor(report, psi_threshold=options.psi_threshold)
        except DataError as err:
            _log.warning("%s: serving without drift monitoring: %s", ref, err)
        if options.ood_mode != "off":
            try:
                mode: Literal["flag", "block"] = options.ood_mode
                self.ood = OODDetector.from_report(report, mode=mode, profile=options.ood_profile)
            except DataError as err:
                if options.ood_profile is not None:
                    raise ConfigError(
                        f"--ood-profile {options.ood_profile!r}: {ref}: {err}"
                    ) from err
                _log.warning("%s: serving without the OOD detector: %s", ref, err)
        self.burst = OODBurst(
            options.ood_burst_window_s, options.ood_burst_share, options.ood_burst_min_requests
        )
        if options.extraction != "off" and self.schema is not None:
            from bastion.gateway.guards.extraction import ExtractionDetector, ReferenceScores
            from bastion.monitoring.live import reference_columns

            scores = ReferenceScores(reference_columns(report), self.schema.features)
            self.extraction = ExtractionDetector(
                len(self.schema.features),
                transform=scores,
                idle_s=options.extraction_idle_s,
                max_clients=options.extraction_max_clients,
            )


class GatewayService:
    """The callbacks ``create_oip_app`` takes, backed by the detectors and monitors.

    Example::

        >>> service = GatewayService(metrics, alerter)                    # doctest: +SKIP
        >>> service.serve("cancer", "cancer@3", release.report)
        >>> app = create_oip_app(models, input_schema=service.input_check("cancer"), ...)
    """

    def __init__(
        self,
        metrics: Any,
        alerter: Any,
        options: WatchOptions | None = None,
        max_queue: int = 100_000,
        prediction_log: PredictionLogWriter | None = None,
        throttle: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metrics = metrics
        self.alerter = alerter
        self.options = options or WatchOptions()
        self.prediction_log = prediction_log
        if throttle is None and self.options.extraction == "throttle":
            from bastion.gateway.guards.rate_limit import InMemoryLimiter, RateLimit

            throttle = InMemoryLimiter(
                RateLimit(self.options.extraction_rate, self.options.extraction_burst),
                max_keys=self.options.extraction_max_clients,
            )
        # the extraction throttle (a rate_limit.Limiter); Redis-backed, it is shared by replicas
        self.throttle = throttle
        self._flags: dict[str, _Flags] = {}
        self._clock = clock
        self._served: dict[str, _Served] = {}
        self._work: queue.Queue[_Item] = queue.Queue(maxsize=max_queue)
        self._log_failures = 0
        self._log_warned_at = -math.inf
        self._drain_lock = threading.Lock()
        self._dropped = 0
        self._seen_requests: tuple[float, float] = (0.0, 0.0)  # (all, 5xx) at the last look
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def serve(self, name: str, ref: str, report: Mapping[str, Any]) -> None:
        """(Re)build the watch state of model ``name`` for release ``ref``.

        Raises:
            ConfigError: ``options.ood_profile`` names a profile the release's report does
                not hold (the message lists those it holds); the previous state is kept.
        """
        self._served[name] = _Served(ref, report, self.options)
        if name not in self._flags:
            self._flags[name] = _Flags(
                self.options.extraction_max_clients, self.options.extraction_idle_s, self._clock
            )

    # -- extraction flags ---------------------------------------------------------------------
    def admit(self, name: str, client: str) -> None:
        """The ``client_guard`` of ``create_oip_app``: in throttle mode a flagged client goes
        through its ``extraction:<client>`` bucket (429 beyond it), in block mode it is refused
        (403); both count as rejections by guard ``extraction``."""
        mode = self.options.extraction
        if mode not in ("throttle", "block"):
            return
        flags = self._flags.get(name)
        if flags is None or not flags.seen(client):
            return
        from bastion.gateway.guards.auth import GuardRejectedError

        if mode == "block":
            raise GuardRejectedError(
                403,
                "this client is blocked: its queries look like a model-extraction attack "
                "(an administrator can release it)",
                guard="extraction",
            )
        from bastion.gateway.guards.rate_limit import enforce

        enforce(self.throttle, f"extraction:{client}", "extraction")

    def flagged(self, name: str) -> int:
        """How many clients of model ``name`` are flagged now."""
        flags = self._flags.get(name)
        return 0 if flags is None else len(flags)

    def release(self, name: str, client: str, by: str) -> bool:
        """Lift ``client``'s extraction flag on model ``name``, forget what the detector held
        about it and resolve its alert; True if it was flagged (the ``on_release`` callback)."""
        self.drain()  # a flag may still be on its way
        flags = self._flags.get(name)
        subject = None if flags is None else flags.pop(client)
        served = self._served.get(name)
        if served is not None and served.extraction is not None:
            served.extraction.forget(client)
        if subject is not None:
            self.alerter.clear("extraction", subject, {"reason": "released", "by": by})
        return subject is not None

    # -- callbacks for create_oip_app ---------------------------------------------------------
    def input_check(self, name: str) -> Any:
        """An object whose ``check(X)`` runs the schema guard, then, in block mode, the OOD
        detector (inline: a refusal must come before the model); in flag mode the OOD score
        joins the deferred work."""
        service = self

        class _Checks:
            def check(self, X: np.ndarray) -> None:
                served = service._served.get(name)
                if served is None:
                    return
                if served.schema is not None:
                    served.schema.check(X)
                if served.ood is not None and service.options.ood_mode == "block":
                    result = served.ood.check(X)  # raises 422 (guard "ood")
                    served.burst.record(len(X), int(result.n_anomalous))

        return _Checks()

    def on_predict(
        self, name: str, _model: Any, X: np.ndarray, labels: np.ndarray, request_id: str
    ) -> None:
        """Queue the request for the watch worker: monitoring, OOD flagging and extraction
        detection run off the request path, in batches (numpy's per-call overhead dominates
        single-row requests)."""
        from bastion.gateway.oip import CURRENT_CLIENT

        served = self._served.get(name)
        if served is None:
            return
        item = _Item(
            name,
            np.asarray(X),
            np.asarray(labels),
            request_id,
            CURRENT_CLIENT.get(),
            time.time(),
            served.ref,
        )
        try:
            self._work.put_nowait(item)
        except queue.Full:
            self._dropped += 1  # shed monitoring, never requests
        if self._thread is None:  # no worker (tests, library use): process now
            self.drain()

    def drain(self) -> None:
        """Process every queued request now (the worker does this every few milliseconds)."""
        items = []
        while True:
            try:
                items.append(self._work.get_nowait())
            except queue.Empty:
                break
        if items:
            with self._drain_lock:
                self._process(items)

    def _process(self, items: list[_Item]) -> None:
        if self.prediction_log is not None:
            self._log_predictions(self.prediction_log, items)
        by_model: dict[str, list[tuple[np.ndarray, np.ndarray, str, str]]] = {}
        for item in items:
            by_model.setdefault(item.name, []).append(
                (item.X, item.labels, item.request_id, item.client)
            )
        for name, batch in by_model.items():
            served = self._served.get(name)
            if served is None:
                continue
            tabular = [b for b in batch if b[0].ndim == 2]
            if served.monitor is not None and tabular:
                served.monitor.observe_many(
                    [(X, list(labels), rid) for X, labels, rid, _ in tabular]
                )
            if served.ood is not None and self.options.ood_mode == "flag" and tabular:
                rows = np.concatenate([b[0] for b in tabular])
                flags = served.ood.score(rows).anomalous
                start = 0
                for X, _, _, _ in tabular:
                    n = len(X)
                    served.burst.record(n, int(flags[start : start + n].sum()))
                    start += n
            if served.extraction is not None and tabular:
                self._extraction(served, tabular, self._flags.get(name))

    def _log_predictions(self, log: PredictionLogWriter, items: list[_Item]) -> None:
        """Append the tabular requests to the prediction log; count, never raise, failures."""
        from bastion.monitoring.prediction_log import encode_request

        lines: list[str] = []
        skipped = 0
        try:
            for item in items:
                if item.X.ndim != 2 or item.labels.ndim != 1 or len(item.labels) != len(item.X):
                    skipped += 1
                    continue
                served = self._served.get(item.name)
                lines.append(
                    encode_request(
                        ts=item.ts,
                        model=item.name,
                        release=item.ref,
                        request_id=item.request_id,
                        client=item.client,
                        features=served.features if served is not None else None,
                        X=item.X,
                        labels=item.labels,
                    )
                )
            log.write(lines)
        except Exception as err:  # the log must never stop monitoring or serving
            self._log_failures += len(items) - skipped
            self._count_log("failed", len(items) - skipped)
            now = time.monotonic()
            if now - self._log_warned_at >= 60.0:  # one line a minute while it lasts
                self._log_warned_at = now
                _log.error(
                    "prediction log: %d request(s) not logged (%d so far): %s",
                    len(items) - skipped,
                    self._log_failures,
                    err,
                )
        else:
            self._count_log("written", len(lines))
        self._count_log("skipped", skipped)

    def _count_log(self, outcome: str, n: int) -> None:
        if n:
            self.metrics.prediction_log(outcome, n)

    def _extraction(
        self,
        served: _Served,
        batch: list[tuple[np.ndarray, np.ndarray, str, str]],
        flags: _Flags | None,
    ) -> None:
        by_client: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        for X, labels, _, client in batch:
            by_client.setdefault(client, []).append((X, labels))
        for client, parts in by_client.items():
            X = np.concatenate([p[0] for p in parts])
            labels = np.concatenate([p[1] for p in parts])
            status = served.extraction.observe(client, X, labels)
            if status.flagged:
                subject = f"{served.ref}:{client}"
                if flags is not None:
                    flags.add(client, subject)
                self.alerter.raise_(
                    "extraction",
                    subject,
                    {
                        "client": client,
                        "queries": status.n_queries,
                        "w_statistic": status.w_statistic,
                        "coverage": status.coverage,
                        "reasons": list(getattr(status, "reasons", ())),
                        "action": self.options.extraction,
                    },
                )

    def on_feedback(self, name: str, request_id: str, labels: list[Any]) -> int:
        self.drain()  # the prediction may still be queued
        served = self._served.get(name)
        if served is None or served.monitor is None:
            raise DataError(f"model {name!r} is served without monitoring (no reference profile)")
        return int(served.monitor.feedback(request_id, labels))

    def snapshot(self, name: str) -> dict[str, Any]:
        self.drain()
        served = self._served.get(name)
        if served is None or served.monitor is None:
            return {"monitoring": False}
        return {"release": served.ref, **served.monitor.snapshot().to_dict()}

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate(self) -> None:
        """Update drift gauges; raise or clear drift, OOD-burst and error-spike alerts."""
        self.drain()
        self._errors()
        for flags in list(self._flags.values()):
            for _, subject in flags.lapse():
                self.alerter.clear("extraction", subject, {"reason": "expired"})
        for served in list(self._served.values()):
            name, _, version = served.ref.partition("@")
            if served.monitor is not None:
                snap = served.monitor.snapshot()
                for f in snap.features:
                    self.metrics.set_drift(name, version, f.feature, "psi", f.psi)
                    self.metrics.set_drift(
                        name, version, f.feature, "jensenshannon", f.jensenshannon
                    )
                if snap.n_rows >= self.options.min_rows_for_drift and snap.drifted_features:
                    self.alerter.raise_(
                        "drift",
                        served.ref,
                        {"features": list(snap.drifted_features), "rows": snap.n_rows},
                    )
                elif snap.n_rows >= self.options.min_rows_for_drift:
                    self.alerter.clear("drift", served.ref)
            state = served.burst.state()
            if state.active:
                self.alerter.raise_(
                    "ood_burst",
                    served.ref,
                    {"share": state.share, "rows": state.rows, "requests": state.requests},
                )
            elif state.changed:
                self.alerter.clear("ood_burst", served.ref)

    def _errors(self) -> None:
        """An error spike: 5xx answers above ``error_share`` of the requests since the last
        evaluation (with at least ``error_min_requests`` of them)."""
        samples = self.metrics.snapshot().get("bastion_gateway_requests_total", [])
        total = sum(float(x["value"]) for x in samples)
        errors = sum(
            float(x["value"]) for x in samples if str(x["labels"].get("status", "")).startswith("5")
        )
        before_total, before_errors = self._seen_requests
        self._seen_requests = (total, errors)
        n, bad = total - before_total, errors - before_errors
        if n < self.options.error_min_requests:
            return
        if bad / n > self.options.error_share:
            self.alerter.raise_("error_spike", "gateway", {"requests": n, "errors": bad})
        else:
            self.alerter.clear("error_spike", "gateway")

    def start(self) -> None:
        """Drain the queue every 20 ms and evaluate every ``evaluate_s`` seconds, in a thread."""

        def loop() -> None:
            next_evaluation = time.monotonic() + self.options.evaluate_s
            while not self._stop.wait(0.02):
                try:
                    self.drain()
                    if time.monotonic() >= next_evaluation:
                        next_evaluation += self.options.evaluate_s
                        self.evaluate()
                except Exception:  # monitoring must never stop serving
                    _log.exception("gateway watch")

        self._thread = threading.Thread(target=loop, name="bastion-gateway-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.options.evaluate_s + 5)
        try:
            self.drain()  # what was queued still reaches the monitors and the log
        except Exception:  # shutting down: report it, close the rest
            _log.exception("gateway watch: the last drain failed")
        if self.prediction_log is not None:
            self.prediction_log.close()


def make_audit(appender: Callable[..., Any]) -> Callable[[str, str, str, dict[str, Any]], None]:
    """Adapt an audit appender to the Alerter's ``audit(actor, action, object, details)``."""

    def audit(actor: str, action: str, obj: str, details: dict[str, Any]) -> None:
        appender(actor, action, obj, details)

    return audit
