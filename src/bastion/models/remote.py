"""Adapter for a model served over the Open Inference Protocol v2 (KServe, Triton, MLServer,
``bastion serve``).

Request: ``POST {url}/v2/models/{model_name}[/versions/{version}]/infer`` with one input
tensor ``{"name": input_name, "shape": [rows, features], "datatype": "FP32"|"FP64",
"data": [...row-major...]}``.

Output naming convention (configurable through ``RemoteEndpoint.label_outputs`` and
``proba_outputs``): the first output named ``label`` or ``predict`` holds one label per row;
the first named ``probabilities`` or ``predict_proba`` holds a (rows, classes) matrix. This is
what ``bastion serve`` and :func:`bastion.gateway.oip.create_oip_app` answer; MLServer's
scikit-learn runtime uses ``predict`` / ``predict_proba``. Whether the model has a probability
output, and its ``classes``, are read once from the model metadata
(``GET {url}/v2/models/{model_name}``; ``classes`` from its ``parameters``, a Bastion
extension) unless the endpoint states them.

Transport: one ``httpx.Client`` per adapter; TLS verified by default (``verify_tls`` may name
a CA bundle); a bearer token read from the environment variable ``auth_token_env`` at each
request, never stored in messages; connection errors, timeouts and 5xx answers are retried
with exponential backoff (``backoff_s * 2**attempt``); a 429 (the endpoint's rate cap) is
waited out as its ``Retry-After`` says and sent again (``rate_limit_waits``); other 4xx
answers never are. Where the endpoint's cap is known (``requests_per_second``,
``queries_per_second``), every attempt is paced under it (:mod:`bastion._pacing`), whichever
check or attack sends it, so that a cap-abiding client is never throttled; an attack's own
cap joins it for the attack's requests (:meth:`RemoteAdapter.paced`).
"""

from __future__ import annotations

import base64
import email.utils
import math
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import numpy as np
import pandas as pd

from bastion._deadline import request_deadline
from bastion._optional import require
from bastion._pacing import RateLimiter, wait_for_all
from bastion.exceptions import ConfigError, DataError, RemoteDeadlineError, RemoteModelError
from bastion.models.base import ArrayLike, Capability, ModelAdapter, ModelInfo

__all__ = [
    "OIP_DATATYPES",
    "RemoteAdapter",
    "RemoteEndpoint",
    "from_oip_datatype",
    "retry_after_s",
    "to_oip_datatype",
]

# OIP v2 tensor datatype -> numpy dtype (BYTES carries strings).
OIP_DATATYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}


def to_oip_datatype(dtype: Any) -> str:
    """The OIP datatype name for a numpy dtype (strings and objects map to ``BYTES``)."""
    dt = np.dtype(dtype)
    for name, np_type in OIP_DATATYPES.items():
        if name != "BYTES" and dt == np.dtype(np_type):
            return name
    return "BYTES"


def from_oip_datatype(name: str) -> Any:
    """The numpy dtype for an OIP datatype name.

    Raises:
        DataError: the name is not an OIP datatype.
    """
    try:
        return OIP_DATATYPES[name]
    except KeyError:
        raise DataError(
            f"datatype {name!r} is not an Open Inference Protocol datatype; allowed: "
            f"{sorted(OIP_DATATYPES)}"
        ) from None


@dataclass(frozen=True)
class RemoteEndpoint:
    """Where and how to reach a remote model.

    Parameters:
        url: base URL of the server, e.g. ``https://models.example:8443`` (the ``/v2/...``
            paths are appended).
        model_name: the model's name on the server.
        version: the model version, or None for the server's default.
        headers: extra HTTP headers (do not put secrets here; use ``auth_token_env``).
        auth_token_env: name of an environment variable holding the token.
        auth_header, auth_scheme: the token is sent as ``{auth_header}: {auth_scheme} <token>``
            (an empty scheme sends the bare token, e.g. for ``X-API-Key``).
        verify_tls: True (system CAs), False (no verification) or a CA bundle path.
        timeout_s: seconds per attempt (connect, read, write and pool).
        retries: retries after the first attempt on connection errors, timeouts and 5xx.
        backoff_s: first retry delay; doubles at each retry.
        rate_limit_waits: HTTP 429 answers (the endpoint's rate cap) waited out per request,
            as ``Retry-After`` says (else the backoff); they do not count as ``retries``.
        max_retry_after_s: the longest wait between two attempts: the doubling backoff stops
            growing there, and a ``Retry-After`` above it fails the request.
        requests_per_second, queries_per_second: the endpoint's cap on requests and on rows
            per second, where it is known: every attempt is spaced under it (retries too),
            for every check that queries the model. None: unpaced (429s are waited out).
        input_name: name of the input tensor.
        datatype: ``"FP32"`` or ``"FP64"``; None picks FP32 for float32 rows, else FP64.
        classes: label of each probability column; None reads them from the metadata.
        probabilities: whether the model has a probability output; None asks the metadata.
        label_outputs, proba_outputs: output names accepted for labels and probabilities.

    Example::

        >>> endpoint = RemoteEndpoint("http://127.0.0.1:8080", "cancer", auth_token_env="TOKEN")
        >>> endpoint.model_path()
        '/v2/models/cancer'
    """

    url: str
    model_name: str
    version: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    auth_token_env: str | None = None
    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer"
    verify_tls: bool | str = True
    timeout_s: float = 10.0
    retries: int = 3
    backoff_s: float = 0.2
    rate_limit_waits: int = 30
    max_retry_after_s: float = 60.0
    requests_per_second: float | None = None
    queries_per_second: float | None = None
    input_name: str = "input-0"
    datatype: str | None = None
    classes: Sequence[Any] | None = None
    probabilities: bool | None = None
    label_outputs: tuple[str, ...] = ("label", "predict")
    proba_outputs: tuple[str, ...] = ("probabilities", "predict_proba")

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"url must be an http(s) URL; received {_redact_url(self.url)!r}")
        if not self.model_name:
            raise ConfigError("model_name must not be empty")
        if self.timeout_s <= 0:
            raise ConfigError(f"timeout_s must be > 0; received {self.timeout_s}")
        if self.retries < 0:
            raise ConfigError(f"retries must be >= 0; received {self.retries}")
        if self.backoff_s < 0:
            raise ConfigError(f"backoff_s must be >= 0; received {self.backoff_s}")
        if self.rate_limit_waits < 0:
            raise ConfigError(f"rate_limit_waits must be >= 0; received {self.rate_limit_waits}")
        if not self.max_retry_after_s >= 0:
            raise ConfigError(f"max_retry_after_s must be >= 0; received {self.max_retry_after_s}")
        for cap in ("requests_per_second", "queries_per_second"):
            value = getattr(self, cap)
            if value is not None and not (isinstance(value, int | float) and 0 < value < math.inf):
                raise ConfigError(f"{cap} must be a finite number > 0 or None; received {value!r}")
        if self.datatype not in (None, "FP32", "FP64"):
            raise ConfigError(
                f"datatype must be 'FP32', 'FP64' or None; received {self.datatype!r}"
            )
        if isinstance(self.verify_tls, str) and not os.path.isfile(self.verify_tls):
            raise ConfigError(
                f"verify_tls names CA bundle {self.verify_tls!r}, which does not exist"
            )
        if any(k.lower() in ("authorization", self.auth_header.lower()) for k in self.headers):
            raise ConfigError(
                f"headers must not carry {self.auth_header!r}: put the token in an environment "
                "variable named by auth_token_env (headers may end up in logs and reports)"
            )

    def model_path(self) -> str:
        """``/v2/models/{name}[/versions/{version}]`` with both parts URL-quoted."""
        path = f"/v2/models/{quote(self.model_name, safe='')}"
        if self.version is not None:
            path += f"/versions/{quote(self.version, safe='')}"
        return path


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait: a number of seconds, or an HTTP date
    (RFC 9110; a date in the past is 0). None when absent or unreadable.

    Example::

        >>> retry_after_s("2"), retry_after_s(None), retry_after_s("soon")
        (2.0, None, None)
    """
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def _redact_url(url: str) -> str:
    """The URL without user:password and without its query string."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address keeps its brackets (it read http://::1:18080)
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _shown_location(location: str) -> str:
    """A redirect's target as a message may show it: no credentials, no query string; a
    relative one by its path; "nowhere" when there is none."""
    if not location.strip():
        return "nowhere"
    try:
        shown = _redact_url(location)
    except ValueError:  # a port out of range
        return "an unparsable URL"
    return shown or urlsplit(location).path or "a URL with a query string only"


def _user_info(url: str) -> str | None:
    """The URL's ``user:password`` as HTTP Basic auth sends them (decoded), or None."""
    parts = urlsplit(url)
    if parts.username is None:
        return None
    return f"{unquote(parts.username)}:{unquote(parts.password or '')}"


class RemoteAdapter(ModelAdapter):
    """A classifier behind an Open Inference Protocol v2 REST endpoint.

    Capabilities: ``predict``, plus ``predict_proba`` when the model has a probability
    output. Unless the endpoint states ``classes`` and ``probabilities``, the constructor
    reads the model metadata once (that request is not counted as a query).

    Parameters:
        endpoint: where and how to reach the model.
        name: the model's name in reports (defaults to the endpoint's model name).

    Raises:
        RemoteModelError: the server cannot be reached or answers with an error (the message
            names the URL and the HTTP status, never the token).
        ConfigError: ``auth_token_env`` names an unset variable.
        MissingExtraError: httpx is not installed.

    Example::

        >>> endpoint = RemoteEndpoint("http://127.0.0.1:8080", "cancer")
        >>> model = RemoteAdapter(endpoint)  # doctest: +SKIP
        >>> model.predict(X_test)  # doctest: +SKIP
    """

    def __init__(self, endpoint: RemoteEndpoint, name: str | None = None) -> None:
        httpx = require("httpx", "remote models")
        self.endpoint = endpoint
        self._base = endpoint.url.rstrip("/")
        self._safe_base = _redact_url(self._base)
        verify: Any = endpoint.verify_tls
        if isinstance(verify, str):
            import ssl

            # httpx deprecated CA paths in verify=; an SSLContext is the supported form.
            verify = ssl.create_default_context(cafile=verify)
        self._client = httpx.Client(
            verify=verify, timeout=httpx.Timeout(endpoint.timeout_s), follow_redirects=False
        )
        # the caps each attempt waits for: the endpoint's own (every caller), and those of the
        # attacks running now (paced)
        self._pacers: list[RateLimiter] = []
        if endpoint.requests_per_second is not None or endpoint.queries_per_second is not None:
            self._pacers.append(
                RateLimiter(endpoint.requests_per_second, endpoint.queries_per_second)
            )
        info = ModelInfo(
            name=name or endpoint.model_name,
            format="remote-oip",
            path=self._safe_base + endpoint.model_path(),
            details={"version": endpoint.version, "verify_tls": endpoint.verify_tls is not False},
        )
        classes: Iterable[Any] | None = endpoint.classes
        has_proba = endpoint.probabilities
        self.metadata: dict[str, Any] | None = None
        if classes is None or has_proba is None:
            try:
                self.metadata = self._request("GET", endpoint.model_path(), None)
            except BaseException:
                self._client.close()
                raise
            outputs = [str(o.get("name")) for o in self.metadata.get("outputs", []) or []]
            if has_proba is None:
                has_proba = any(o in endpoint.proba_outputs for o in outputs)
            params = self.metadata.get("parameters") or {}
            if classes is None and isinstance(params, dict) and "classes" in params:
                classes = params["classes"]
        super().__init__(info, classes=classes)
        caps = {Capability.PREDICT}
        if has_proba:
            caps.add(Capability.PREDICT_PROBA)
        self.capabilities = frozenset(caps)

    @contextmanager
    def paced(self, limiter: RateLimiter) -> Iterator[None]:
        """Within the block, every attempt this adapter sends (retries and 429 re-sends
        included) also waits for ``limiter``, which records it: an attack's own cap then
        holds for what reaches the endpoint, not only for the batches the attack hands over
        (a retry after a 0.2 s backoff broke a cap of one request a second)."""
        if limiter in self._pacers:  # nested with the same cap: one wait, one record
            yield
            return
        self._pacers.append(limiter)
        try:
            yield
        finally:
            self._pacers.remove(limiter)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def __enter__(self) -> RemoteAdapter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- ModelAdapter -------------------------------------------------------------------
    def _predict(self, X: ArrayLike) -> np.ndarray:
        outputs = self._infer(X)
        label = self._pick(outputs, self.endpoint.label_outputs)
        if label is not None:
            return label.reshape(-1)
        proba = self._pick(outputs, self.endpoint.proba_outputs)
        if proba is None or self.classes_ is None:
            raise RemoteModelError(
                f"{self._url()}: the answer has no output named "
                f"{list(self.endpoint.label_outputs)} (nor probabilities with known classes); "
                f"outputs: {sorted(outputs)}"
            )
        return self._labels_of(proba)

    def _predict_proba(self, X: ArrayLike) -> np.ndarray:
        outputs = self._infer(X)
        proba = self._pick(outputs, self.endpoint.proba_outputs)
        if proba is None:
            raise RemoteModelError(
                f"{self._url()}: the answer has no output named "
                f"{list(self.endpoint.proba_outputs)}; outputs: {sorted(outputs)}"
            )
        return proba

    # -- protocol -----------------------------------------------------------------------
    def _url(self, suffix: str = "/infer") -> str:
        return self._safe_base + self.endpoint.model_path() + suffix

    def _payload(self, X: ArrayLike) -> dict[str, Any]:
        arr = X.to_numpy() if isinstance(X, pd.DataFrame) else np.asarray(X)
        if arr.dtype.kind not in "biuf":
            raise DataError(
                f"remote model {self.info.name!r}: rows must be numeric; received dtype {arr.dtype}"
            )
        datatype = self.endpoint.datatype or ("FP32" if arr.dtype == np.float32 else "FP64")
        arr = arr.astype(OIP_DATATYPES[datatype], copy=False)
        if not np.isfinite(arr).all():
            raise DataError(
                f"remote model {self.info.name!r}: rows hold NaN or infinite values, which JSON "
                "cannot carry; impute them first"
            )
        return {
            "inputs": [
                {
                    "name": self.endpoint.input_name,
                    "shape": [int(d) for d in arr.shape],
                    "datatype": datatype,
                    "data": arr.reshape(-1).tolist(),
                }
            ]
        }

    def _infer(self, X: ArrayLike) -> dict[str, np.ndarray]:
        body = self._request("POST", self.endpoint.model_path() + "/infer", self._payload(X))
        outputs = body.get("outputs")
        if not isinstance(outputs, list):
            raise RemoteModelError(f"{self._url()}: the answer has no 'outputs' list")
        parsed: dict[str, np.ndarray] = {}
        wanted = {*self.endpoint.label_outputs, *self.endpoint.proba_outputs}
        for out in outputs:
            # only the outputs read: one this client cannot parse beside them (a BF16
            # embedding) failed every answer; the others are still listed by name
            if isinstance(out, Mapping) and str(out.get("name")) not in wanted:
                parsed.setdefault(str(out.get("name")), np.zeros(0))
                continue
            try:
                name = str(out["name"])
                dtype = from_oip_datatype(str(out["datatype"]))
                shape = [int(d) for d in out["shape"]]
                parsed[name] = np.asarray(out["data"], dtype=dtype).reshape(shape)
            except (KeyError, TypeError, ValueError) as err:
                raise RemoteModelError(
                    f"{self._url()}: malformed output tensor in the answer: {err}"
                ) from err
        return parsed

    @staticmethod
    def _pick(outputs: Mapping[str, np.ndarray], names: Iterable[str]) -> np.ndarray | None:
        for name in names:
            if name in outputs:
                return outputs[name]
        return None

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", **dict(self.endpoint.headers)}
        env = self.endpoint.auth_token_env
        if env is not None:
            token = self._token()
            if not token:
                raise ConfigError(
                    f"auth_token_env names environment variable {env!r}, which is not set"
                )
            if not all(" " <= c <= "~" for c in token):
                # httpx refused the header and its error quoted it whole, escaped past the
                # scrub ("Illegal header value b'Bearer s3cr3t\\n'"); named by variable only
                raise ConfigError(
                    f"environment variable {env!r} (auth_token_env) holds a character that "
                    "cannot go in an HTTP header (a control character or non-ASCII)"
                )
            scheme = self.endpoint.auth_scheme
            headers[self.endpoint.auth_header] = f"{scheme} {token}" if scheme else token
        return headers

    def _token(self) -> str | None:
        """The token of ``auth_token_env``, without the line end a secret file leaves (a
        Kubernetes secret, ``echo > file``)."""
        env = self.endpoint.auth_token_env
        token = os.environ.get(env) if env else None
        return token.strip() if token else None

    def _scrub(self, text: str) -> str:
        """Remove the token and any URL credentials from text that reaches an error message:
        as given, as the header's bytes would quote them, and the URL's ``user:password`` as
        HTTP Basic auth sends them (base64; a server echoing its header decoded to them)."""
        secrets: list[str] = []
        token = self._token()
        if token:
            secrets += [token, repr(token)[1:-1]]
        user_info = _user_info(self._base)
        if user_info:
            secrets += [user_info, base64.b64encode(user_info.encode()).decode()]
        for secret in sorted(set(secrets), key=len, reverse=True):
            text = text.replace(secret, "***")
        if self._base != self._safe_base:
            text = text.replace(self._base, self._safe_base)
        return text

    def _request(self, method: str, path: str, payload: dict[str, Any] | None) -> dict[str, Any]:
        """Send one request with retries; return the decoded JSON object.

        Connection errors, timeouts and 5xx answers are retried ``retries`` times with the
        doubling backoff. A 429 (the endpoint's rate cap) is waited out as its
        ``Retry-After`` says (else the backoff) and sent again, up to ``rate_limit_waits``
        times, without using up ``retries``: an attack that queries faster than the cap
        slows down instead of failing. Each attempt first waits for the caps that pace this
        adapter (:meth:`paced`). No attempt after the first starts, waits (for a backoff or
        a cap) or runs past the wall deadline (:func:`~bastion._deadline.wall_deadline`)."""
        httpx = require("httpx", "remote models")
        url = self._base + path
        shown = self._safe_base + path
        headers = self._headers()
        ep = self.endpoint
        deadline = request_deadline()
        rows = int(payload["inputs"][0]["shape"][0]) if payload is not None else 0
        last = ""
        sent = failures = throttled = 0
        wait = 0.0
        while True:
            if sent:
                if deadline is not None and time.monotonic() + wait >= deadline:
                    raise RemoteDeadlineError(
                        f"{method} {shown} failed after {sent} attempt(s), and the wall-time "
                        f"budget leaves no time for another: {last}"
                    )
                time.sleep(wait)
            if self._pacers:
                ahead = max(pacer.delay() for pacer in self._pacers)
                # a first attempt goes after its wait, deadline or not (an attack out of time
                # still sends its reserved verification, as _deadline says; refused, Square's
                # check crashed); a retry whose slot falls past the deadline does not
                if sent and deadline is not None and time.monotonic() + ahead >= deadline:
                    raise RemoteDeadlineError(
                        f"{method} {shown} failed after {sent} attempt(s), and the rate cap's "
                        f"next slot, {ahead:.3g} s away, is past the wall-time budget: {last}"
                    )
                wait_for_all(self._pacers, rows)
            options: dict[str, Any] = {}
            if sent and deadline is not None:
                # a retry ends by the deadline too: one begun just before it would otherwise
                # run its whole timeout past it
                left = max(deadline - time.monotonic(), 0.001)
                if left < ep.timeout_s:
                    options["timeout"] = httpx.Timeout(left)
            sent += 1
            try:
                response = self._client.request(
                    method, url, json=payload, headers=headers, **options
                )
            except httpx.TimeoutException:
                if "timeout" in options:  # failed until the deadline, as below
                    raise RemoteDeadlineError(
                        f"{method} {shown} failed after {sent} attempt(s): the last "
                        "timed out at the end of the wall-time budget; before it: " + last
                    ) from None
                last = f"timed out after {ep.timeout_s} s"
            except httpx.LocalProtocolError as err:
                # the request could not be written (a header httpx refuses): no retry sends it
                raise RemoteModelError(
                    f"{method} {shown}: the request could not be sent "
                    f"({type(err).__name__}: {self._scrub(str(err))})"
                ) from None
            except httpx.TransportError as err:
                last = f"connection failed ({type(err).__name__}: {self._scrub(str(err))})"
            else:
                status = response.status_code
                if status == 429:
                    throttled += 1
                    told = retry_after_s(response.headers.get("Retry-After"))
                    last = f"HTTP 429 (rate cap): {self._error_text(response)}"
                    if throttled > ep.rate_limit_waits:
                        raise RemoteModelError(
                            f"{method} {shown} answered HTTP 429 (too many requests) "
                            f"{throttled} times: lower the client's pace (requests_per_second"
                            " / queries_per_second) or raise rate_limit_waits"
                        )
                    if told is not None and told > ep.max_retry_after_s:
                        raise RemoteModelError(
                            f"{method} {shown} answered HTTP 429 and asks to wait {told:g} s, "
                            f"more than max_retry_after_s ({ep.max_retry_after_s:g} s)"
                        )
                    wait = told if told is not None else self._backoff(throttled)
                    continue
                if 300 <= status < 400:
                    # never followed (no network but the endpoint), and never read as an
                    # answer: a 302 with a JSON body read as metadata dropped the model's
                    # probabilities, and another attack ran, saying nothing
                    where = _shown_location(response.headers.get("Location", ""))
                    raise RemoteModelError(
                        f"{method} {shown} answered HTTP {status}, a redirect to {where}, "
                        "which is not followed: give the endpoint's own URL"
                    )
                if status < 400:
                    return self._json(response, method, shown)
                if status < 500:
                    raise RemoteModelError(
                        f"{method} {shown} answered HTTP {status}: {self._error_text(response)}"
                    )
                last = f"HTTP {status}: {self._error_text(response)}"
            failures += 1
            if failures > ep.retries:
                raise RemoteModelError(f"{method} {shown} failed after {sent} attempt(s): {last}")
            wait = self._backoff(failures)

    def _backoff(self, attempt: int) -> float:
        """The wait before retry ``attempt`` (1, 2, ...): ``backoff_s`` doubled each time, at
        most ``max_retry_after_s`` (30 doublings of 0.2 s are 6.8 years)."""
        ep = self.endpoint
        return float(min(ep.backoff_s * 2.0 ** min(attempt - 1, 60), ep.max_retry_after_s))

    @staticmethod
    def _json(response: Any, method: str, shown: str) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError as err:
            raise RemoteModelError(
                f"{method} {shown} answered HTTP {response.status_code} with a body that "
                "is not JSON"
            ) from err
        if not isinstance(body, dict):
            raise RemoteModelError(f"{method} {shown}: the answer is not a JSON object")
        return body

    def _error_text(self, response: Any) -> str:
        try:
            body = response.json()
            text = str(body.get("error", body)) if isinstance(body, dict) else str(body)
        except ValueError:
            text = response.text
        # scrub before truncating, so a token that crosses the cut cannot leak in part
        return self._scrub(text)[:300]
