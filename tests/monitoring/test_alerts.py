"""Alerter: signed webhooks to a real local receiver, retries, give-up, dedup, audit events."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from bastion.exceptions import ConfigError
from bastion.monitoring.alerts import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Alerter,
    sign,
    verify_signature,
)

SECRET = "test-secret-0123456789abcdef"


@dataclass
class Receiver:
    """A webhook receiver that answers ``statuses`` in turn (then 200) and checks signatures."""

    url: str
    statuses: list[int] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    receiver: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        sig = self.headers.get(SIGNATURE_HEADER, "")
        ts = self.headers.get(TIMESTAMP_HEADER, "")
        with self.receiver.lock:
            status = self.receiver.statuses.pop(0) if self.receiver.statuses else 200
            self.receiver.received.append(
                {
                    "path": self.path,
                    "body": body,
                    "timestamp": ts,
                    "signature": sig,
                    "valid": verify_signature(SECRET, ts, body, sig),
                    "status": status,
                }
            )
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    handler = type("Handler", (_Handler,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    rec = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}/hook/tok3n")
    handler.receiver = rec
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class AuditRecorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, dict[str, Any]]] = []

    def __call__(self, actor: str, action: str, obj: str, details: Any) -> None:
        self.events.append((actor, action, obj, dict(details)))


def fast(**kw: Any) -> dict[str, Any]:
    """Quick retry settings for tests."""
    base: dict[str, Any] = {
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "total_timeout_s": 5.0,
        "request_timeout_s": 2.0,
        "random_state": 0,
    }
    return {**base, **kw}


def test_signature_roundtrip_and_replay_window() -> None:
    body = b'{"a":1}'
    header = sign(SECRET, "1700000000", body)
    # The documented scheme, computed independently: HMAC-SHA256 over f"{timestamp}.{body}".
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"sha256={expected}"
    assert header.startswith("sha256=")
    assert len(header) == len("sha256=") + 64
    assert verify_signature(SECRET, "1700000000", body, header, now=1700000100)
    assert not verify_signature(SECRET, "1700000000", body, header, now=1700000301)  # too old
    assert not verify_signature(SECRET, "1700000001", body, header, now=1700000001)  # ts moved
    assert not verify_signature(SECRET, "1700000000", body + b" ", header, now=1700000000)
    assert not verify_signature("another-secret-0000", "1700000000", body, header, now=1700000000)
    assert not verify_signature(SECRET, "17e8", body, header, now=1700000000)
    assert not verify_signature(SECRET, "1700000000", body, header[7:], now=1700000000)


def test_webhook_is_signed_and_audit_gets_the_event(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    audit = AuditRecorder()
    fired: list[str] = []
    caplog.set_level(logging.INFO, logger="bastion.monitoring.alerts")
    with Alerter(
        audit=audit, webhook_urls=[receiver.url], secret=SECRET, on_fire=fired.append, **fast()
    ) as alerter:
        alert = alerter.raise_("drift", "iris@3", {"feature": "petal_length", "psi": 0.41})
        assert alert is not None
        assert alerter.flush(5.0)
        assert alerter.stats().delivered == 1
    assert len(receiver.received) == 1
    got = receiver.received[0]
    assert got["valid"], got
    assert got["path"] == "/hook/tok3n"
    assert abs(int(got["timestamp"]) - time.time()) < 30
    payload = json.loads(got["body"])
    assert payload["id"] == alert.id
    assert payload["kind"] == "drift"
    assert payload["subject"] == "iris@3"
    assert payload["details"] == {"feature": "petal_length", "psi": 0.41}
    assert audit.events == [
        (
            "bastion.alerts",
            "alert.drift",
            "iris@3",
            {
                "alert_id": alert.id,
                "kind": "drift",
                "occurrence": 1,
                "suppressed": 0,
                "details": {"feature": "petal_length", "psi": 0.41},
            },
        )
    ]
    assert fired == ["drift"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "iris@3" in warnings[0].getMessage()
    # A tampered body would not verify with the signature that came with it.
    assert not verify_signature(SECRET, got["timestamp"], got["body"][:-1], got["signature"])


def test_retries_after_503_then_succeeds(receiver: Receiver) -> None:
    receiver.statuses = [503, 502]
    with Alerter(webhook_urls=[receiver.url], secret=SECRET, **fast()) as alerter:
        alerter.raise_("error_spike", "iris@3", {"rate": 0.2})
        assert alerter.flush(5.0)
        stats = alerter.stats()
    assert [r["status"] for r in receiver.received] == [503, 502, 200]
    assert all(r["valid"] for r in receiver.received)
    assert len({json.loads(r["body"])["id"] for r in receiver.received}) == 1
    assert (stats.attempts, stats.delivered, stats.failed) == (3, 1, 0)


def test_gives_up_after_max_attempts_and_logs(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.statuses = [503] * 10
    with Alerter(webhook_urls=[receiver.url], secret=SECRET, **fast(max_attempts=3)) as alerter:
        alerter.raise_("ood_burst", "iris@3", {"share": 0.3})
        assert alerter.flush(5.0)
        stats = alerter.stats()
    assert len(receiver.received) == 3
    assert (stats.attempts, stats.delivered, stats.failed) == (3, 0, 1)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "gave up after 3 attempt(s): HTTP 503" in errors[0]
    # Logs name the webhook by host and port only: the path token and the secret stay out.
    assert "tok3n" not in caplog.text
    assert SECRET not in caplog.text


def test_client_error_is_not_retried(receiver: Receiver) -> None:
    receiver.statuses = [400]
    with Alerter(webhook_urls=[receiver.url], secret=SECRET, **fast()) as alerter:
        alerter.raise_("drift", "iris@3")
        assert alerter.flush(5.0)
        assert alerter.stats().failed == 1
    assert len(receiver.received) == 1


def test_connection_errors_stop_at_the_total_time_cap(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = fast(max_attempts=1000, backoff_base_s=0.05, backoff_max_s=0.1, total_timeout_s=0.5)
    with Alerter(webhook_urls=[f"http://127.0.0.1:{port}/x"], secret=SECRET, **settings) as al:
        start = time.monotonic()
        al.raise_("extraction", "client-7", {"queries": 5000})
        assert al.flush(5.0)
        elapsed = time.monotonic() - start
        stats = al.stats()
    assert stats.failed == 1
    assert stats.delivered == 0
    assert 2 <= stats.attempts < 1000
    assert elapsed < 2.0
    assert "ConnectError" in caplog.text
    assert "total time cap" in caplog.text


def test_dedup_until_cleared(receiver: Receiver) -> None:
    audit = AuditRecorder()
    with Alerter(audit=audit, webhook_urls=[receiver.url], secret=SECRET, **fast()) as alerter:
        first = alerter.raise_("drift", "iris@3", {"psi": 0.4})
        assert first is not None
        assert alerter.raise_("drift", "iris@3", {"psi": 0.5}) is None
        assert alerter.raise_("drift", "iris@3", {"psi": 0.6}) is None
        other = alerter.raise_("drift", "iris@4", {"psi": 0.4})  # another subject fires
        assert other is not None
        assert alerter.flush(5.0)
        assert len(receiver.received) == 2
        assert len(audit.events) == 2
        assert {a.subject for a in alerter.active()} == {"iris@3", "iris@4"}

        assert alerter.clear("drift", "iris@3") is not None
        assert alerter.clear("drift", "iris@3") is None  # not active: no second notice
        again = alerter.raise_("drift", "iris@3", {"psi": 0.45})
        assert again is not None
        assert again.id != first.id
        assert again.occurrence == 1
        assert alerter.flush(5.0)
    assert len(receiver.received) == 4  # 2 firing, 1 resolved, 1 firing again
    assert [e[1:3] for e in audit.events] == [
        ("alert.drift", "iris@3"),
        ("alert.drift", "iris@4"),
        ("alert.resolved", "iris@3"),
        ("alert.drift", "iris@3"),
    ]
    statuses = [json.loads(r["body"])["status"] for r in receiver.received]
    assert sorted(statuses) == ["firing", "firing", "firing", "resolved"]
    last = json.loads(receiver.received[3]["body"])
    assert last["details"] == {"psi": 0.45}
    assert last["status"] == "firing"


def test_clearing_an_active_alert_sends_a_signed_resolved_notice(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    audit = AuditRecorder()
    fired: list[str] = []
    caplog.set_level(logging.INFO, logger="bastion.monitoring.alerts")
    with Alerter(
        audit=audit, webhook_urls=[receiver.url], secret=SECRET, on_fire=fired.append, **fast()
    ) as alerter:
        alert = alerter.raise_("extraction", "m@1:id:eve", {"queries": 120})
        assert alert is not None
        assert alerter.raise_("extraction", "m@1:id:eve", {"queries": 130}) is None
        assert alerter.flush(5.0)
        resolved = alerter.clear("extraction", "m@1:id:eve", {"reason": "expired"})
        assert resolved is not None
        assert alerter.active() == []
        assert alerter.flush(5.0)
        assert alerter.stats().delivered == 2
    assert fired == ["extraction"]  # metrics count fired alerts only
    firing, ended = (json.loads(r["body"]) for r in receiver.received)
    assert all(r["valid"] for r in receiver.received)
    assert firing["status"] == "firing"
    assert "resolves" not in firing
    assert ended == {
        "id": resolved.id,
        "kind": "extraction",
        "subject": "m@1:id:eve",
        "status": "resolved",
        "details": {"reason": "expired"},
        "ts": resolved.ts,
        "occurrence": 1,
        "suppressed": 1,
        "source": "bastion.alerts",
        "resolves": alert.id,
    }
    assert ended["id"] != alert.id  # receivers drop replays by id: a new notice, a new id
    assert audit.events[-1] == (
        "bastion.alerts",
        "alert.resolved",
        "m@1:id:eve",
        {
            "alert_id": resolved.id,
            "resolves": alert.id,
            "kind": "extraction",
            "fired_ts": alert.ts,
            "suppressed": 1,
            "details": {"reason": "expired"},
        },
    )
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("resolved" in m and "m@1:id:eve" in m for m in infos)


def test_clear_keeps_the_alert_active_when_the_audit_fails() -> None:
    calls: list[str] = []

    def audit(actor: str, action: str, obj: str, details: Any) -> None:
        calls.append(action)
        if action == "alert.resolved" and calls.count(action) == 1:
            raise OSError("disk full")

    alerter = Alerter(audit=audit)
    assert alerter.raise_("drift", "iris@3") is not None
    with pytest.raises(OSError, match="disk full"):
        alerter.clear("drift", "iris@3")
    assert [a.subject for a in alerter.active()] == ["iris@3"]
    assert alerter.clear("drift", "iris@3") is not None
    assert alerter.active() == []
    with pytest.raises(ConfigError, match="JSON-serializable"):
        alerter.clear("drift", "iris@3", {"bad": object()})


def test_renotify_interval() -> None:
    now = [100.0]
    audit = AuditRecorder()
    alerter = Alerter(audit=audit, renotify_after_s=60.0, clock=lambda: now[0])
    assert alerter.raise_("error_spike", "iris@3") is not None
    now[0] = 130.0
    assert alerter.raise_("error_spike", "iris@3") is None
    assert alerter.raise_("error_spike", "iris@3") is None
    now[0] = 161.0
    renotice = alerter.raise_("error_spike", "iris@3")
    assert renotice is not None
    assert (renotice.occurrence, renotice.suppressed) == (2, 2)
    assert alerter.raise_("error_spike", "iris@3") is None
    assert [e[3]["occurrence"] for e in audit.events] == [1, 2]


def test_failing_audit_leaves_the_alert_inactive() -> None:
    calls: list[str] = []

    def audit(actor: str, action: str, obj: str, details: Any) -> None:
        calls.append(obj)
        if len(calls) == 1:
            raise ConnectionError("database down")

    alerter = Alerter(audit=audit)
    with pytest.raises(ConnectionError):
        alerter.raise_("drift", "iris@3")
    assert alerter.active() == []
    assert alerter.raise_("drift", "iris@3") is not None  # retried, not suppressed
    assert calls == ["iris@3", "iris@3"]


def test_full_queue_drops_instead_of_blocking(receiver: Receiver) -> None:
    # A receiver that keeps failing holds the single worker busy; the queue holds one more.
    receiver.statuses = [503] * 50
    settings = fast(max_attempts=50, backoff_base_s=0.05, backoff_max_s=0.05, total_timeout_s=1.0)
    alerter = Alerter(webhook_urls=[receiver.url], secret=SECRET, queue_size=1, **settings)
    start = time.monotonic()
    for i in range(5):
        alerter.raise_("extraction", f"client-{i}")
    assert time.monotonic() - start < 0.5  # raise_ never waited on the receiver
    alerter.close(timeout_s=5.0)
    stats = alerter.stats()
    assert stats.dropped >= 3
    assert stats.dropped + stats.failed + stats.delivered == 5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"webhook_urls": ["ftp://example.org/x"], "secret": SECRET}, "must be http"),
        ({"webhook_urls": ["https:///nohost"], "secret": SECRET}, "must be http"),
        ({"webhook_urls": ["https://example.org/x"]}, "secret must be at least 16 bytes"),
        ({"webhook_urls": ["https://example.org/x"], "secret": "short"}, "at least 16"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"total_timeout_s": 0}, "total_timeout_s"),
        ({"renotify_after_s": -1.0}, "renotify_after_s"),
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Alerter(**kwargs)


def test_bad_alerts_are_refused_and_secret_not_in_repr() -> None:
    alerter = Alerter(webhook_urls=["https://hooks.example/secret-path"], secret=SECRET)
    with pytest.raises(ConfigError, match="kind must be one of"):
        alerter.raise_("meteor", "iris@3")
    with pytest.raises(ConfigError, match="non-empty"):
        alerter.raise_("drift", "")
    with pytest.raises(ConfigError, match="JSON-serializable"):
        alerter.raise_("drift", "iris@3", {"x": object()})
    assert alerter.active() == []
    text = repr(alerter)
    assert SECRET not in text
    assert "secret-path" not in text
    assert "hooks.example" in text
    alerter.close()
    with pytest.raises(ConfigError, match="closed"):
        alerter.raise_("drift", "iris@3")
