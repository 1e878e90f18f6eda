"""A small Open Inference Protocol v2 (REST) server over Bastion model adapters.

Routes (https://github.com/kserve/open-inference-protocol, REST flavour):

=====================================================  ===================================
``GET  /v2/health/live``, ``/v2/health/ready``         liveness / readiness (no auth)
``GET  /v2``                                            server metadata
``GET  /v2/models/{name}[/versions/{v}]``               model metadata
``GET  /v2/models/{name}[/versions/{v}]/ready``         model readiness
``POST /v2/models/{name}[/versions/{v}]/infer``         inference
=====================================================  ===================================

Inference takes one input tensor (``{"name", "shape", "datatype", "data"}``, numeric
datatypes, data row-major, flat or nested) and answers the outputs ``label`` (one per row)
and, when the model has ``predict_proba``, ``probabilities`` (rows x classes, FP64). Model
metadata adds ``parameters.classes`` (a Bastion extension) so clients can name the
probability columns. Errors are ``{"error": "..."}`` with 400 (bad request), 401 (missing or
wrong bearer token when ``api_token`` is set), 404 (unknown model, version or route), 413
(too many rows) or 500 (the model failed).

This is the seed of ``bastion serve``: guards, signatures and monitoring wrap it later.
fastapi and uvicorn are imported when an app is created, never when this module is imported.
"""

import contextvars
import hmac
import json
import logging
import math
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from bastion._optional import require
from bastion.exceptions import BastionError, ModelOutputError
from bastion.models.base import Capability, ModelAdapter
from bastion.models.remote import OIP_DATATYPES, to_oip_datatype

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["CURRENT_CLIENT", "DEFAULT_INPUT_NAME", "create_oip_app", "run_in_thread"]

DEFAULT_INPUT_NAME = "input-0"
# who sent the request being served (identity name, else client address): detectors that keep
# per-client state read it from the worker thread the model runs in
CURRENT_CLIENT: contextvars.ContextVar[str] = contextvars.ContextVar(
    "bastion_current_client", default="anonymous"
)
_NUMERIC = frozenset(OIP_DATATYPES) - {"BYTES"}
_log = logging.getLogger(__name__)


class _OipError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _version_of(model: ModelAdapter) -> str | None:
    version = model.info.details.get("version")
    return None if version is None else str(version)


def _model_metadata(name: str, model: ModelAdapter, label_only: bool = False) -> dict[str, Any]:
    version = _version_of(model)
    n_features = getattr(model, "n_features_in_", None)
    input_dtype = getattr(model, "input_dtype", np.float64)
    outputs: list[dict[str, Any]] = [
        {
            "name": "label",
            "datatype": to_oip_datatype(
                model.classes_.dtype if model.classes_ is not None else np.int64
            ),
            "shape": [-1],
        }
    ]
    if model.has(Capability.PREDICT_PROBA) and not label_only:
        k = -1 if model.classes_ is None else len(model.classes_)
        outputs.append({"name": "probabilities", "datatype": "FP64", "shape": [-1, k]})
    meta: dict[str, Any] = {
        "name": name,
        "versions": [version] if version else [],
        "platform": model.info.format,
        "inputs": [
            {
                "name": DEFAULT_INPUT_NAME,
                "datatype": to_oip_datatype(input_dtype),
                "shape": [-1, int(n_features) if n_features else -1],
            }
        ],
        "outputs": outputs,
    }
    if model.classes_ is not None:
        meta["parameters"] = {"classes": _jsonable(model.classes_)}
    return meta


def _jsonable(values: np.ndarray) -> list[Any]:
    if values.dtype.kind in "OUS":
        return [str(v) for v in values.tolist()]
    return list(values.tolist())


def _parse_input(
    body: Any, max_rows: int, arrays: Mapping[str, np.ndarray] | None = None
) -> np.ndarray:
    """The single input tensor of an infer request, as an array of its declared shape (its
    values from the JSON ``data``, or from ``arrays`` when it came in the binary section)."""
    if not isinstance(body, dict):
        raise _OipError(400, "the request body must be a JSON object")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1:
        got = len(inputs) if isinstance(inputs, list) else type(inputs).__name__
        raise _OipError(400, f"'inputs' must be a list of exactly one tensor; received {got}")
    tensor = inputs[0]
    if not isinstance(tensor, dict):
        raise _OipError(400, "inputs[0] must be an object with name, shape, datatype and data")
    binary = arrays is not None and tensor.get("name") in arrays
    required = ("name", "shape", "datatype") if binary else ("name", "shape", "datatype", "data")
    missing = [k for k in required if k not in tensor]
    if missing:
        raise _OipError(400, f"inputs[0] lacks {missing}")
    if tensor["name"] != DEFAULT_INPUT_NAME:
        raise _OipError(
            400, f"unknown input {tensor['name']!r}; this model's input is {DEFAULT_INPUT_NAME!r}"
        )
    datatype = tensor["datatype"]
    if datatype not in _NUMERIC:
        raise _OipError(
            400, f"inputs[0].datatype {datatype!r} is not supported; allowed: {sorted(_NUMERIC)}"
        )
    shape = tensor["shape"]
    if (
        not isinstance(shape, list)
        or len(shape) < 2
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise _OipError(
            400, f"inputs[0].shape must be [rows, features, ...] of non-negative ints; got {shape}"
        )
    if shape[0] > max_rows:
        raise _OipError(413, f"{shape[0]} rows exceed this server's limit of {max_rows}")
    if binary and arrays is not None:
        return np.asarray(arrays[tensor["name"]]).reshape(shape)
    try:
        # a value beyond the datatype's range (FP16 65520, FP32 1e39) is an error, not inf
        with np.errstate(over="raise", invalid="raise"):
            arr = np.asarray(tensor["data"], dtype=OIP_DATATYPES[datatype])
    except (TypeError, ValueError, OverflowError, FloatingPointError) as err:
        raise _OipError(400, f"inputs[0].data does not hold {datatype} values: {err}") from err
    if arr.size != math.prod(shape):
        raise _OipError(
            400,
            f"inputs[0].data holds {arr.size} values but shape {shape} needs {math.prod(shape)}",
        )
    return arr.reshape(shape)


def _requested_outputs(body: dict[str, Any], available: list[str]) -> list[str]:
    wanted = body.get("outputs")
    if wanted is None:
        return available
    if not isinstance(wanted, list) or not all(isinstance(o, dict) and "name" in o for o in wanted):
        raise _OipError(400, "'outputs' must be a list of objects with a 'name'")
    names = [str(o["name"]) for o in wanted]
    unknown = [n for n in names if n not in available]
    if unknown:
        raise _OipError(400, f"unknown output(s) {unknown}; this model has {available}")
    return names


def _probability_outputs(model: ModelAdapter) -> list[str]:
    return ["probabilities"] if model.has(Capability.PREDICT_PROBA) else []


def _infer(
    name: str,
    model: ModelAdapter,
    body: dict[str, Any],
    max_rows: int,
    input_schema: Any = None,
    on_predict: Callable[[str, ModelAdapter, np.ndarray, np.ndarray, str], None] | None = None,
    arrays: Mapping[str, np.ndarray] | None = None,
    hardening: tuple[bool, int | None] = (False, None),
) -> dict[str, Any]:
    X = _parse_input(body, max_rows, arrays)
    if input_schema is not None and X.ndim == 2:
        input_schema.check(X)  # 422 naming the column and the row
    label_only, decimals = hardening
    available = ["label"] + (_probability_outputs(model) if not label_only else [])
    wanted = _requested_outputs(body, available)
    outputs: list[dict[str, Any]] = []
    try:
        for out in wanted:
            if out == "label":
                labels = model.predict(X)
                outputs.append(
                    {
                        "name": "label",
                        "datatype": to_oip_datatype(labels.dtype),
                        "shape": [int(labels.shape[0])],
                        "data": _jsonable(labels),
                    }
                )
            else:
                proba = model.predict_proba(X)
                outputs.append(
                    {
                        "name": "probabilities",
                        "datatype": "FP64",
                        "shape": [int(d) for d in proba.shape],
                        "data": (np.round(proba, decimals) if decimals is not None else proba)
                        .reshape(-1)
                        .tolist(),
                    }
                )
    except ModelOutputError as err:
        _log.error("model %r returned an invalid output: %s", name, err)
        raise _OipError(500, f"model {name!r} returned an invalid output") from err
    except (BastionError, ValueError, TypeError) as err:
        raise _OipError(400, f"model {name!r} rejected the input: {err}") from err
    answer: dict[str, Any] = {
        "model_name": name,
        "id": str(body.get("id") or uuid.uuid4()),
        "outputs": outputs,
    }
    version = _version_of(model)
    if version:
        answer["model_version"] = version
    if on_predict is not None:
        given = [np.asarray(o["data"]) for o in outputs if o["name"] == "label"]
        labels = given[0] if given else model.predict(X)
        on_predict(name, model, X, labels, answer["id"])
    return answer


def create_oip_app(
    models: Mapping[str, ModelAdapter],
    *,
    api_token: str | None = None,
    max_rows: int = 10_000,
    server_name: str = "bastion",
    authorizer: Callable[[str | None, str], object] | None = None,
    max_body_bytes: int | None = None,
    address_limiter: Any = None,
    token_limiter: Any = None,
    trusted_proxies: Sequence[str] = (),
    input_schema: Any = None,
    on_predict: Callable[[str, ModelAdapter, np.ndarray, np.ndarray, str], None] | None = None,
    on_feedback: Callable[[str, str, list[Any]], int] | None = None,
    monitor_snapshot: Callable[[str], dict[str, Any]] | None = None,
    client_guard: Callable[[str, str], None] | None = None,
    on_release: Callable[[str, str, str], bool] | None = None,
    metrics: Any = None,
    label_only: bool = False,
    round_probabilities: int | None = None,
) -> "FastAPI":
    """Build a FastAPI app serving ``models`` over the Open Inference Protocol v2.

    Parameters:
        models: model name -> adapter. A model's version is ``info.details["version"]``.
        api_token: when set, every route except ``/v2/health/*`` needs
            ``Authorization: Bearer <api_token>`` (401 otherwise).
        max_rows: largest batch one request may send (413 above it).
        server_name: the name in the server metadata.
        authorizer: ``(authorization header, operation) -> identity``, raising
            :class:`~bastion.gateway.guards.auth.GuardRejectedError` (401 / 403); replaces
            ``api_token`` (``bastion serve`` passes the registry's tokens and roles).
        max_body_bytes: refuse larger request bodies with 413 before reading them.
        address_limiter, token_limiter: :class:`~bastion.gateway.guards.rate_limit.Limiter`
            per client address (before authentication, so floods and token guessing are
            throttled too) and per authenticated identity; 429 with ``Retry-After``, 503 when
            a shared limiter (Redis) is unreachable (fail closed).
        trusted_proxies: CIDRs of reverse proxies whose ``X-Forwarded-For`` is believed.
        input_schema: a :class:`~bastion.gateway.guards.schema.InputSchema`; rows that break
            it are refused with 422 naming the column and the row.
        on_predict: called with (model name, adapter, rows, predicted labels, request id)
            after each inference (monitoring, detectors).
        on_feedback: ``POST /v2/models/{name}/feedback`` with ``{"id", "labels"}`` (role
            ``serve.feedback``) calls it; returns the rows matched.
        monitor_snapshot: ``GET /v2/models/{name}/monitor`` (role ``serve.metrics``) returns
            its drift and performance snapshot.
        client_guard: called with (model name, client) on each inference after
            authentication, before the body is read; raises
            :class:`~bastion.gateway.guards.auth.GuardRejectedError` to refuse the client
            (``bastion serve`` throttles or blocks clients flagged for extraction).
        on_release: ``POST /v2/models/{name}/extraction/release`` with ``{"client"}`` (role
            ``serve.admin``) calls it with (model name, client, caller); it lifts the
            client's extraction flag and returns whether there was one.
        metrics: a :class:`~bastion.gateway.metrics.GatewayMetrics`: every request is timed
            and counted, guard rejections counted, and ``GET /metrics`` serves the Prometheus
            exposition (role ``serve.metrics`` when an authorizer is set).
        label_only, round_probabilities: output hardening against extraction and membership
            inference: answer the top label only (``probabilities`` is not an output), or
            round probabilities to this many decimals.

    Returns:
        The app; run it with uvicorn (or :func:`run_in_thread` in tests).

    Raises:
        ConfigError: ``models`` is empty or ``max_rows`` < 1.
        MissingExtraError: fastapi is not installed.

    Example::

        >>> models = {"cancer": SklearnAdapter(clf)}  # doctest: +SKIP
        >>> app = create_oip_app(models, api_token="s3cret")  # doctest: +SKIP
        >>> uvicorn.run(app, host="127.0.0.1", port=8080)  # doctest: +SKIP
    """
    from bastion.exceptions import ConfigError

    if not models:
        raise ConfigError("create_oip_app needs at least one model; received none")
    if max_rows < 1:
        raise ConfigError(f"max_rows must be >= 1; received {max_rows}")
    require("fastapi", "the inference server")
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    import bastion

    registry = dict(models)
    app = FastAPI(title=f"{server_name} (Open Inference Protocol v2)", version="2")
    # every request looks its model up here: replacing an entry swaps the model served
    # (`bastion serve` does when a watched alias moves to a verified release)
    app.state.models = registry
    expected = None if api_token is None else f"Bearer {api_token}".encode()

    @app.exception_handler(_OipError)
    async def _oip_error(request: Request, exc: _OipError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": f"invalid request: {exc.errors()}"}, status_code=400)

    from bastion.gateway.guards.auth import GuardRejectedError

    @app.exception_handler(GuardRejectedError)
    async def _guard(request: Request, exc: GuardRejectedError) -> JSONResponse:
        if metrics is not None:
            guard = exc.guard or {401: "auth", 403: "role", 422: "schema"}.get(exc.status, "")
            if guard:
                metrics.rejected(guard, exc.status)
        return JSONResponse(
            {"error": exc.message}, status_code=exc.status, headers=dict(exc.headers) or None
        )

    from bastion.gateway.guards.rate_limit import enforce as limited

    if address_limiter is not None or metrics is not None:
        # one plain ASGI middleware for the per-address limit and the request metrics
        # (Starlette's BaseHTTPMiddleware costs a task and a stream per request)
        app.add_middleware(
            _EdgeMiddleware,
            limiter=address_limiter,
            trusted=tuple(trusted_proxies),
            metrics=metrics,
            hit=lambda key: limited(address_limiter, key, "rate_limit_address"),
        )

    if metrics is not None:

        @app.get("/metrics")
        def get_metrics(request: Request) -> Response:
            if authorizer is not None:
                authorizer(request.headers.get("authorization"), "serve.metrics")
            payload, content_type = metrics.render()
            return Response(content=payload, media_type=content_type)

    if max_body_bytes is not None:
        from bastion.gateway.guards.body_size import BodySizeLimit

        def _too_big() -> None:
            if metrics is not None:
                metrics.rejected("body_size", 413)

        app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes, on_reject=_too_big)

    def authorize(request: Request, operation: str = "serve.infer") -> None:
        CURRENT_CLIENT.set(f"addr:{request.client.host}" if request.client else "anonymous")
        if authorizer is not None:
            identity = authorizer(request.headers.get("authorization"), operation)
            CURRENT_CLIENT.set(f"id:{getattr(identity, 'name', identity)}")
            if token_limiter is not None:
                limited(
                    token_limiter, f"id:{getattr(identity, 'name', identity)}", "rate_limit_token"
                )
            return
        if expected is None:
            return
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise _OipError(401, "missing or invalid bearer token")

    def lookup(name: str, version: str | None) -> ModelAdapter:
        model = registry.get(name)
        if model is None:
            raise _OipError(404, f"unknown model {name!r}; served: {sorted(registry)}")
        have = _version_of(model)
        if version is not None and version != have:
            raise _OipError(
                404,
                f"model {name!r} has no version {version!r}; versions: {[have] if have else []}",
            )
        return model

    @app.get("/v2/health/live")
    def live() -> dict[str, Any]:
        return {"live": True}

    @app.get("/v2/health/ready")
    def ready() -> dict[str, Any]:
        return {"ready": True}

    @app.get("/v2")
    def server_metadata(request: Request) -> dict[str, Any]:
        authorize(request)
        return {
            "name": server_name,
            "version": bastion.__version__,
            "extensions": ["binary_tensor_data"],
        }

    def metadata(request: Request, name: str, version: str | None) -> dict[str, Any]:
        authorize(request)
        return _model_metadata(name, lookup(name, version), label_only)

    def model_ready(request: Request, name: str, version: str | None) -> dict[str, Any]:
        authorize(request)
        lookup(name, version)
        return {"name": name, "ready": True}

    async def infer(request: Request, name: str, version: str | None) -> Response:
        from bastion.gateway.binary import (
            HEADER_LENGTH_HEADER,
            encode_infer_response,
            parse_infer_request,
            wants_binary,
        )

        authorize(request)
        model = lookup(name, version)
        if client_guard is not None:
            client_guard(name, CURRENT_CLIENT.get())
        raw = await request.body()
        # JSON, or tritonclient's binary tensor extension (a JSON header of the given
        # length, then the tensors' bytes)
        length = request.headers.get(HEADER_LENGTH_HEADER)
        available = ["label"] + (_probability_outputs(model) if not label_only else [])
        try:
            body, arrays = parse_infer_request(raw, None if length is None else int(length))
            binary = wants_binary(body, available)
        except ValueError as err:
            raise _OipError(400, str(err)) from err
        # The model runs in a worker thread so one slow batch does not stall the event loop.
        result: dict[str, Any] = await run_in_threadpool(
            _infer,
            name,
            model,
            body,
            max_rows,
            input_schema,
            on_predict,
            arrays,
            (label_only, round_probabilities),
        )
        try:
            payload, headers = encode_infer_response(result, {}, binary)
        except ValueError as err:
            raise _OipError(
                500, f"model {name!r} returned an output that cannot be encoded"
            ) from err
        return Response(content=payload, headers=headers)

    if on_feedback is not None:

        @app.post("/v2/models/{name}/feedback")
        async def post_feedback(request: Request, name: str) -> dict[str, Any]:
            authorize(request, "serve.feedback")
            lookup(name, None)
            try:
                body = json.loads(await request.body())
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                raise _OipError(400, f"the request body is not valid JSON: {err}") from err
            if not isinstance(body, dict) or not isinstance(body.get("id"), str):
                raise _OipError(400, "feedback needs 'id' (the inference id) and 'labels'")
            labels = body.get("labels")
            if not isinstance(labels, list) or not labels:
                raise _OipError(400, "'labels' must be a non-empty list, one per row")
            try:
                matched = on_feedback(name, body["id"], labels)
            except BastionError as err:
                raise _OipError(404 if "no prediction" in str(err) else 400, str(err)) from err
            return {"id": body["id"], "matched": matched}

    if on_release is not None:

        @app.post("/v2/models/{name}/extraction/release")
        async def post_release(request: Request, name: str) -> dict[str, Any]:
            authorize(request, "serve.admin")
            lookup(name, None)
            try:
                body = json.loads(await request.body())
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                raise _OipError(400, f"the request body is not valid JSON: {err}") from err
            client = body.get("client") if isinstance(body, dict) else None
            if not isinstance(client, str) or not client:
                raise _OipError(400, "release needs 'client' (e.g. \"id:alice\")")
            released = on_release(name, client, CURRENT_CLIENT.get())
            return {"client": client, "released": released}

    if monitor_snapshot is not None:

        @app.get("/v2/models/{name}/monitor")
        def get_monitor(request: Request, name: str) -> dict[str, Any]:
            authorize(request, "serve.metrics")
            lookup(name, None)
            return monitor_snapshot(name)

    @app.get("/v2/models/{name}")
    def get_model(request: Request, name: str) -> dict[str, Any]:
        return metadata(request, name, None)

    @app.get("/v2/models/{name}/versions/{version}")
    def get_model_version(request: Request, name: str, version: str) -> dict[str, Any]:
        return metadata(request, name, version)

    @app.get("/v2/models/{name}/ready")
    def get_model_ready(request: Request, name: str) -> dict[str, Any]:
        return model_ready(request, name, None)

    @app.get("/v2/models/{name}/versions/{version}/ready")
    def get_model_version_ready(request: Request, name: str, version: str) -> dict[str, Any]:
        return model_ready(request, name, version)

    @app.post("/v2/models/{name}/infer")
    async def post_infer(request: Request, name: str) -> Response:
        return await infer(request, name, None)

    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def post_infer_version(request: Request, name: str, version: str) -> Response:
        return await infer(request, name, version)

    return app


class _EdgeMiddleware:
    """Per-address rate limit (before anything else reads the request) and request metrics."""

    def __init__(
        self,
        app: Any,
        *,
        limiter: Any,
        trusted: tuple[str, ...],
        metrics: Any,
        hit: Callable[[str], None],
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.trusted = trusted
        self.metrics = metrics
        self.hit = hit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.limiter is not None and not scope["path"].startswith("/v2/health/"):
            from bastion.gateway.guards.auth import GuardRejectedError
            from bastion.gateway.guards.rate_limit import client_address

            peer = scope["client"][0] if scope.get("client") else "unknown"
            forwarded = None
            for key, value in scope.get("headers", []):
                if key == b"x-forwarded-for":
                    forwarded = value.decode("latin-1")
            try:
                self.hit(f"addr:{client_address(peer, forwarded, self.trusted)}")
            except GuardRejectedError as exc:
                if self.metrics is not None:
                    self.metrics.rejected(exc.guard or "rate_limit_address", exc.status)
                body = json.dumps({"error": exc.message}).encode()
                headers = [(b"content-type", b"application/json")]
                headers += [(k.lower().encode(), v.encode()) for k, v in exc.headers]
                await send(
                    {"type": "http.response.start", "status": exc.status, "headers": headers}
                )
                await send({"type": "http.response.body", "body": body})
                return
        if self.metrics is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def tracked(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            model = str((scope.get("path_params") or {}).get("name", ""))
            self.metrics.observe_request(model, route, status, time.perf_counter() - started)


@contextmanager
def run_in_thread(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    startup_timeout_s: float = 10.0,
) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a background thread; yield its base URL.

    The socket is bound before the thread starts (``port=0`` picks a free port), so the URL
    is valid as soon as it is yielded. The server stops when the block exits.

    Raises:
        RuntimeError: the server did not start within ``startup_timeout_s``.

    Example::

        >>> with run_in_thread(create_oip_app(models)) as url:  # doctest: +SKIP
        ...     httpx.get(url + "/v2/health/live")
    """
    uvicorn = require("uvicorn", "the inference server")
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        ws="none",
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
    )
    server = uvicorn.Server(config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {host}:{bound_port}")
            time.sleep(0.01)
        scheme = "https" if ssl_certfile else "http"
        yield f"{scheme}://{host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=startup_timeout_s)
        sock.close()
