"""RemoteAdapter against the Open Inference Protocol server, served by uvicorn on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from bastion.exceptions import ConfigError, DataError, RemoteDeadlineError, RemoteModelError
from bastion.models.base import Capability
from bastion.models.callable import CallableAdapter
from bastion.models.sklearn import SklearnAdapter

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from bastion.gateway.oip import create_oip_app, run_in_thread
from bastion.models.remote import RemoteAdapter, RemoteEndpoint

TOKEN = "tok-9f8e7d6c5b4a"
TOKEN_ENV = "BASTION_TEST_REMOTE_TOKEN"


@pytest.fixture(scope="module")
def server(cancer_pipeline: Pipeline) -> Iterator[dict[str, Any]]:
    """An OIP server (bearer token required) whose first two infer calls to 'flaky' fail."""
    state = {"flaky_calls": 0, "infer_calls": 0}

    def slow(X: Any) -> Any:
        time.sleep(1.0)
        return np.zeros(len(X))

    models = {
        "cancer": SklearnAdapter(cancer_pipeline),
        "flaky": SklearnAdapter(cancer_pipeline),
        "slow": CallableAdapter(predict=slow, name="slow"),
    }
    app = create_oip_app(models, api_token=TOKEN)

    @app.middleware("http")
    async def fail_twice(request: Any, call_next: Any) -> Any:
        from fastapi.responses import JSONResponse

        if request.url.path.startswith("/v2/models/renamed"):
            # an ONNX graph as Triton serves it: other output names, and an output this
            # client cannot parse (BF16) beside them
            if not request.url.path.endswith("/infer"):
                names = ["output_label", "output_probability", "embedding"]
                meta = {"name": "renamed", "outputs": [{"name": n} for n in names]}
                return JSONResponse({**meta, "parameters": {"classes": [0, 1]}})
            given = (await request.json())["inputs"][0]
            rows = np.asarray(given["data"], dtype=float).reshape(given["shape"])
            model = models["cancer"]
            proba = np.asarray(model.predict_proba(rows))
            labels = np.asarray(model.predict(rows))
            outputs = [
                {"name": "output_label", "shape": [len(rows)], "datatype": "INT64",
                 "data": labels.tolist()},
                {"name": "output_probability", "shape": list(proba.shape), "datatype": "FP64",
                 "data": proba.reshape(-1).tolist()},
                {"name": "embedding", "shape": [len(rows), 2], "datatype": "BF16",
                 "data": [0] * (2 * len(rows))},
            ]  # fmt: skip
            return JSONResponse({"model_name": "renamed", "outputs": outputs})
        if request.url.path.startswith("/v2/models/moved"):
            moved = {"Location": "http://elsewhere.example:9/v2/models/cancer?k=v"}
            return JSONResponse({"name": "moved"}, status_code=302, headers=moved)
        if request.url.path.startswith("/v2/models/echo"):
            told = request.headers.get("authorization")
            return JSONResponse({"error": f"bad credentials: {told}"}, status_code=400)
        if request.url.path.endswith("/infer"):
            state["infer_calls"] += 1
        if request.url.path == "/v2/models/flaky/infer":
            state["flaky_calls"] += 1
            if state["flaky_calls"] <= 2:
                return JSONResponse({"error": f"overloaded, token {TOKEN}"}, status_code=503)
        return await call_next(request)

    with run_in_thread(app) as url:
        yield {"url": url, "state": state, "models": models}


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    return TOKEN


def _endpoint(url: str, model: str = "cancer", **kwargs: Any) -> RemoteEndpoint:
    kwargs.setdefault("auth_token_env", TOKEN_ENV)
    kwargs.setdefault("backoff_s", 0.01)
    return RemoteEndpoint(url, model, **kwargs)


def test_predictions_equal_the_local_model(
    server: dict[str, Any], token: str, cancer: tuple[pd.DataFrame, pd.Series]
) -> None:
    X, _ = cancer
    local = server["models"]["cancer"]
    with RemoteAdapter(_endpoint(server["url"])) as remote:
        assert remote.capabilities == frozenset({Capability.PREDICT, Capability.PREDICT_PROBA})
        assert remote.classes_.tolist() == [0, 1]  # from the metadata
        np.testing.assert_array_equal(remote.predict(X), local.predict(X))
        np.testing.assert_allclose(remote.predict_proba(X.to_numpy()), local.predict_proba(X))
        assert remote.n_queries == 2 * len(X)  # the metadata request is not a query
        assert remote.info.format == "remote-oip"
        assert remote.info.path == f"{server['url']}/v2/models/cancer"


def test_fp32_rows_and_stated_classes(
    server: dict[str, Any], token: str, cancer: tuple[pd.DataFrame, pd.Series]
) -> None:
    X, _ = cancer
    endpoint = _endpoint(server["url"], classes=(0, 1), probabilities=True)
    with RemoteAdapter(endpoint) as remote:
        assert remote.metadata is None  # nothing to ask
        rows = X.to_numpy(np.float32)[:50]
        np.testing.assert_array_equal(
            remote.predict(rows), server["models"]["cancer"].predict(rows.astype(np.float64))
        )


def test_token_is_required_and_never_shown(server: dict[str, Any], token: str) -> None:
    with pytest.raises(RemoteModelError, match="HTTP 401") as info:
        RemoteAdapter(_endpoint(server["url"], auth_token_env=None))
    assert f"{server['url']}/v2/models/cancer" in str(info.value)
    with pytest.raises(ConfigError, match="BASTION_UNSET_VAR"):
        RemoteAdapter(_endpoint(server["url"], auth_token_env="BASTION_UNSET_VAR"))
    with pytest.raises(ConfigError, match="auth_token_env"):
        RemoteEndpoint(server["url"], "cancer", headers={"Authorization": f"Bearer {TOKEN}"})


def test_outputs_of_other_names_are_named_by_the_policy(
    server: dict[str, Any], token: str, cancer: tuple[pd.DataFrame, pd.Series]
) -> None:
    """An endpoint answering with output_label / output_probability could not be attacked:
    model.label_output / proba_output were refused for endpoints, and an output this client
    cannot parse (BF16) beside them failed every answer."""
    from bastion.config import parse_policy
    from bastion.runner import _load_model

    X, _ = cancer
    local = server["models"]["cancer"]
    unnamed = RemoteAdapter(_endpoint(server["url"], "renamed"))
    with unnamed, pytest.raises(RemoteModelError, match="no output named"):
        unnamed.predict(X.iloc[:3])
    remote_spec = {"url": server["url"], "model_name": "renamed", "token_env": TOKEN_ENV}
    policy = parse_policy(
        {
            "model": {
                "remote": remote_spec,
                "label_output": "output_label",
                "proba_output": "output_probability",
            }
        }
    )
    remote = _load_model(policy, policy.spec.model, "model")
    with remote:
        assert remote.has(Capability.PREDICT_PROBA)
        np.testing.assert_array_equal(remote.predict(X.iloc[:5]), local.predict(X.iloc[:5]))
        np.testing.assert_allclose(
            remote.predict_proba(X.iloc[:5]), local.predict_proba(X.iloc[:5])
        )


def test_a_redirect_is_an_error_naming_where_it_points(server: dict[str, Any], token: str) -> None:
    """A 302 whose body parsed as JSON was read as the model's metadata: no probability
    output, another attack, and nothing said. Redirects are never followed."""
    with pytest.raises(RemoteModelError, match="HTTP 302, a redirect to") as info:
        RemoteAdapter(_endpoint(server["url"], "moved"))
    assert "http://elsewhere.example:9/v2/models/cancer, which is not followed" in str(info.value)
    from bastion.models.remote import _shown_location

    assert _shown_location("http://evil:99999/x") == "an unparsable URL"  # a ValueError
    assert _shown_location("/v2/models/m?token=x") == "/v2/models/m"
    assert _shown_location("?next=/v2") == "a URL with a query string only"
    assert _shown_location("") == "nowhere"
    assert _shown_location("http://u:p@[::1]:8/m") == "http://[::1]:8/m"


@pytest.mark.parametrize("shape", [(3, 1), (3,)])
def test_one_probability_column_gives_the_labels_predict_proba_reads(
    monkeypatch: pytest.MonkeyPatch, shape: tuple[int, ...]
) -> None:
    """A two-class endpoint answering P(class 1) alone, with no label output: predict took
    the argmax of the one column (class 0 for every row; a flat vector raised AxisError)
    while predict_proba read it as the second class's (a review). The answer's parsing is
    what is tested here: the transport is replaced by the answer."""
    endpoint = RemoteEndpoint("http://127.0.0.1:9", "m", classes=[0, 1], probabilities=True)
    model = RemoteAdapter(endpoint)
    answer = np.array([0.9, 0.2, 0.7]).reshape(shape)
    monkeypatch.setattr(model, "_infer", lambda X: {endpoint.proba_outputs[0]: answer})
    X = np.zeros((3, 2))
    assert model.predict_proba(X)[:, 1].tolist() == [0.9, 0.2, 0.7]
    assert model.predict(X).tolist() == [1, 0, 1]


def test_one_output_name_is_never_both_labels_and_probabilities(
    server: dict[str, Any], token: str
) -> None:
    """proba_output "predict" stayed among the default label names, and the probabilities
    were read as labels; the same name for both is refused."""
    import dataclasses

    from bastion.models.loading import load_model

    endpoint = _endpoint(server["url"])
    fields = {f.name for f in dataclasses.fields(endpoint)}
    assert {"label_outputs", "proba_outputs"} <= fields
    with pytest.raises(ConfigError, match="both name output 'scores'"):
        load_model(remote=endpoint, label_output="scores", proba_output="scores")
    with load_model(remote=endpoint, proba_output="predict") as remote:
        assert isinstance(remote, RemoteAdapter)
        assert remote.endpoint.proba_outputs == ("predict",)
        assert remote.endpoint.label_outputs == ("label",)


def test_a_token_with_a_line_end_is_stripped_and_other_control_characters_refused(
    server: dict[str, Any], monkeypatch: pytest.MonkeyPatch, cancer: tuple[pd.DataFrame, pd.Series]
) -> None:
    """A token read from a secret file ends in a newline: httpx refused the header, and its
    error quoted the whole token past the scrub, retried as a connection failure."""
    X, _ = cancer
    monkeypatch.setenv(TOKEN_ENV, TOKEN + "\n")
    with RemoteAdapter(_endpoint(server["url"])) as remote:
        assert len(remote.predict(X.iloc[:3])) == 3
    for bad in (TOKEN[:4] + "\x01" + TOKEN[4:], TOKEN + "\u00e9"):
        monkeypatch.setenv(TOKEN_ENV, bad)
        with pytest.raises(ConfigError, match=TOKEN_ENV) as info:
            RemoteAdapter(_endpoint(server["url"]))
        assert TOKEN[4:] not in str(info.value)


def test_a_request_that_cannot_be_written_is_not_retried(
    server: dict[str, Any], token: str
) -> None:
    """httpx refuses a header holding a line end before anything is sent: retrying it, as
    a connection failure, only repeated the refusal."""
    endpoint = _endpoint(server["url"], headers={"X-Trace": "a\nb"}, retries=3)
    with pytest.raises(RemoteModelError, match="the request could not be sent") as info:
        RemoteAdapter(endpoint)
    assert "failed after" not in str(info.value)  # one attempt, no retries
    assert TOKEN not in str(info.value)


def test_url_credentials_echoed_as_basic_auth_are_scrubbed(server: dict[str, Any]) -> None:
    """httpx sends a URL's user:password as HTTP Basic auth (base64); a server echoing its
    header gave them away ("bad token Basic c3ZjOmh1bnRlcjI=")."""
    import base64

    url = server["url"].replace("http://", "http://svc:hunter2@")
    with pytest.raises(
        RemoteModelError, match="HTTP 400: bad credentials: Basic \\*\\*\\*"
    ) as info:
        RemoteAdapter(_endpoint(url, "echo", auth_token_env=None))
    message = str(info.value)
    assert base64.b64encode(b"svc:hunter2").decode() not in message
    assert "hunter2" not in message


def test_retries_on_503_then_succeeds(
    server: dict[str, Any], token: str, cancer: tuple[pd.DataFrame, pd.Series]
) -> None:
    X, _ = cancer
    state = server["state"]
    state["flaky_calls"] = 0
    with RemoteAdapter(_endpoint(server["url"], "flaky", retries=3)) as remote:
        np.testing.assert_array_equal(
            remote.predict(X.iloc[:5]), server["models"]["flaky"].predict(X.iloc[:5])
        )
    assert state["flaky_calls"] == 3  # two 503 answers, then success


def test_gives_up_after_retries_without_leaking_the_token(
    server: dict[str, Any], token: str, cancer: tuple[pd.DataFrame, pd.Series]
) -> None:
    X, _ = cancer
    state = server["state"]
    state["flaky_calls"] = 0
    remote = RemoteAdapter(_endpoint(server["url"], "flaky", retries=1))
    with remote, pytest.raises(RemoteModelError, match="failed after 2 attempt") as info:
        remote.predict(X.iloc[:5])
    message = str(info.value)
    assert "HTTP 503" in message
    assert f"{server['url']}/v2/models/flaky/infer" in message
    assert TOKEN not in message  # the server echoed it; the client scrubs it
    assert "***" in message


def test_4xx_is_not_retried(
    server: dict[str, Any], token: str, cancer: tuple[pd.DataFrame, pd.Series]
) -> None:
    X, _ = cancer
    state = server["state"]
    with RemoteAdapter(_endpoint(server["url"], retries=3)) as remote:
        before = state["infer_calls"]
        with pytest.raises(RemoteModelError, match=r"HTTP 400: .*expects 30 features"):
            remote.predict(X.to_numpy()[:3, :5])
        assert state["infer_calls"] == before + 1
    with pytest.raises(RemoteModelError, match="HTTP 404: unknown model 'nope'"):
        RemoteAdapter(_endpoint(server["url"], "nope"))


def test_timeout(server: dict[str, Any], token: str) -> None:
    endpoint = _endpoint(server["url"], "slow", timeout_s=0.2, retries=0)
    with RemoteAdapter(endpoint) as remote:
        start = time.perf_counter()
        with pytest.raises(RemoteModelError, match=r"timed out after 0\.2 s"):
            remote.predict(np.zeros((2, 3)))
        assert time.perf_counter() - start < 0.9


def _refusing_endpoint(retries: int, backoff_s: float, credentials: str = "") -> RemoteEndpoint:
    """An endpoint on a port nothing listens on, with its classes stated (no metadata
    request)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return RemoteEndpoint(
        f"http://{credentials}127.0.0.1:{port}",
        "m",
        retries=retries,
        backoff_s=backoff_s,
        classes=(0, 1),
        probabilities=False,
    )


def test_connection_refused_is_retried_then_reported(token: str) -> None:
    endpoint = _refusing_endpoint(retries=2, backoff_s=0.01, credentials="user:pw@")
    with (
        RemoteAdapter(endpoint) as remote,
        pytest.raises(RemoteModelError, match=r"failed after 3 attempt.*connection failed") as e,
    ):
        remote.predict(np.zeros((1, 2)))
    assert "pw" not in str(e.value)  # credentials in the URL are not shown


def test_no_retry_past_the_wall_deadline(token: str) -> None:
    """A failing endpoint's retries stop at the deadline of the enclosing wall_deadline block
    (the runner opens one per attack check): a request with its retries could run 41 s past
    a check's time budget with the default settings."""
    from bastion.attacks.budget import request_deadline, wall_deadline

    endpoint = _refusing_endpoint(retries=3, backoff_s=0.4)
    with RemoteAdapter(endpoint) as remote:
        assert request_deadline() is None
        start = time.perf_counter()
        with wall_deadline(0.5):
            assert request_deadline() is not None
            with pytest.raises(RemoteDeadlineError) as info:
                remote.predict(np.zeros((1, 2)))
        spent = time.perf_counter() - start
        # the waits would be 0.4, 0.8 and 1.6 s: the first fits the 0.5 s, the second not
        assert "failed after 2 attempt(s), and the wall-time budget leaves no time" in str(
            info.value
        )
        assert "connection failed" in str(info.value)
        assert 0.4 <= spent < 1.1  # without the deadline: 0.4 + 0.8 + 1.6 s of waits
        assert request_deadline() is None  # the block's end lifts it
        with wall_deadline(None):  # no budget: every retry
            start = time.perf_counter()
            with pytest.raises(RemoteModelError, match="failed after 4 attempt"):
                remote.predict(np.zeros((1, 2)))
            assert time.perf_counter() - start >= 2.8


def test_a_retry_ends_at_the_wall_deadline(token: str) -> None:
    """A retry begun just before the deadline is cut at it, not after its whole timeout (from
    a review: 2.0 s spent against a 1.2 s deadline with timeout_s=1). The first attempt keeps
    its own timeout."""
    from bastion.attacks.budget import wall_deadline

    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        endpoint = RemoteEndpoint(
            f"http://127.0.0.1:{silent.getsockname()[1]}",
            "m",
            retries=3,
            backoff_s=0.01,
            timeout_s=1.0,
            classes=(0, 1),
            probabilities=False,
        )
        with RemoteAdapter(endpoint) as remote:
            start = time.perf_counter()
            with (
                wall_deadline(1.3),
                # a deadline error, which extraction reads as its time budget running out
                # (from a review: a plain RemoteModelError lost the partial result)
                pytest.raises(RemoteDeadlineError, match="timed out at the end of the wall-time"),
            ):
                remote.predict(np.zeros((1, 2)))
            spent = time.perf_counter() - start
            assert 1.25 <= spent < 1.9  # the first attempt's 1 s, then the retry until 1.3 s
            start = time.perf_counter()
            with wall_deadline(0.2), pytest.raises(RemoteModelError):
                remote.predict(np.zeros((1, 2)))
            assert time.perf_counter() - start >= 1.0  # a first attempt is never cut


def test_nested_wall_deadlines_keep_the_earlier() -> None:
    from bastion.attacks.budget import request_deadline, wall_deadline

    with wall_deadline(10):
        outer = request_deadline()
        assert outer is not None
        with wall_deadline(100):
            assert request_deadline() == outer
        with wall_deadline(1):
            inner = request_deadline()
            assert inner is not None
            assert inner < outer
        assert request_deadline() == outer


def test_bad_rows_fail_before_sending(server: dict[str, Any], token: str) -> None:
    with RemoteAdapter(_endpoint(server["url"])) as remote:
        with pytest.raises(DataError, match="NaN"):
            remote.predict(np.full((1, 30), np.nan))
        with pytest.raises(DataError, match="numeric"):
            remote.predict(np.array([["a"] * 30]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "ftp://x"}, "http"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"retries": -1}, "retries"),
        ({"datatype": "INT8"}, "datatype"),
        ({"verify_tls": "/nonexistent/ca.pem"}, "CA bundle"),
        ({"rate_limit_waits": -1}, "rate_limit_waits"),
        ({"max_retry_after_s": float("nan")}, "max_retry_after_s"),
        ({"requests_per_second": 0}, "requests_per_second"),
        ({"queries_per_second": float("inf")}, "queries_per_second"),
        ({"requests_per_second": float("nan")}, "requests_per_second"),
    ],
)
def test_endpoint_validation(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"url": "http://127.0.0.1:1", "model_name": "m", **kwargs}
    with pytest.raises(ConfigError, match=message):
        RemoteEndpoint(**args)


# -- TLS --------------------------------------------------------------------------------
def _write_tls(folder: Path) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate for 127.0.0.1 signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bastion Test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_path, cert_path, key_path


def test_tls_verification(
    tmp_path: Path, cancer_pipeline: Pipeline, cancer: tuple[pd.DataFrame, pd.Series]
) -> None:
    X, _ = cancer
    ca, cert, key = _write_tls(tmp_path)
    app = create_oip_app({"cancer": SklearnAdapter(cancer_pipeline)})
    with run_in_thread(app, ssl_certfile=str(cert), ssl_keyfile=str(key)) as url:
        assert url.startswith("https://")
        with RemoteAdapter(RemoteEndpoint(url, "cancer", verify_tls=str(ca))) as remote:
            np.testing.assert_array_equal(
                remote.predict(X.iloc[:10]), cancer_pipeline.predict(X.iloc[:10])
            )
        # The system trust store does not know this CA: refused, and not retried forever.
        with pytest.raises(RemoteModelError, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
            RemoteAdapter(RemoteEndpoint(url, "cancer", verify_tls=True, retries=0))


# -- the endpoint's rate cap (HTTP 429) ----------------------------------------------------------
@pytest.fixture(scope="module")
def capped(cancer_pipeline: Pipeline) -> Iterator[str]:
    """An OIP server behind Bastion's own per-address token bucket: 2 requests at once, then
    4 per second; beyond it, 429 with ``Retry-After: 1``."""
    from bastion.gateway.guards.rate_limit import InMemoryLimiter, RateLimit

    app = create_oip_app(
        {"cancer": SklearnAdapter(cancer_pipeline)},
        address_limiter=InMemoryLimiter(RateLimit(rate_per_s=4.0, burst=2)),
    )
    with run_in_thread(app) as url:
        yield url


def test_a_rate_capped_endpoint_is_waited_out_not_failed(
    capped: str, cancer: tuple[pd.DataFrame, pd.Series], cancer_pipeline: Pipeline
) -> None:
    """An attack that queries faster than the endpoint allows slows down to its pace: each
    429 waits as Retry-After says and does not use up the retries (0 here)."""
    X, _ = cancer
    time.sleep(1.0)  # a full bucket, whatever ran before
    started = time.monotonic()
    with RemoteAdapter(RemoteEndpoint(capped, "cancer", retries=0)) as remote:
        for start in range(0, 40, 5):
            rows = X.iloc[start : start + 5]
            np.testing.assert_array_equal(remote.predict(rows), cancer_pipeline.predict(rows))
    # 9 requests (metadata and 8 predictions) through 2 at once and 4 per second
    assert time.monotonic() - started >= 1.0


def _past_the_cap(remote: RemoteAdapter) -> None:
    """Six requests at once: more than the capped server lets through."""
    for _ in range(6):
        remote.predict(np.zeros((1, 30)))


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"rate_limit_waits": 0}, r"HTTP 429 \(too many requests\) 1 times"),
        ({"max_retry_after_s": 0.5}, r"asks to wait 1 s, more than max_retry"),
    ],
)
def test_a_rate_cap_past_its_waits_or_its_longest_wait_is_a_clear_error(
    capped: str, setting: dict[str, Any], message: str
) -> None:
    time.sleep(1.0)  # a full bucket
    endpoint = RemoteEndpoint(capped, "cancer", **setting)
    with RemoteAdapter(endpoint) as remote, pytest.raises(RemoteModelError, match=message):
        _past_the_cap(remote)


def test_the_policy_sets_the_rate_cap_waits(capped: str) -> None:
    """model.remote.rate_limit_waits reaches the endpoint the runner builds."""
    from bastion.config import parse_policy
    from bastion.runner import _load_model

    policy = parse_policy(
        {"model": {"remote": {"url": capped, "model_name": "cancer", "rate_limit_waits": 0}}}
    )
    time.sleep(1.0)
    remote = _load_model(policy, policy.spec.model, "model")
    assert isinstance(remote, RemoteAdapter)
    assert remote.endpoint.rate_limit_waits == 0
    assert remote.endpoint.max_retry_after_s == 60.0
    with (
        remote,
        pytest.raises(RemoteModelError, match=r"HTTP 429 \(too many requests\) 1 times"),
    ):
        _past_the_cap(remote)


def test_a_rate_cap_wait_never_runs_past_the_wall_deadline(capped: str) -> None:
    from bastion._deadline import wall_deadline

    time.sleep(1.0)
    with RemoteAdapter(RemoteEndpoint(capped, "cancer")) as remote:
        started = time.monotonic()
        with (
            wall_deadline(0.5),
            pytest.raises(RemoteModelError, match="leaves no time for another: HTTP 429"),
        ):
            _past_the_cap(remote)
        assert time.monotonic() - started < 0.5


def test_the_backoff_stops_growing_at_max_retry_after_s() -> None:
    """A 429 without Retry-After waits the doubling backoff: 30 doublings of 0.2 s were 6.8
    years without a deadline. No wait between two attempts exceeds max_retry_after_s."""
    endpoint = RemoteEndpoint(
        "http://127.0.0.1:1", "m", classes=[0, 1], probabilities=False, max_retry_after_s=5.0
    )
    with RemoteAdapter(endpoint) as remote:  # classes stated: no metadata request
        waits = [remote._backoff(attempt) for attempt in (1, 2, 3, 5, 6, 30, 1000)]
    assert waits == [0.2, 0.4, 0.8, 3.2, 5.0, 5.0, 5.0]


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("2", 2.0),
        (" 1.5 ", 1.5),
        ("-3", 0.0),
        ("Thu, 01 Jan 1970 00:00:10 GMT", 7.0),  # an HTTP date, 7 s after "now" (3)
        ("Thu, 01 Jan 1970 00:00:01 GMT", 0.0),  # in the past
        ("soon", None),
        ("nan", None),
        ("inf", None),
        (None, None),
    ],
)
def test_retry_after_reads_seconds_and_http_dates(header: str | None, seconds: float) -> None:
    from bastion.models.remote import retry_after_s

    assert retry_after_s(header, now=3.0) == seconds


# -- the endpoint's cap, paced on the client ----------------------------------------------------
@pytest.fixture(scope="module")
def stuttering(cancer_pipeline: Pipeline) -> Iterator[dict[str, Any]]:
    """An OIP server that records when each infer attempt arrives and, while ``stutter`` is
    set, answers every other one with a 503."""
    from fastapi.responses import JSONResponse

    arrivals: list[float] = []
    state = {"stutter": True}
    app = create_oip_app({"cancer": SklearnAdapter(cancer_pipeline)})

    @app.middleware("http")
    async def stutter(request: Any, call_next: Any) -> Any:
        if request.url.path.endswith("/infer"):
            arrivals.append(time.monotonic())
            if state["stutter"] and len(arrivals) % 2 == 1:
                return JSONResponse({"error": "busy"}, status_code=503)
        return await call_next(request)

    with run_in_thread(app) as url:
        yield {"url": url, "arrivals": arrivals, "state": state}
    state["stutter"] = True


def _gaps(arrivals: list[float]) -> np.ndarray:
    return np.diff(np.asarray(arrivals))


def test_the_endpoints_cap_paces_every_attempt_retries_too(
    stuttering: dict[str, Any], cancer: tuple[pd.DataFrame, pd.Series]
) -> None:
    """requests_per_second on the endpoint spaces each attempt: a retry after a backoff of 0
    waits for the cap as a first attempt does (it went at once). Arrival times are read by
    the server, so the bounds leave room for a loaded machine."""
    X, _ = cancer
    stuttering["arrivals"].clear()
    endpoint = RemoteEndpoint(stuttering["url"], "cancer", backoff_s=0.0, requests_per_second=5)
    with RemoteAdapter(endpoint) as remote:
        for start in range(0, 9, 3):
            remote.predict(X.iloc[start : start + 3])
    assert len(stuttering["arrivals"]) == 6  # each prediction: a 503, then its retry
    assert _gaps(stuttering["arrivals"]).min() >= 0.2 - 0.05
    stuttering["arrivals"].clear()
    with RemoteAdapter(RemoteEndpoint(stuttering["url"], "cancer", backoff_s=0.0)) as remote:
        remote.predict(X.iloc[:3])
    assert _gaps(stuttering["arrivals"]).min() < 0.1  # unpaced: the retry at once


def test_an_attacks_cap_holds_for_the_remote_victims_retries(
    stuttering: dict[str, Any], cancer: tuple[pd.DataFrame, pd.Series]
) -> None:
    """Extraction's requests_per_second reaches each HTTP attempt of a remote victim: the
    attack paced the batches it handed over, and each 503's retry went at once."""
    from bastion.attacks.constraints import FeatureConstraints
    from bastion.attacks.extraction import ExtractionAttack, ExtractionConfig

    X, _ = cancer
    rows = X.to_numpy(dtype=np.float64)
    stuttering["arrivals"].clear()
    endpoint = RemoteEndpoint(
        stuttering["url"], "cancer", backoff_s=0.0, classes=(0, 1), probabilities=True
    )
    config = ExtractionConfig(
        budget=40, budget_curve=(), batch_size=20, surrogate="logistic", requests_per_second=5
    )
    with RemoteAdapter(endpoint) as remote:
        result = ExtractionAttack(config).run(
            remote,
            attacker_data=rows[:100],
            constraints=FeatureConstraints.box(rows.shape[1], float(rows.min()), float(rows.max())),
            eval_data=rows[100:140],
            seed=0,
        )
    assert result.queries_used == 40
    # 2 batches of evaluation rows and 2 of queries, each a 503 and a retry
    assert len(stuttering["arrivals"]) == 8
    assert _gaps(stuttering["arrivals"]).min() >= 0.2 - 0.05
    assert result.rate_wait_s > 1.0


def test_a_client_paced_at_the_cap_is_never_throttled(
    capped: str, cancer: tuple[pd.DataFrame, pd.Series]
) -> None:
    """At 3.5 requests per second against a cap of 4 (no 429 waited out, so one would fail)."""
    X, _ = cancer
    time.sleep(1.0)  # a full bucket
    endpoint = RemoteEndpoint(capped, "cancer", rate_limit_waits=0, requests_per_second=3.5)
    started = time.monotonic()
    with RemoteAdapter(endpoint) as remote:
        for start in range(0, 30, 5):
            remote.predict(X.iloc[start : start + 5])
    # the metadata request and 6 predictions, 1 / 3.5 s apart
    assert time.monotonic() - started >= 6 / 3.5 - 0.05


def test_a_first_attempt_waits_for_its_slot_and_a_retry_past_the_deadline_stops(
    stuttering: dict[str, Any],
) -> None:
    """Under a wall deadline a first attempt always goes (an attack out of time still sends
    its reserved verification; refused, Square's check ended in an error), after its pacing
    wait; a retry whose slot falls past the deadline is a deadline error, at once."""
    from bastion._deadline import wall_deadline

    stuttering["arrivals"].clear()
    endpoint = RemoteEndpoint(
        stuttering["url"],
        "cancer",
        backoff_s=0.0,
        requests_per_second=2,
        classes=(0, 1),
        probabilities=True,
    )
    with RemoteAdapter(endpoint) as remote:
        stuttering["state"]["stutter"] = False
        remote.predict(np.zeros((1, 30)))
        with wall_deadline(0.2):
            remote.predict(np.zeros((1, 30)))  # its slot is 0.5 s away: it waits and goes
        assert _gaps(stuttering["arrivals"]).min() >= 0.5 - 0.05
        stuttering["state"]["stutter"] = True
        started = time.monotonic()
        with (
            wall_deadline(0.8),
            pytest.raises(RemoteDeadlineError, match=r"after 1 attempt.*next slot.*HTTP 503"),
        ):
            # at 0.5 s a 503; its retry's slot at 1.0 s is past the deadline
            remote.predict(np.zeros((1, 30)))
        assert time.monotonic() - started < 0.8


def test_the_endpoints_cap_and_an_attacks_cap_wait_together(
    stuttering: dict[str, Any],
) -> None:
    """One wait as long as the furthest cap requires, recorded by both at the real send: the
    endpoint's limiter, waited for first, recorded a send time before the attack's wait, and
    the next request went early (two requests 10 ms apart at a cap of 5 a second)."""
    from bastion._pacing import RateLimiter

    stuttering["state"]["stutter"] = False
    stuttering["arrivals"].clear()
    endpoint = RemoteEndpoint(
        stuttering["url"], "cancer", requests_per_second=5, classes=(0, 1), probabilities=True
    )
    attack = RateLimiter(queries_per_second=100)
    with RemoteAdapter(endpoint) as remote, remote.paced(attack), remote.paced(attack):
        for rows in (50, 1, 1):
            remote.predict(np.zeros((rows, 30)))
    gaps = _gaps(stuttering["arrivals"])
    assert gaps[0] >= 0.5 - 0.05  # 50 rows at 100 a second
    assert gaps[1] >= 0.2 - 0.05  # the endpoint's cap
    assert attack.requests == 3  # nested with the same cap: one record a request
    assert attack.slept_s > 0.5  # the whole wait, whichever cap it was for


def test_the_policy_sets_the_endpoints_cap(server: dict[str, Any], token: str) -> None:
    """model.remote.requests_per_second / queries_per_second reach the endpoint the runner
    builds, which paces its requests."""
    from bastion.config import parse_policy
    from bastion.runner import _load_model

    remote_spec = {
        "url": server["url"],
        "model_name": "cancer",
        "token_env": TOKEN_ENV,
        "requests_per_second": 5,
        "queries_per_second": 1000,
    }
    policy = parse_policy({"model": {"remote": remote_spec}})
    started = time.monotonic()
    remote = _load_model(policy, policy.spec.model, "model")  # asks for the metadata
    assert isinstance(remote, RemoteAdapter)
    with remote:
        assert remote.endpoint.requests_per_second == 5
        assert remote.endpoint.queries_per_second == 1000
        remote.predict(np.zeros((1, 30)))  # sent 0.2 s after the metadata request
        assert time.monotonic() - started >= 0.2
    with pytest.raises(ConfigError, match=r"requests_per_second: expected a number .* > 0"):
        parse_policy({"model": {"remote": {**remote_spec, "requests_per_second": 0}}})
