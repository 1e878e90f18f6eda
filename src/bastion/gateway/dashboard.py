"""A live dashboard for the gateway: traffic, latency, drift per feature and active alerts.

What: :func:`add_dashboard` registers two routes on the gateway's FastAPI app:

- ``GET /dashboard``: one self-contained HTML page (inline CSS, inline script, inline SVG
  charts; nothing loaded from anywhere else). It is static and carries no data, so it needs no
  token. The operator pastes an API token into the page; the page keeps it in
  ``sessionStorage`` (gone when the tab closes) and sends it as ``Authorization: Bearer`` to
- ``GET /dashboard/data`` (role ``serve.metrics``): JSON with, per served model, the drift
  snapshot, the inference request rate and the latency percentiles of the last
  ``rate_window_s`` seconds, and the active alerts. The page polls it every 2 s and keeps a
  few minutes of history in memory to draw the request-rate and latency lines.

Why this shape: a token in a ``?token=`` query string ends up in access logs, browser history
and ``Referer`` headers, so the page never takes one; keeping the page free of data means it
can be public. The page is protected against script injection twice over: every value from the
server is put into the DOM as text (``textContent`` / SVG attributes, never ``innerHTML``),
and the response's Content-Security-Policy allows only this page's own script and style
(by SHA-256 hash) and only same-origin ``fetch`` (``connect-src 'self'``), with no framing
(``frame-ancestors 'none'``) and no forms or base URL. Drift, subjects and alert details come
from traffic an attacker may control, which is why both layers matter.

How the numbers are computed: the request counter and the latency histogram of
:class:`~bastion.gateway.metrics.GatewayMetrics` are cumulative; the dashboard keeps a few
timestamped samples of them (at most one a second) and answers, per model, the change over
the window. Only inference routes (``.../infer``) count. Percentiles are interpolated
linearly inside the histogram bucket holding the rank, like Prometheus'
``histogram_quantile``; a rank in the ``+Inf`` bucket answers the largest finite bound.

Example::

    >>> add_dashboard(app, models=lambda: sorted(app.state.models),
    ...               snapshot=service.snapshot, metrics_snapshot=metrics.snapshot,
    ...               alerts=alerts_from(alerter), authorize=authorizer)  # doctest: +SKIP
"""

import base64
import hashlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bastion.exceptions import ConfigError
from bastion.gateway.metrics import REQUEST_DURATION, REQUESTS

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["DASHBOARD_CSP", "add_dashboard", "alerts_from", "histogram_quantile"]

_log = logging.getLogger(__name__)

_BUCKET = f"{REQUEST_DURATION}_bucket"


# -- numbers -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ModelCounts:
    """Cumulative inference counters of one model at one instant."""

    requests: float
    errors: float
    buckets: tuple[tuple[float, float], ...]  # (upper bound, cumulative count), increasing


def _is_infer(route: str) -> bool:
    return route.endswith("/infer")


def _counts_by_model(snapshot: Mapping[str, list[dict[str, Any]]]) -> dict[str, _ModelCounts]:
    """Per model: inference requests, error answers (status >= 400) and latency buckets."""
    requests: dict[str, float] = {}
    errors: dict[str, float] = {}
    buckets: dict[str, dict[float, float]] = {}
    for sample in snapshot.get(REQUESTS, []):
        labels = sample["labels"]
        if not _is_infer(str(labels.get("route", ""))):
            continue
        model = str(labels.get("model", ""))
        requests[model] = requests.get(model, 0.0) + float(sample["value"])
        if int(labels.get("status", 0)) >= 400:
            errors[model] = errors.get(model, 0.0) + float(sample["value"])
    for sample in snapshot.get(_BUCKET, []):
        labels = sample["labels"]
        if not _is_infer(str(labels.get("route", ""))):
            continue
        model = str(labels.get("model", ""))
        bound = float(labels["le"])  # "+Inf" parses to inf
        per = buckets.setdefault(model, {})
        per[bound] = per.get(bound, 0.0) + float(sample["value"])  # routes summed
    return {
        m: _ModelCounts(
            requests.get(m, 0.0),
            errors.get(m, 0.0),
            tuple(sorted(buckets.get(m, {}).items())),
        )
        for m in set(requests) | set(buckets)
    }


def histogram_quantile(q: float, buckets: tuple[tuple[float, float], ...]) -> float | None:
    """The ``q`` quantile of a cumulative histogram, as Prometheus' ``histogram_quantile``.

    Parameters:
        q: the quantile, in [0, 1].
        buckets: ``(upper bound, cumulative count)`` pairs in increasing bound order, the
            last bound ``inf``.

    Returns:
        The interpolated value, or None when the histogram holds no observation.

    Raises:
        ConfigError: ``q`` is outside [0, 1].

    Example::

        >>> histogram_quantile(0.5, ((0.1, 2.0), (0.2, 4.0), (math.inf, 4.0)))
        0.1
    """
    if not 0.0 <= q <= 1.0:
        raise ConfigError(f"q must be in [0, 1]; received {q!r}")
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank and cumulative > below:
            if math.isinf(bound):
                return lower  # the largest finite bound: the value is somewhere above it
            return lower + (bound - lower) * (rank - below) / (cumulative - below)
        if not math.isinf(bound):
            lower = bound
        below = cumulative
    return lower


def _minus(now: _ModelCounts, then: _ModelCounts | None) -> _ModelCounts:
    if then is None:
        return now
    old = dict(then.buckets)
    return _ModelCounts(
        now.requests - then.requests,
        now.errors - then.errors,
        tuple((b, c - old.get(b, 0.0)) for b, c in now.buckets),
    )


class _Window:
    """Timestamped counter samples over the last ``window_s`` seconds (at most one a second)."""

    def __init__(self, window_s: float, clock: Callable[[], float]) -> None:
        self.window_s = window_s
        self._clock = clock
        self._samples: deque[tuple[float, dict[str, _ModelCounts]]] = deque()
        self._lock = threading.Lock()

    def update(self, counts: dict[str, _ModelCounts]) -> tuple[float, dict[str, _ModelCounts]]:
        """Record ``counts`` as now; return (seconds covered, counts at the window's start)."""
        now = self._clock()
        with self._lock:
            # keep the newest sample at or before the window's start as the baseline
            while len(self._samples) > 1 and self._samples[1][0] <= now - self.window_s:
                self._samples.popleft()
            base = self._samples[0] if self._samples else (now, counts)
            if not self._samples or now - self._samples[-1][0] >= 1.0:
                self._samples.append((now, counts))
        return now - base[0], base[1]


def _latency_and_rate(
    name: str, now: dict[str, _ModelCounts], base: dict[str, _ModelCounts], span_s: float
) -> dict[str, Any]:
    current = now.get(name, _ModelCounts(0.0, 0.0, ()))
    delta = _minus(current, base.get(name))
    p50 = histogram_quantile(0.5, delta.buckets)
    p95 = histogram_quantile(0.95, delta.buckets)
    return {
        "requests_total": int(current.requests),
        "errors_total": int(current.errors),
        "window_s": round(span_s, 3),
        "requests_in_window": int(delta.requests),
        "rate_per_s": None if span_s <= 0 else delta.requests / span_s,
        "error_rate_per_s": None if span_s <= 0 else delta.errors / span_s,
        "latency_ms": {
            "p50": None if p50 is None else p50 * 1000.0,
            "p95": None if p95 is None else p95 * 1000.0,
        },
    }


def _json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as None (JSON has neither; the page shows a dash)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def alerts_from(alerter: Any) -> Callable[[], list[dict[str, Any]]]:
    """The ``alerts`` callable for :func:`add_dashboard` from a
    :class:`~bastion.monitoring.alerts.Alerter`: its active alerts as plain dicts."""

    def active() -> list[dict[str, Any]]:
        return [
            {
                "id": a.id,
                "kind": a.kind,
                "subject": a.subject,
                "details": dict(a.details),
                "ts": a.ts,
                "occurrence": a.occurrence,
                "suppressed": a.suppressed,
            }
            for a in alerter.active()
        ]

    return active


# -- the page ------------------------------------------------------------------------------------

_STYLE = """
:root { --fg:#1f2937; --muted:#64748b; --line:#e2e8f0; --bg:#f8fafc; --card:#fff;
  --warn:#b45309; --warn-bg:#fef3c7; --fail:#b91c1c; }
* { box-sizing: border-box; }
body { margin:0; color:var(--fg); background:var(--bg); line-height:1.45;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 24px; }
h1 { font-size: 1.5rem; margin: 0 0 4px; }
h2 { font-size: 1.15rem; margin: 26px 0 10px; padding-bottom: 4px;
  border-bottom: 1px solid var(--line); }
h3 { font-size: .95rem; margin: 0 0 6px; color: var(--muted); font-weight: 600; }
.muted, #status { color: var(--muted); font-size: .9rem; }
#status.error { color: var(--fail); }
form { margin: 12px 0; display: flex; gap: 8px; }
input { flex: 0 1 360px; padding: 6px 8px; border: 1px solid var(--line); border-radius: 6px; }
button { padding: 6px 12px; border: 1px solid var(--line); border-radius: 6px;
  background: var(--card); cursor: pointer; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 8px 0 14px; }
.card { flex: 1 1 130px; background: var(--card); border: 1px solid var(--line);
  border-radius: 8px; padding: 8px 12px; }
.card .n { font-size: 1.35rem; font-weight: 700; font-variant-numeric: tabular-nums; }
.card .label { font-size: .75rem; color: var(--muted); text-transform: uppercase;
  letter-spacing: .05em; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(340px, 1fr));
  gap: 12px; align-items: start; }
.chart { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 10px; }
svg { width: 100%; height: auto; display: block; }
svg text { font-size: 10px; fill: #475569; }
ul.alerts { list-style: none; padding: 0; margin: 0; }
ul.alerts li { margin: 6px 0; padding: 8px 12px; border-left: 4px solid var(--warn);
  background: var(--warn-bg); border-radius: 6px; overflow-wrap: anywhere; }
ul.alerts .kind { font-weight: 700; margin-right: 8px; }
ul.alerts .details { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .8rem; }
"""

_SCRIPT = """
(() => {
"use strict";
const POLL_MS = 2000, KEEP = 150, TOKEN_KEY = "bastion.dashboard.token";
const NS = "http://www.w3.org/2000/svg";
const hist = new Map();      // model name -> [{t, rate, p50, p95}]
const panels = new Map();    // model name -> its DOM nodes
const $ = (id) => document.getElementById(id);

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = String(text);
  return node;
}
function svgEl(tag, attrs) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}
function fmt(x, digits) {
  return (typeof x === "number" && isFinite(x)) ? x.toFixed(digits) : "\\u2013";
}
function setStatus(text, isError) {
  const s = $("status");
  s.textContent = text;
  s.className = isError ? "error" : "";
}

function card(parent, label) {
  const box = el("div", "card");
  const n = el("div", "n", "\\u2013");
  box.append(n, el("div", "label", label));
  parent.append(box);
  return n;
}

function chart(parent, title, cls) {
  const box = el("div", "chart");
  box.append(el("h3", null, title));
  const svg = svgEl("svg", {viewBox: "0 0 360 150", class: cls, role: "img"});
  svg.setAttribute("aria-label", title);
  box.append(svg);
  parent.append(box);
  return svg;
}

function panel(name) {
  let p = panels.get(name);
  if (p) return p;
  const section = el("section", "model");
  section.dataset.model = name;
  section.append(el("h2", null, name));
  const meta = el("div", "muted release");
  section.append(meta);
  const cards = el("div", "cards");
  section.append(cards);
  p = {
    section, meta,
    total: card(cards, "inference requests"),
    rate: card(cards, "requests / s"),
    errors: card(cards, "errors"),
    p50: card(cards, "p50 latency (ms)"),
    p95: card(cards, "p95 latency (ms)"),
    rows: card(cards, "rows in drift window"),
  };
  p.total.classList.add("requests-total");
  const charts = el("div", "charts");
  section.append(charts);
  p.rateSvg = chart(charts, "Request rate (req/s)", "rate-chart");
  p.latencySvg = chart(charts, "Latency p50 / p95 (ms)", "latency-chart");
  p.driftSvg = chart(charts, "Drift per feature (PSI)", "drift-chart");
  $("models").append(section);
  panels.set(name, p);
  return p;
}

function clear(svg) { while (svg.firstChild) svg.firstChild.remove(); }

function lines(svg, points, series) {
  // series: [{key, color, cls}]; points: [{t, ...}]
  clear(svg);
  const W = 360, H = 150, L = 40, R = 8, T = 8, B = 20;
  let ymax = 0;
  for (const pt of points) for (const s of series) {
    const v = pt[s.key];
    if (typeof v === "number" && isFinite(v)) ymax = Math.max(ymax, v);
  }
  ymax = ymax > 0 ? ymax * 1.1 : 1;
  svg.append(svgEl("line", {x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#cbd5e1"}));
  svg.append(svgEl("line", {x1: L, y1: T, x2: L, y2: H - B, stroke: "#cbd5e1"}));
  const top = svgEl("text", {x: L - 4, y: T + 8, "text-anchor": "end"});
  top.textContent = fmt(ymax, ymax < 10 ? 2 : 0);
  svg.append(top);
  const zero = svgEl("text", {x: L - 4, y: H - B, "text-anchor": "end"});
  zero.textContent = "0";
  svg.append(zero);
  const span = Math.max(1, (KEEP - 1) * POLL_MS / 1000);
  const t1 = points.length ? points[points.length - 1].t : 0;
  const x = (t) => L + (W - L - R) * (1 - Math.min(1, (t1 - t) / span));
  const y = (v) => (H - B) - (H - B - T) * (v / ymax);
  for (const s of series) {
    let d = "", pen = "M";
    for (const pt of points) {
      const v = pt[s.key];
      if (typeof v !== "number" || !isFinite(v)) { pen = "M"; continue; }
      d += pen + x(pt.t).toFixed(1) + "," + y(v).toFixed(1) + " ";
      pen = "L";
    }
    svg.append(svgEl("path", {d: d.trim(), fill: "none", stroke: s.color,
                              "stroke-width": 1.6, class: "series " + s.cls}));
  }
}

function bars(svg, features, threshold) {
  clear(svg);
  const W = 360, L = 110, R = 36, T = 6, row = 14;
  const H = Math.max(150, T + row * Math.max(1, features.length) + 16);
  svg.setAttribute("viewBox", "0 0 " + W + " " + H);
  let xmax = threshold * 1.5;
  for (const f of features) if (isFinite(f.psi)) xmax = Math.max(xmax, f.psi);
  const x = (v) => L + (W - L - R) * Math.min(1, v / xmax);
  features.forEach((f, i) => {
    const yTop = T + i * row;
    const name = svgEl("text", {x: L - 4, y: yTop + 10, "text-anchor": "end"});
    const label = String(f.feature);
    name.textContent = label.length > 18 ? label.slice(0, 17) + "\\u2026" : label;
    const bar = svgEl("rect", {x: L, y: yTop + 2, height: row - 4,
      width: Math.max(0.5, x(isFinite(f.psi) ? f.psi : 0) - L),
      fill: f.drifted ? "#b91c1c" : "#2563eb", class: "bar"});
    const tip = svgEl("title");
    tip.textContent = f.feature + ": PSI " + fmt(f.psi, 4);
    bar.append(tip);
    const val = svgEl("text", {x: x(isFinite(f.psi) ? f.psi : 0) + 3, y: yTop + 10});
    val.textContent = fmt(f.psi, 3);
    svg.append(name, bar, val);
  });
  const tx = x(threshold);
  svg.append(svgEl("line", {x1: tx, y1: T, x2: tx, y2: T + row * Math.max(1, features.length),
    stroke: "#b45309", "stroke-dasharray": "4 3", class: "threshold"}));
  const label = svgEl("text", {x: tx, y: H - 4, "text-anchor": "middle"});
  label.textContent = "threshold " + fmt(threshold, 2);
  svg.append(label);
}

function renderModel(m, threshold) {
  const p = panel(m.name);
  const h = hist.get(m.name) || [];
  h.push({t: Date.now() / 1000, rate: m.traffic.rate_per_s,
          p50: m.traffic.latency_ms.p50, p95: m.traffic.latency_ms.p95});
  while (h.length > KEEP) h.shift();
  hist.set(m.name, h);
  p.total.textContent = String(m.traffic.requests_total);
  p.rate.textContent = fmt(m.traffic.rate_per_s, 2);
  p.errors.textContent = String(m.traffic.errors_total);
  p.p50.textContent = fmt(m.traffic.latency_ms.p50, 2);
  p.p95.textContent = fmt(m.traffic.latency_ms.p95, 2);
  const drift = m.drift || {};
  p.rows.textContent = drift.monitoring === false ? "off" : String(drift.n_rows ?? "\\u2013");
  p.meta.textContent = drift.monitoring === false ? "drift monitoring off"
    : "release " + String(drift.release ?? "?") + " \\u00b7 drifted: "
      + ((drift.drifted_features || []).join(", ") || "none");
  lines(p.rateSvg, h, [{key: "rate", color: "#2563eb", cls: "rate"}]);
  lines(p.latencySvg, h, [{key: "p50", color: "#15803d", cls: "p50"},
                          {key: "p95", color: "#b45309", cls: "p95"}]);
  bars(p.driftSvg, Array.isArray(drift.features) ? drift.features : [], threshold);
}

function renderAlerts(alerts) {
  const list = $("alerts");
  list.replaceChildren();
  $("alerts-count").textContent = String(alerts.length);
  if (!alerts.length) { list.append(el("li", "none muted", "no active alerts")); return; }
  for (const a of alerts) {
    const li = el("li", "alert");
    li.append(el("span", "kind", a.kind), el("span", "subject", a.subject),
              el("span", "muted", " \\u00b7 " + String(a.ts ?? "")));
    li.append(el("div", "details", JSON.stringify(a.details ?? {})));
    list.append(li);
  }
}

// Each start() begins a new polling loop and ends the previous one; an auth failure stops
// polling until a token is submitted, so a wrong token is not retried every 2 s.
let generation = 0, timer = null;
function start() {
  generation += 1;
  clearTimeout(timer);
  poll(generation);
}

async function poll(gen) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = token ? {Authorization: "Bearer " + token} : {};
  let again = true;
  try {
    const r = await fetch("dashboard/data", {headers, cache: "no-store",
                                             credentials: "omit", redirect: "error"});
    if (gen !== generation) return;
    if (r.status === 401 || r.status === 403) {
      again = false;
      setStatus(r.status === 401 ? "this token was refused (401): paste a valid one"
                                 : "this token lacks the role serve.metrics (403)", true);
      return;
    }
    if (!r.ok) { setStatus("data request failed: HTTP " + r.status, true); return; }
    const data = await r.json();
    for (const m of data.models) renderModel(m, data.psi_threshold);
    renderAlerts(data.alerts);
    setStatus("updated " + new Date(data.ts * 1000).toLocaleTimeString(), false);
  } catch (err) {
    setStatus("data request failed: " + String(err && err.message || err), true);
  } finally {
    if (again && gen === generation) timer = setTimeout(() => poll(gen), POLL_MS);
  }
}

$("auth").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const value = $("token").value.trim();
  if (value) sessionStorage.setItem(TOKEN_KEY, value); else sessionStorage.removeItem(TOKEN_KEY);
  $("token").value = "";
  setStatus(value ? "token kept for this tab" : "polling without a token", false);
  start();
});
$("forget").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  generation += 1;
  clearTimeout(timer);
  setStatus("token forgotten; polling stopped", false);
});
if (sessionStorage.getItem(TOKEN_KEY)) start();
else setStatus("paste an API token with the role serve.metrics (or submit an empty one "
               + "when the gateway runs without authentication)", false);
})();
"""


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


DASHBOARD_CSP = (
    "default-src 'none'; "
    f"script-src {_sha256(_SCRIPT)}; "
    f"style-src {_sha256(_STYLE)}; "
    "connect-src 'self'; img-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
"""The page's Content-Security-Policy: only its own inline script and style (by hash), and
same-origin requests."""

_PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Bastion gateway dashboard</title>
<style>{_STYLE}</style>
</head>
<body>
<main>
<h1>Bastion gateway dashboard</h1>
<div id="status">loading\u2026</div>
<form id="auth" autocomplete="off">
<input id="token" type="password" placeholder="API token (role serve.metrics)"
  aria-label="API token">
<button type="submit">Use token</button>
<button type="button" id="forget">Forget token</button>
</form>
<h2>Active alerts (<span id="alerts-count">0</span>)</h2>
<ul id="alerts" class="alerts"></ul>
<div id="models"></div>
</main>
<script>{_SCRIPT}</script>
</body>
</html>
"""

_PAGE_HEADERS = {
    "Content-Security-Policy": DASHBOARD_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


# -- the routes ----------------------------------------------------------------------------------


def add_dashboard(
    app: "FastAPI",
    *,
    models: Callable[[], list[str]],
    snapshot: Callable[[str], dict[str, Any]],
    metrics_snapshot: Callable[[], dict[str, Any]],
    alerts: Callable[[], list[dict[str, Any]]] | None,
    authorize: Callable[[str | None, str], object] | None,
    psi_threshold: float = 0.2,
    rate_window_s: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Register ``GET /dashboard`` (the page) and ``GET /dashboard/data`` (its JSON) on ``app``.

    Parameters:
        app: the gateway app (:func:`~bastion.gateway.oip.create_oip_app`, whose exception
            handlers turn the authorizer's refusals into 401 / 403).
        models: the names of the models served now (``lambda: sorted(app.state.models)``).
        snapshot: model name -> drift snapshot (``GatewayService.snapshot``); a failing call
            is logged and reported as ``{"monitoring": false, "error": "snapshot failed"}``.
        metrics_snapshot: ``GatewayMetrics.snapshot``.
        alerts: the active alerts as dicts (:func:`alerts_from`), or None for none.
        authorize: ``(authorization header, operation) -> identity``, raising
            ``GuardRejectedError``; called with ``"serve.metrics"`` for the data. None leaves
            the data open (only for a gateway that listens on localhost).
        psi_threshold: the PSI above which a feature counts as drifted (the line on the bars).
        rate_window_s: how far back request rates and latency percentiles reach.
        clock: monotonic seconds (for tests).

    Raises:
        ConfigError: ``rate_window_s`` or ``psi_threshold`` is not positive.
        MissingExtraError: fastapi is not installed.

    The JSON of ``/dashboard/data``::

        {"ts": <unix seconds>, "psi_threshold": 0.2,
         "models": [{"name": "iris",
                     "drift": <snapshot(name)>,
                     "traffic": {"requests_total", "errors_total", "window_s",
                                 "requests_in_window", "rate_per_s", "error_rate_per_s",
                                 "latency_ms": {"p50", "p95"}}}],
         "alerts": [<alert dict>, ...]}

    ``rate_per_s`` is None until two samples exist; percentiles are None when no inference
    ended in the window.
    """
    if not rate_window_s > 0:
        raise ConfigError(f"rate_window_s must be > 0; received {rate_window_s!r}")
    if not psi_threshold > 0:
        raise ConfigError(f"psi_threshold must be > 0; received {psi_threshold!r}")
    from bastion._optional import require

    require("fastapi", "the gateway dashboard")
    from fastapi import Request
    from fastapi.responses import HTMLResponse, JSONResponse

    window = _Window(rate_window_s, clock)
    # the baseline: counts at startup, so the first poll already has a rate
    window.update(_counts_by_model(metrics_snapshot()))

    @app.get("/dashboard", include_in_schema=False)
    def get_dashboard() -> HTMLResponse:
        return HTMLResponse(_PAGE, headers=_PAGE_HEADERS)

    @app.get("/dashboard/data", include_in_schema=False)
    def get_dashboard_data(request: Request) -> JSONResponse:
        # (no `from __future__ import annotations` in this module: FastAPI reads this
        # annotation at runtime to inject the request)
        if authorize is not None:
            authorize(request.headers.get("authorization"), "serve.metrics")
        counts = _counts_by_model(metrics_snapshot())
        span_s, base = window.update(counts)
        out: list[dict[str, Any]] = []
        for name in models():
            try:
                drift: dict[str, Any] = dict(snapshot(name))
            except Exception:  # one model's monitor must not blank the whole dashboard
                _log.exception("dashboard: drift snapshot of %r failed", name)
                drift = {"monitoring": False, "error": "snapshot failed"}
            out.append(
                {
                    "name": name,
                    "drift": drift,
                    "traffic": _latency_and_rate(name, counts, base, span_s),
                }
            )
        body = {
            "ts": time.time(),
            "psi_threshold": psi_threshold,
            "models": out,
            "alerts": [] if alerts is None else alerts(),
        }
        headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
        return JSONResponse(_json_safe(body), headers=headers)
