"""The gateway's opt-in prediction log, end to end: off by default; when on, one line per
request from the watch worker (never the bearer token); a failing log never fails a request;
and ``bastion monitor report --current-log`` finds drift in what a real gateway logged."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bastion.data.profile import Profile
from bastion.gateway.metrics import GatewayMetrics
from bastion.gateway.oip import create_oip_app, run_in_thread
from bastion.gateway.service import GatewayService, WatchOptions
from bastion.models.sklearn import SklearnAdapter
from bastion.monitoring.alerts import Alerter
from bastion.monitoring.prediction_log import PredictionLogWriter, pseudonym

pytest.importorskip("fastapi")


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    frame = frame.rename(columns={"target": "diagnosis"})
    train = frame.sample(frac=0.6, random_state=0)
    test = frame.drop(train.index)
    features = [c for c in frame.columns if c != "diagnosis"]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(train[features].to_numpy(), train["diagnosis"])
    report = {
        "datasets": [{"name": "train", "features": features, "target": "diagnosis"}],
        "profiles": {"train": Profile.from_frame(train, seed=0).summary(5)},
    }
    reference = tmp_path_factory.mktemp("ref") / "train.csv"
    train.to_csv(reference, index=False)
    return {
        "model": model,
        "report": report,
        "test": test[features].to_numpy(),
        "features": features,
        "reference": reference,
    }


def gateway(
    release: dict[str, Any], log: PredictionLogWriter | None, authorizer: Any = None
) -> tuple[Any, GatewayService, GatewayMetrics]:
    metrics = GatewayMetrics()
    service = GatewayService(
        metrics, Alerter(audit=lambda *_: None), WatchOptions(ood_mode="off"), prediction_log=log
    )
    service.serve("m", "m@1", release["report"])
    app = create_oip_app(
        {"m": SklearnAdapter(release["model"])},
        authorizer=authorizer,
        input_schema=service.input_check("m"),
        on_predict=service.on_predict,
        metrics=metrics,
    )
    return app, service, metrics


def body(rows: np.ndarray, request_id: str | None = None) -> dict[str, Any]:
    tensor = {"name": "input-0", "shape": list(rows.shape), "datatype": "FP64",
              "data": rows.ravel().tolist()}  # fmt: skip
    return {"inputs": [tensor], **({"id": request_id} if request_id else {})}


def log_lines(folder: Path) -> list[dict[str, Any]]:
    return [
        json.loads(text)
        for f in sorted(folder.glob("predictions-*.jsonl"))
        for text in f.read_text(encoding="utf-8").splitlines()
    ]


def test_nothing_is_written_by_default(
    release: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bastion.cli.serve import _log_settings

    assert _log_settings(None, None, None, None) is None
    policy = tmp_path / "bastion.yaml"
    policy.write_text("project: p\n")
    assert _log_settings(policy, None, None, None) is None  # no monitoring section: no log
    monkeypatch.chdir(tmp_path)
    app, service, _ = gateway(release, None)
    service.start()
    try:
        with run_in_thread(app) as url:
            for i in range(5):
                rows = release["test"][i : i + 2]
                assert httpx.post(f"{url}/v2/models/m/infer", json=body(rows)).status_code == 200
    finally:
        service.stop()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["bastion.yaml"]


def test_the_policy_or_the_flag_turns_it_on(tmp_path: Path) -> None:
    from bastion.cli.serve import _log_settings
    from bastion.exceptions import ConfigError

    policy = tmp_path / "conf" / "bastion.yaml"
    policy.parent.mkdir()
    policy.write_text("monitoring:\n  log_inputs:\n    path: logs\n    max_files: 4\n")
    settings = _log_settings(policy, None, None, None)
    assert settings is not None
    assert settings.path == tmp_path / "conf" / "logs"  # relative to the policy file
    assert (settings.max_files, settings.max_file_mb) == (4, 64.0)
    flagged = _log_settings(policy, tmp_path / "other", 1.5, None)
    assert flagged is not None
    assert (flagged.path, flagged.max_file_mb, flagged.max_files) == (tmp_path / "other", 1.5, 4)
    alone = _log_settings(None, tmp_path / "x", None, None)
    assert alone is not None
    assert (alone.max_file_mb, alone.max_files) == (64.0, 16)
    with pytest.raises(ConfigError, match="need a prediction log"):
        _log_settings(None, None, None, 3)
    policy.write_text("monitoring:\n  log_inputs:\n    max_files: 4\n")
    with pytest.raises(ConfigError, match=r"monitoring\.log_inputs\.path"):
        _log_settings(policy, None, None, None)


def test_each_request_is_logged_by_the_worker_and_the_token_never_is(
    release: dict[str, Any], tmp_path: Path
) -> None:
    from bastion.gateway.guards.auth import TokenAuthorizer
    from bastion.governance.db import dispose, resolve_location
    from bastion.governance.registry import Registry

    location = resolve_location(tmp_path / "home", f"sqlite:///{tmp_path / 'home' / 'r.db'}")
    access = Registry(location).access
    root = access.add_user("root", "admin", by=access.local_identity())
    token = access.add_user("vic", "viewer", by=access.authenticate(root))
    folder = tmp_path / "logs"
    app, service, metrics = gateway(
        release, PredictionLogWriter(folder), authorizer=TokenAuthorizer(access)
    )
    X = release["test"]
    answers = []
    service.start()  # the worker thread writes, off the request path
    try:
        with run_in_thread(app) as url:
            headers = {"Authorization": f"Bearer {token}"}
            for i in range(10):
                rows = X[3 * i : 3 * i + 3]
                r = httpx.post(
                    f"{url}/v2/models/m/infer", json=body(rows, f"req-{i}"), headers=headers
                )
                assert r.status_code == 200
                answers.append(r.json())
            assert httpx.post(f"{url}/v2/models/m/infer", json=body(X[:1])).status_code == 401
    finally:
        service.stop()
        dispose(location)
    lines = log_lines(folder)
    assert [x["request_id"] for x in lines] == [f"req-{i}" for i in range(10)]
    first = lines[0]
    assert set(first) == {"v", "ts", "model", "release", "request_id", "client", "inputs", "labels"}
    assert (first["model"], first["release"]) == ("m", "m@1")
    assert first["ts"].endswith("+00:00")
    assert first["client"] == pseudonym("id:vic")
    assert first["inputs"] == [
        dict(zip(release["features"], row, strict=True)) for row in X[:3].tolist()
    ]
    assert first["labels"] == answers[0]["outputs"][0]["data"]
    raw = b"".join(f.read_bytes() for f in folder.iterdir())
    assert token.encode() not in raw
    assert token.split("_", 1)[-1][:12].encode() not in raw
    assert b"vic" not in raw
    written = metrics.snapshot()["bastion_prediction_log_requests_total"]
    assert written == [{"labels": {"outcome": "written"}, "value": 10.0}]


def test_a_failing_log_never_fails_a_request(
    release: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "logs"
    app, service, metrics = gateway(release, PredictionLogWriter(folder))
    shutil.rmtree(folder)  # a vanished volume: every write fails
    X = release["test"]
    with caplog.at_level(logging.ERROR), run_in_thread(app) as url:
        for i in range(4):  # no worker thread: each request is processed as it is answered
            r = httpx.post(f"{url}/v2/models/m/infer", json=body(X[i : i + 1]))
            assert r.status_code == 200
    assert service.snapshot("m")["n_rows"] == 4  # monitoring went on
    failed = metrics.snapshot()["bastion_prediction_log_requests_total"]
    assert failed == [{"labels": {"outcome": "failed"}, "value": 4.0}]
    errors = [r for r in caplog.records if "prediction log" in r.getMessage()]
    assert len(errors) == 1  # rate-limited: one line a minute while it lasts
    assert "(1 so far)" in errors[0].getMessage()
    folder.mkdir()  # the volume is back: logging resumes
    with run_in_thread(app) as url:
        assert httpx.post(f"{url}/v2/models/m/infer", json=body(X[:1])).status_code == 200
    assert len(log_lines(folder)) == 1


def serve_traffic(release: dict[str, Any], folder: Path, rows: np.ndarray) -> None:
    app, service, _ = gateway(release, PredictionLogWriter(folder, max_file_bytes=64 << 10))
    service.start()
    try:
        with run_in_thread(app) as url:
            for start in range(0, len(rows), 7):
                chunk = rows[start : start + 7]
                assert httpx.post(f"{url}/v2/models/m/infer", json=body(chunk)).status_code == 200
    finally:
        service.stop()


def test_monitor_report_from_the_log_flags_drift_and_not_its_absence(
    release: dict[str, Any], tmp_path: Path
) -> None:
    from bastion.cli.main import run

    X = release["test"]
    calm, drifted = tmp_path / "calm", tmp_path / "drifted"
    serve_traffic(release, calm, X)
    shifted = X.copy()
    shifted[:, :20] *= 1.8  # 20 of 30 features: dataset drift at the default share 0.5
    serve_traffic(release, drifted, shifted)
    assert len(list(drifted.glob("predictions-*.jsonl"))) > 1  # rotated at 64 KiB
    reference = str(release["reference"])

    out = tmp_path / "calm.json"
    assert run(["monitor", "report", "-r", reference, "--current-log", str(calm),
                "--format", "json", "-o", str(out)]) == 0  # fmt: skip
    report = json.loads(out.read_text())
    assert report["metadata"]["source"] == "prediction-log"
    assert report["prediction_log"]["rows"] == len(X)
    assert report["prediction_log"]["model"] == "m"
    assert not [c for c in report["columns"] if c["column"] == "mean_radius" and c["drifted"]]
    assert len(report["columns"]) == 30

    out = tmp_path / "drifted.html"
    files = sorted(drifted.glob("predictions-*.jsonl"))
    args = ["monitor", "report", "-r", reference, "--target", "diagnosis", "-o", str(out)]
    for f in files:
        args += ["--current-log", str(f)]
    assert run(args) == 1
    page = out.read_text()
    assert "DATASET DRIFT" in page
    assert "<code>mean_radius</code>" in page
    assert "Prediction log" in page
    assert run([*args, "--format", "json", "--model", "m"]) == 1
    report = json.loads(out.read_text())
    assert {c["column"]: c["drifted"] for c in report["columns"]}["mean_radius"] is True
    assert report["target_drift"]["column"] == "diagnosis"
    assert [i["role"] for i in report["metadata"]["inputs"]] == ["reference"] + [
        "prediction-log"
    ] * len(files)
