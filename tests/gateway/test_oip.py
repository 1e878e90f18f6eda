"""The Open Inference Protocol v2 app: routes, payloads and errors."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from bastion.exceptions import ConfigError
from bastion.models.base import ModelInfo
from bastion.models.callable import CallableAdapter
from bastion.models.sklearn import SklearnAdapter

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

import httpx

from bastion.gateway.oip import create_oip_app, run_in_thread

Http = httpx.Client

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def pipeline() -> tuple[Pipeline, np.ndarray]:
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y), X


@pytest.fixture(scope="module")
def client(pipeline: tuple[Pipeline, Any]) -> Iterator[Http]:
    est, _ = pipeline
    versioned = SklearnAdapter(
        est, info=ModelInfo(name="cancer", format="sklearn", details={"version": "3"})
    )
    labels_only = CallableAdapter(predict=lambda X: np.where(X[:, 0] > 0, "yes", "no"), name="sign")
    broken = CallableAdapter(predict=lambda X: np.full(len(X), np.nan), name="broken")
    app = create_oip_app({"cancer": versioned, "sign": labels_only, "broken": broken}, max_rows=100)
    with run_in_thread(app) as url, httpx.Client(base_url=url) as http:
        yield http


def _body(X: np.ndarray, **extra: Any) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "input-0",
                "shape": list(X.shape),
                "datatype": "FP64",
                "data": X.reshape(-1).tolist(),
            }
        ],
        **extra,
    }


def test_health_and_server_metadata(client: Http) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    meta = client.get("/v2").json()
    assert meta["name"] == "bastion"
    assert "version" in meta


def test_model_metadata(client: Http) -> None:
    meta = client.get("/v2/models/cancer").json()
    assert meta["name"] == "cancer"
    assert meta["versions"] == ["3"]
    assert meta["platform"] == "sklearn"
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 30]}]
    assert meta["outputs"] == [
        {"name": "label", "datatype": "INT64", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP64", "shape": [-1, 2]},
    ]
    assert meta["parameters"] == {"classes": [0, 1]}
    assert client.get("/v2/models/cancer/versions/3").json() == meta
    assert client.get("/v2/models/cancer/ready").json() == {"name": "cancer", "ready": True}
    assert client.get("/v2/models/cancer/versions/3/ready").status_code == 200
    sign = client.get("/v2/models/sign").json()
    assert [o["name"] for o in sign["outputs"]] == ["label"]
    assert sign["inputs"][0]["shape"] == [-1, -1]


def test_infer_matches_the_model(client: Http, pipeline: tuple[Pipeline, Any]) -> None:
    est, X = pipeline
    rows = X.to_numpy()[:20]
    answer = client.post("/v2/models/cancer/infer", json=_body(rows, id="req-1"))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_name"] == "cancer"
    assert body["model_version"] == "3"
    assert body["id"] == "req-1"
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["label"]["shape"] == [20]
    assert outputs["label"]["data"] == est.predict(X.iloc[:20]).tolist()
    proba = np.asarray(outputs["probabilities"]["data"]).reshape(outputs["probabilities"]["shape"])
    np.testing.assert_allclose(proba, est.predict_proba(X.iloc[:20]))
    # Versioned route, nested data, FP32 and a selected output.
    nested = {
        "inputs": [
            {
                "name": "input-0",
                "shape": [2, 30],
                "datatype": "FP32",
                "data": rows[:2].astype(np.float32).tolist(),
            }
        ],
        "outputs": [{"name": "label"}],
    }
    answer = client.post("/v2/models/cancer/versions/3/infer", json=nested).json()
    assert [o["name"] for o in answer["outputs"]] == ["label"]
    assert answer["outputs"][0]["data"] == est.predict(X.iloc[:2]).tolist()
    assert answer["id"]  # generated when the request has none


def test_string_labels_are_bytes(client: Http) -> None:
    answer = client.post("/v2/models/sign/infer", json=_body(np.array([[1.0], [-1.0]]))).json()
    assert answer["outputs"] == [
        {"name": "label", "datatype": "BYTES", "shape": [2], "data": ["yes", "no"]}
    ]


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v2/models/nope/infer", _body(np.zeros((1, 30))), 404, "unknown model 'nope'"),
        ("/v2/models/cancer/versions/9/infer", _body(np.zeros((1, 30))), 404, "no version '9'"),
        ("/v2/models/cancer/infer", {"inputs": []}, 400, "exactly one tensor"),
        ("/v2/models/cancer/infer", [1, 2], 400, "JSON object"),
        (
            "/v2/models/cancer/infer",
            {"inputs": [{"name": "input-0", "shape": [1, 30], "datatype": "FP64"}]},
            400,
            "lacks \\['data'\\]",
        ),
        (
            "/v2/models/cancer/infer",
            {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP64", "data": [1]}]},
            400,
            "unknown input 'x'",
        ),
        (
            "/v2/models/cancer/infer",
            {"inputs": [{"name": "input-0", "shape": [1, 1], "datatype": "BYTES", "data": ["a"]}]},
            400,
            "BYTES",
        ),
        (
            "/v2/models/cancer/infer",
            {"inputs": [{"name": "input-0", "shape": [2, 30], "datatype": "FP64", "data": [1]}]},
            400,
            "holds 1 values but shape \\[2, 30\\] needs 60",
        ),
        (
            "/v2/models/cancer/infer",
            {"inputs": [{"name": "input-0", "shape": [30], "datatype": "FP64", "data": [0] * 30}]},
            400,
            "shape must be",
        ),
        (
            "/v2/models/cancer/infer",
            {
                "inputs": [
                    {"name": "input-0", "shape": [1, 2], "datatype": "FP64", "data": ["a", 1]}
                ]
            },
            400,
            "does not hold FP64",
        ),
        ("/v2/models/cancer/infer", _body(np.zeros((1, 5))), 400, "expects 30 features"),
        ("/v2/models/cancer/infer", _body(np.zeros((101, 30))), 413, "limit of 100"),
        (
            "/v2/models/cancer/infer",
            _body(np.zeros((1, 30)), outputs=[{"name": "logits"}]),
            400,
            "unknown output",
        ),
        ("/v2/models/broken/infer", _body(np.zeros((2, 1))), 500, "invalid output"),
    ],
)
def test_errors(client: Http, path: str, body: Any, status: int, message: str) -> None:
    answer = client.post(path, json=body)
    assert answer.status_code == status
    assert set(answer.json()) == {"error"}
    assert re.search(message, answer.json()["error"]), answer.json()["error"]


def test_malformed_json_and_unknown_routes(client: Http) -> None:
    answer = client.post(
        "/v2/models/cancer/infer",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 400
    assert "not valid JSON" in answer.json()["error"]
    missing = client.get("/v3/anything")
    assert missing.status_code == 404
    assert set(missing.json()) == {"error"}


def test_bearer_token(pipeline: tuple[Pipeline, Any]) -> None:
    est, X = pipeline
    app = create_oip_app({"cancer": SklearnAdapter(est)}, api_token=TOKEN)
    with run_in_thread(app) as url, httpx.Client(base_url=url) as client:
        _check_token(client, _body(X.to_numpy()[:1]))


def _check_token(client: Http, body: dict[str, Any]) -> None:
    for path in ("/v2", "/v2/models/cancer", "/v2/models/cancer/ready"):
        assert client.get(path).status_code == 401
    denied = client.post("/v2/models/cancer/infer", json=body)
    assert denied.status_code == 401
    assert denied.headers["www-authenticate"] == "Bearer"
    assert denied.json() == {"error": "missing or invalid bearer token"}
    wrong = client.post(
        "/v2/models/cancer/infer", json=body, headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 401
    ok = client.post(
        "/v2/models/cancer/infer", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert ok.status_code == 200
    assert client.get("/v2/health/live").status_code == 200  # probes stay open


def test_app_arguments() -> None:
    with pytest.raises(ConfigError, match="at least one model"):
        create_oip_app({})
    model = CallableAdapter(predict=lambda X: np.zeros(len(X)))
    with pytest.raises(ConfigError, match="max_rows"):
        create_oip_app({"m": model}, max_rows=0)


def test_output_hardening_label_only_and_rounded_probabilities() -> None:
    import httpx
    from sklearn.linear_model import LogisticRegression

    from bastion.gateway.oip import create_oip_app, run_in_thread
    from bastion.models.sklearn import SklearnAdapter

    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    model = SklearnAdapter(LogisticRegression().fit(X, [0, 0, 1, 1]))
    body = {"inputs": [{"name": "input-0", "shape": [1, 1], "datatype": "FP64", "data": [1.3]}]}
    with run_in_thread(create_oip_app({"m": model}, label_only=True)) as url:
        answer = httpx.post(f"{url}/v2/models/m/infer", json=body).json()
        assert [o["name"] for o in answer["outputs"]] == ["label"]
        meta = httpx.get(f"{url}/v2/models/m").json()
        assert [o["name"] for o in meta["outputs"]] == ["label"]
        asked = {**body, "outputs": [{"name": "probabilities"}]}
        assert httpx.post(f"{url}/v2/models/m/infer", json=asked).status_code == 400
    with run_in_thread(create_oip_app({"m": model}, round_probabilities=1)) as url:
        answer = httpx.post(f"{url}/v2/models/m/infer", json=body).json()
        proba = next(o for o in answer["outputs"] if o["name"] == "probabilities")["data"]
        assert proba == [round(p, 1) for p in proba]  # unrounded values would differ
        assert len(proba) == 2
