"""The gateway's admin routes: alerts and the audit trail, for role ``serve.admin``.

``GET /v2/admin/alerts``
    ``{"active": [notice, ...], "recent": [notice, ...]}``: the alerts whose condition has not
    ended (latest notice each) and the last notices the gateway sent, firing and resolved,
    newest first (the :class:`~bastion.monitoring.alerts.Alerter` keeps a bounded history). A
    notice is the webhook's JSON object (``id``, ``kind``, ``subject``, ``status``,
    ``details``, ``ts``, ``occurrence``, ``suppressed``, ``source``; ``resolves`` on a
    resolved one).

``GET /v2/admin/audit?limit=N&action=PREFIX``
    ``{"head": {"seq", "hash"}, "events": [event, ...]}``: the last ``limit`` (1-1000,
    default 100) events of the registry's hash-chained audit trail, newest first, optionally
    only those whose action starts with ``PREFIX`` (``alert.``, ``serve.``); the filter reads
    at most the last :data:`AUDIT_SCAN` events. ``head`` is the chain's head, to compare with
    a signed checkpoint; ``bastion audit verify`` checks the whole chain offline.

Both answer 401 without a valid token and 403 for a role other than admin; they are in the
served OpenAPI document like every other route.
"""

# no ``from __future__ import annotations``: FastAPI reads the routes' annotations at
# definition time, and ``Request`` / ``Query`` are imported inside add_admin_routes (lazily)
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["AUDIT_SCAN", "MAX_AUDIT_LIMIT", "add_admin_routes", "recent_audit"]

MAX_AUDIT_LIMIT = 1000
AUDIT_SCAN = 10_000  # events read back at most when filtering by action


def recent_audit(log: Any, limit: int, action: str | None) -> dict[str, Any]:
    """The last ``limit`` events of audit ``log`` (an
    :class:`~bastion.governance.audit.AuditLog`), newest first, those whose action starts
    with ``action`` when given; with the chain's head."""
    seq, digest = log.head()
    window = limit if action is None else max(limit, AUDIT_SCAN)
    events = [
        e.to_dict()
        for e in log.events(since=max(0, seq - window))
        if e.seq <= seq and (action is None or e.action.startswith(action))
    ]
    return {"head": {"seq": seq, "hash": digest}, "events": events[::-1][:limit]}


def add_admin_routes(
    app: "FastAPI",
    *,
    authorize: Callable[[Any, str], Any] | None,
    alerter: Any | None,
    audit_log: Any | None,
) -> None:
    """Add ``/v2/admin/alerts`` (when ``alerter`` is given) and ``/v2/admin/audit`` (when
    ``audit_log`` is given) to FastAPI ``app``.

    ``authorize(authorization_header, operation)`` raises the guards' 401 / 403 (a
    :class:`~bastion.gateway.guards.auth.TokenAuthorizer`); None leaves the routes open, for
    a gateway started with ``--allow-anonymous`` (local experiments only).
    """
    from fastapi import Query, Request

    def check(request: Request) -> None:
        if authorize is not None:
            authorize(request.headers.get("authorization"), "serve.admin")

    if alerter is not None:
        source = str(getattr(alerter, "actor", "bastion.alerts"))

        @app.get("/v2/admin/alerts")
        def get_alerts(request: Request) -> dict[str, Any]:
            check(request)
            return {
                "active": [a.payload(source) for a in alerter.active()],
                "recent": [a.payload(source) for a in alerter.recent()],
            }

    if audit_log is not None:

        @app.get("/v2/admin/audit")
        def get_audit(
            request: Request,
            limit: int = Query(100, ge=1, le=MAX_AUDIT_LIMIT),
            action: str | None = Query(None, max_length=200),
        ) -> dict[str, Any]:
            check(request)
            return recent_audit(audit_log, limit, action or None)
