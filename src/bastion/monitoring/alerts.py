"""Alerts: a condition seen by the gateway becomes an audit event, a signed webhook and a log line.

What: :class:`Alerter` turns conditions (``drift`` on ``model@version``, ``extraction`` by a
client, a burst of out-of-distribution inputs, an error-rate spike) into alerts. Each fired
alert

1. is logged at WARNING on the ``bastion.monitoring.alerts`` logger;
2. is appended to the audit trail through the ``audit(actor, action, object, details)``
   callable (``AuditWriter.append`` or ``AuditLog.append``), action ``alert.<kind>``;
3. is POSTed as JSON to every configured webhook URL by a background worker thread.

When the condition ends, :meth:`Alerter.clear` sends a *resolved* notice the same three ways
(log line at INFO, audit action ``alert.resolved``, webhook with ``"status": "resolved"``),
once, and only for an alert that was active.

Why: an alert nobody receives is no alert, and one received a thousand times is ignored.
Alerts are therefore deduplicated while their condition lasts: :meth:`Alerter.raise_` fires
once per ``(kind, subject)`` and suppresses repeats until :meth:`Alerter.clear` says the
condition ended (or, when ``renotify_after_s`` is set, until that long has passed since the
last notice). A receiver that pages on ``firing`` can close the page on ``resolved``.
Request handling never waits on a webhook receiver: deliveries go through a bounded queue (a
full queue drops the delivery and logs it rather than blocking or growing memory without
bound).

Webhook payload (JSON object, keys sorted, no whitespace)::

    {"id": "<32 hex: this notice>", "kind": "drift|extraction|ood_burst|error_spike",
     "subject": "<model@version, or model@version:client>", "status": "firing|resolved",
     "details": {...}, "ts": "<ISO 8601 UTC of this notice>", "occurrence": 1,
     "suppressed": 0, "source": "bastion.alerts",
     "resolves": "<id of the firing notice>"}          # resolved notices only

``details`` are the condition's facts when firing and the reason it ended when resolved
(e.g. ``{"reason": "expired"}``); ``occurrence`` counts re-notices of one condition and
``suppressed`` the repeats swallowed since the previous notice. The audit events carry the
same facts: action ``alert.<kind>`` with ``alert_id``, ``kind``, ``occurrence``,
``suppressed``, ``details``; action ``alert.resolved`` with ``alert_id``, ``resolves``,
``kind``, ``fired_ts``, ``suppressed``, ``details``.

Webhook signing (how receivers authenticate a delivery and refuse replays): each attempt
carries the headers

- ``X-Bastion-Timestamp``: Unix time in whole seconds when the attempt was sent;
- ``X-Bastion-Signature``: ``sha256=<hex>``, the HMAC-SHA256 under the shared secret of the
  bytes ``f"{timestamp}.".encode() + body`` (the raw request body, exactly as received).

Because the timestamp is inside the signed message an attacker who captured a delivery
cannot re-send it later with a fresh timestamp; :func:`verify_signature` refuses timestamps
more than ``tolerance_s`` (default 300 s) away from the receiver's clock. Within that window
receivers should drop bodies whose ``id`` they have already seen. The same scheme is used by
Stripe and Slack webhooks.

Delivery: connection errors, timeouts, HTTP 429 and 5xx answers are retried with exponential
backoff and jitter (attempt ``n`` waits ``min(backoff_max_s, backoff_base_s * 2**(n-1))``
times a uniform factor in [0.5, 1]), at most ``max_attempts`` attempts and never past
``total_timeout_s`` after the first; other 4xx answers are final. Redirects are not
followed. A delivery that gives up is logged at ERROR. Logs name a webhook by scheme, host
and port only, since webhook paths and queries often embed a token, and never the secret.

httpx loads in the worker thread when the first webhook is sent.

Example::

    >>> alerter = Alerter(audit=audit_log.append, webhook_urls=["https://hooks.example/a"],
    ...                   secret=os.environ["BASTION_WEBHOOK_SECRET"])  # doctest: +SKIP
    >>> alerter.raise_("drift", "iris@3", {"feature": "x1", "psi": 0.41})  # doctest: +SKIP
    >>> alerter.clear("drift", "iris@3", {"reason": "psi back under 0.2"})  # doctest: +SKIP
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import logging
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from bastion._optional import require
from bastion.exceptions import ConfigError

if TYPE_CHECKING:
    import httpx

__all__ = [
    "ALERT_KINDS",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Alert",
    "Alerter",
    "DeliveryStats",
    "sign",
    "verify_signature",
]

logger = logging.getLogger(__name__)

ALERT_KINDS: tuple[str, ...] = ("drift", "extraction", "ood_burst", "error_spike")
SIGNATURE_HEADER = "X-Bastion-Signature"
TIMESTAMP_HEADER = "X-Bastion-Timestamp"
MIN_SECRET_BYTES = 16

AuditFn = Callable[[str, str, str, Mapping[str, Any]], object]


def _secret_bytes(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else bytes(secret)


def sign(secret: str | bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Bastion-Signature`` value for ``body`` sent at ``timestamp``: ``sha256=<hex>``."""
    mac = hmac.new(_secret_bytes(secret), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str | bytes,
    timestamp: str,
    body: bytes,
    header: str,
    *,
    tolerance_s: float = 300.0,
    now: float | None = None,
) -> bool:
    """Whether a webhook delivery is authentic and fresh (for receivers).

    Parameters
    ----------
    secret:
        The shared secret configured on the alerter.
    timestamp:
        The ``X-Bastion-Timestamp`` header (Unix seconds).
    body:
        The raw request body, before any JSON parsing.
    header:
        The ``X-Bastion-Signature`` header.
    tolerance_s:
        Largest accepted distance between ``timestamp`` and ``now``, in seconds.
    now:
        The receiver's clock; ``time.time()`` when omitted.

    Returns
    -------
    bool
        True when the signature matches (compared in constant time) and the timestamp is an
        integer within ``tolerance_s`` of ``now``.

    Example::

        >>> ts = "1700000000"
        >>> verify_signature("s" * 16, ts, b"{}", sign("s" * 16, ts, b"{}"), now=1700000001)
        True
    """
    if not header.startswith("sha256=") or not timestamp.isascii() or not timestamp.isdigit():
        return False
    clock = time.time() if now is None else now
    if abs(clock - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header)


def _redact(url: str) -> str:
    """``scheme://host[:port]``: enough to tell webhooks apart, without path tokens."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # Only the redacted form goes into the message: the URL itself may be a secret.
        raise ConfigError(f"webhook URLs must be http(s)://host/..., got {_redact(url)!r}")
    return url


def _json_facts(details: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``details``, refused unless it is JSON-serializable (it goes to webhooks and
    the audit trail)."""
    facts = dict(details or {})
    try:
        json.dumps(facts, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"details must be JSON-serializable: {err}") from err
    return facts


@dataclass(frozen=True)
class Alert:
    """One notice: an alert fired (``status`` ``"firing"``) or its condition ended
    (``"resolved"``).

    ``occurrence`` is 1 when the condition is first seen and counts up on each re-notice;
    ``suppressed`` is how many ``raise_`` calls were swallowed since the previous notice.
    ``ts`` is the UTC time of the notice, ISO 8601. A resolved notice has its own ``id`` and
    names in ``resolves`` the ``id`` of the firing notice it ends.
    """

    kind: str
    subject: str
    details: Mapping[str, Any]
    id: str
    ts: str
    occurrence: int = 1
    suppressed: int = 0
    status: Literal["firing", "resolved"] = "firing"
    resolves: str | None = None

    def payload(self, source: str) -> dict[str, Any]:
        """The JSON object sent to webhooks (see the module docstring)."""
        body = {
            "id": self.id,
            "kind": self.kind,
            "subject": self.subject,
            "status": self.status,
            "details": dict(self.details),
            "ts": self.ts,
            "occurrence": self.occurrence,
            "suppressed": self.suppressed,
            "source": source,
        }
        if self.resolves is not None:
            body["resolves"] = self.resolves
        return body


@dataclass(frozen=True)
class DeliveryStats:
    """Webhook delivery counts since the alerter was created.

    ``attempts``: HTTP requests tried; ``delivered``: deliveries answered 2xx; ``failed``:
    deliveries given up; ``dropped``: deliveries refused because the queue was full.
    """

    attempts: int
    delivered: int
    failed: int
    dropped: int


@dataclass
class _Active:
    alert: Alert
    last_notice: float
    suppressed: int = 0


@dataclass
class _Counts:
    attempts: int = 0
    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Alerter:
    """Deduplicated alerts to the audit trail, signed webhooks and the log.

    Parameters
    ----------
    audit:
        ``audit(actor, action, object, details)``; called synchronously when an alert fires
        (action ``alert.<kind>``, object the subject). None: no audit events.
    webhook_urls:
        http(s) URLs that receive each alert as a signed JSON POST.
    secret:
        Shared HMAC secret, at least 16 bytes; required when ``webhook_urls`` is not empty.
    actor:
        The audit actor and the payload's ``source``.
    kinds:
        Accepted alert kinds; defaults to :data:`ALERT_KINDS`.
    renotify_after_s:
        When set, a condition still active this long after its last notice fires again.
    on_fire:
        Called with the kind of every fired alert (e.g. ``GatewayMetrics.alert``).
    max_attempts, backoff_base_s, backoff_max_s, total_timeout_s, request_timeout_s:
        Retry policy of one delivery (see the module docstring).
    queue_size:
        Deliveries waiting at most; beyond that new ones are dropped and logged.
    history:
        Notices (firing and resolved) kept for :meth:`recent`, newest last in; 0 keeps none.
    random_state:
        Seed of the backoff jitter.
    clock:
        Monotonic clock for re-notification; ``time.monotonic`` unless testing.

    Raises
    ------
    ConfigError
        A URL is not http(s), the secret is missing or short, or a number is out of range.
    """

    def __init__(
        self,
        *,
        audit: AuditFn | None = None,
        webhook_urls: Iterable[str] = (),
        secret: str | bytes | None = None,
        actor: str = "bastion.alerts",
        kinds: Iterable[str] = ALERT_KINDS,
        renotify_after_s: float | None = None,
        on_fire: Callable[[str], object] | None = None,
        max_attempts: int = 5,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 8.0,
        total_timeout_s: float = 60.0,
        request_timeout_s: float = 5.0,
        queue_size: int = 1000,
        history: int = 100,
        random_state: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.webhook_urls: tuple[str, ...] = tuple(_check_url(u) for u in webhook_urls)
        if self.webhook_urls and (secret is None or len(_secret_bytes(secret)) < MIN_SECRET_BYTES):
            raise ConfigError(
                f"secret must be at least {MIN_SECRET_BYTES} bytes when webhook_urls are set"
            )
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ConfigError(f"max_attempts must be an integer >= 1, got {max_attempts!r}")
        for name, value in (
            ("backoff_base_s", backoff_base_s),
            ("backoff_max_s", backoff_max_s),
            ("total_timeout_s", total_timeout_s),
            ("request_timeout_s", request_timeout_s),
        ):
            if not value > 0:
                raise ConfigError(f"{name} must be > 0, got {value!r}")
        if renotify_after_s is not None and not renotify_after_s > 0:
            raise ConfigError(f"renotify_after_s must be > 0 or None, got {renotify_after_s!r}")
        if queue_size < 1:
            raise ConfigError(f"queue_size must be >= 1, got {queue_size!r}")
        if history < 0:
            raise ConfigError(f"history must be >= 0, got {history!r}")
        self.kinds: frozenset[str] = frozenset(kinds)
        self.actor = actor
        self.renotify_after_s = renotify_after_s
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.total_timeout_s = total_timeout_s
        self.request_timeout_s = request_timeout_s
        self._secret = _secret_bytes(secret) if secret is not None else b""
        self._audit = audit
        self._on_fire = on_fire
        self._clock = clock
        self._rng = random.Random(random_state)
        self._lock = threading.Lock()
        self._active: dict[tuple[str, str], _Active] = {}
        # the last notices sent, firing and resolved (the gateway's /v2/admin/alerts)
        self._recent: collections.deque[Alert] = collections.deque(maxlen=history)
        # None is the stop sentinel.
        self._queue: queue.Queue[tuple[Alert, str, bytes] | None] = queue.Queue(maxsize=queue_size)
        self._counts = _Counts()
        self._pending = 0
        self._idle = threading.Condition()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._closed = False

    def __repr__(self) -> str:
        # The secret and the full URLs stay out of reprs (and so out of tracebacks and logs).
        hooks = [_redact(u) for u in self.webhook_urls]
        return f"Alerter(webhooks={hooks}, kinds={sorted(self.kinds)}, active={len(self._active)})"

    def __enter__(self) -> Alerter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- conditions

    def raise_(
        self, kind: str, subject: str, details: Mapping[str, Any] | None = None
    ) -> Alert | None:
        """Report that condition ``kind`` holds for ``subject``; fire unless already reported.

        Parameters
        ----------
        kind:
            One of :attr:`kinds`.
        subject:
            What the condition is about: ``model@version`` or a client id.
        details:
            JSON-serializable facts (scores, thresholds, counts).

        Returns
        -------
        Alert or None
            The fired alert, or None when it was suppressed as a repeat.

        Raises
        ------
        ConfigError
            Unknown kind, empty subject, details not JSON-serializable, or a closed alerter.
        Exception
            Whatever ``audit`` raises; the alert then stays inactive so the next call retries.
        """
        if kind not in self.kinds:
            raise ConfigError(f"kind must be one of {sorted(self.kinds)}, got {kind!r}")
        if not subject:
            raise ConfigError("subject must be a non-empty string, got ''")
        if self._closed:
            raise ConfigError("the alerter is closed")
        facts = _json_facts(details)
        key = (kind, subject)
        with self._lock:
            now = self._clock()
            active = self._active.get(key)
            if active is not None and (
                self.renotify_after_s is None or now - active.last_notice < self.renotify_after_s
            ):
                active.suppressed += 1
                return None
            alert = Alert(
                kind=kind,
                subject=subject,
                details=facts,
                id=uuid.uuid4().hex,
                ts=datetime.now(UTC).isoformat(),
                occurrence=1 if active is None else active.alert.occurrence + 1,
                suppressed=0 if active is None else active.suppressed,
            )
            logger.warning(
                "alert %s on %s (occurrence %d): %s",
                kind,
                subject,
                alert.occurrence,
                json.dumps(facts, sort_keys=True),
            )
            if self._audit is not None:
                self._audit(
                    self.actor,
                    f"alert.{kind}",
                    subject,
                    {
                        "alert_id": alert.id,
                        "kind": kind,
                        "occurrence": alert.occurrence,
                        "suppressed": alert.suppressed,
                        "details": facts,
                    },
                )
            self._active[key] = _Active(alert=alert, last_notice=now)
            self._recent.append(alert)
        if self._on_fire is not None:
            self._on_fire(kind)
        self._enqueue(alert)
        return alert

    def clear(
        self, kind: str, subject: str, details: Mapping[str, Any] | None = None
    ) -> Alert | None:
        """Say the condition ended; the next :meth:`raise_` fires again.

        For an active alert this is a notice of its own: a log line (INFO), an audit event
        (action ``alert.resolved``) and a signed webhook with ``status`` ``"resolved"``.
        Clearing an alert that is not active does nothing.

        Parameters
        ----------
        kind, subject:
            The alert, as given to :meth:`raise_`.
        details:
            JSON-serializable facts about the end (e.g. ``{"reason": "expired"}``).

        Returns
        -------
        Alert or None
            The resolved notice, or None when the alert was not active.

        Raises
        ------
        ConfigError
            ``details`` not JSON-serializable.
        Exception
            Whatever ``audit`` raises; the alert then stays active so the next call retries.
        """
        facts = _json_facts(details)
        key = (kind, subject)
        with self._lock:
            active = self._active.get(key)
            if active is None:
                return None
            fired = active.alert
            notice = Alert(
                kind=kind,
                subject=subject,
                details=facts,
                id=uuid.uuid4().hex,
                ts=datetime.now(UTC).isoformat(),
                occurrence=fired.occurrence,
                suppressed=active.suppressed,
                status="resolved",
                resolves=fired.id,
            )
            if self._audit is not None:
                self._audit(
                    self.actor,
                    "alert.resolved",
                    subject,
                    {
                        "alert_id": notice.id,
                        "resolves": fired.id,
                        "kind": kind,
                        "fired_ts": fired.ts,
                        "suppressed": active.suppressed,
                        "details": facts,
                    },
                )
            del self._active[key]
            self._recent.append(notice)
            logger.info(
                "alert %s on %s resolved: %s", kind, subject, json.dumps(facts, sort_keys=True)
            )
        if not self._closed:
            self._enqueue(notice)
        return notice

    def active(self) -> list[Alert]:
        """The alerts whose condition has not been cleared, latest notice each."""
        with self._lock:
            return [a.alert for a in self._active.values()]

    def recent(self) -> list[Alert]:
        """The last ``history`` notices (firing and resolved), newest first."""
        with self._lock:
            return list(reversed(self._recent))

    # ----------------------------------------------------------------- delivery

    def stats(self) -> DeliveryStats:
        """Webhook delivery counts so far."""
        c = self._counts
        with c.lock:
            return DeliveryStats(c.attempts, c.delivered, c.failed, c.dropped)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued delivery has finished; False if ``timeout_s`` ran out."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout=timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Finish queued deliveries (for up to ``timeout_s``), then stop the worker."""
        self._closed = True
        worker = self._worker
        if worker is None:
            return
        if not self.flush(timeout_s):
            self._stop.set()  # cut backoff sleeps short; remaining deliveries give up
        try:
            self._queue.put(None, timeout=1.0)
        except queue.Full:
            self._stop.set()
        worker.join(timeout=max(1.0, self.request_timeout_s))

    def _enqueue(self, alert: Alert) -> None:
        if not self.webhook_urls:
            return
        body = json.dumps(alert.payload(self.actor), sort_keys=True, separators=(",", ":"))
        with self._lock:
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._run, name="bastion-alert-webhooks", daemon=True
                )
                self._worker.start()
        for url in self.webhook_urls:
            with self._idle:
                self._pending += 1
            try:
                self._queue.put_nowait((alert, url, body.encode()))
            except queue.Full:
                self._done()
                with self._counts.lock:
                    self._counts.dropped += 1
                logger.error(
                    "webhook queue full: dropped alert %s (%s on %s) for %s",
                    alert.id,
                    alert.kind,
                    alert.subject,
                    _redact(url),
                )

    def _done(self) -> None:
        with self._idle:
            self._pending -= 1
            self._idle.notify_all()

    def _run(self) -> None:
        httpx_mod = require("httpx", "alert webhooks")
        with httpx_mod.Client(follow_redirects=False) as client:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                alert, url, body = item
                try:
                    self._deliver(client, alert, url, body)
                except Exception:  # never let one bad delivery kill the worker
                    logger.exception("webhook delivery of alert %s crashed", alert.id)
                    with self._counts.lock:
                        self._counts.failed += 1
                finally:
                    self._done()

    def _deliver(self, client: httpx.Client, alert: Alert, url: str, body: bytes) -> None:
        httpx_mod = require("httpx", "alert webhooks")
        start = time.monotonic()
        deadline = start + self.total_timeout_s
        where = _redact(url)
        reason = "no attempt made"
        attempt = 0
        while attempt < self.max_attempts:
            attempt += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                reason = f"{reason}; total time cap {self.total_timeout_s}s reached"
                break
            timestamp = str(int(time.time()))
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(self._secret, timestamp, body),
                TIMESTAMP_HEADER: timestamp,
                "User-Agent": "bastion-alerts",
            }
            with self._counts.lock:
                self._counts.attempts += 1
            try:
                response = client.post(
                    url,
                    content=body,
                    headers=headers,
                    timeout=min(self.request_timeout_s, remaining),
                )
            except httpx_mod.TransportError as err:
                # The exception text can quote the URL; its type name is enough to diagnose.
                reason = f"{type(err).__name__}"
            else:
                code = response.status_code
                if 200 <= code < 300:
                    with self._counts.lock:
                        self._counts.delivered += 1
                    return
                reason = f"HTTP {code}"
                if not (code == 429 or code >= 500):
                    break  # the receiver refused this body; sending it again will not help
            if attempt >= self.max_attempts:
                break
            delay = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
            delay *= self._rng.uniform(0.5, 1.0)
            if time.monotonic() + delay >= deadline:
                reason = f"{reason}; total time cap {self.total_timeout_s}s reached"
                break
            if self._stop.wait(delay):
                reason = f"{reason}; alerter closed"
                break
        with self._counts.lock:
            self._counts.failed += 1
        logger.error(
            "webhook delivery of alert %s (%s on %s) to %s gave up after %d attempt(s): %s",
            alert.id,
            alert.kind,
            alert.subject,
            where,
            attempt,
            reason,
        )
