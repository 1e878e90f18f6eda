"""``bastion serve``'s release checks: only a signed release whose signed gate report passed is
served; a moved alias is verified before it is swapped in."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from bastion.gateway.oip import create_oip_app, run_in_thread
from bastion.gateway.release import AliasWatcher, ServeRefusedError, load_release
from bastion.governance.db import dispose, resolve_location
from bastion.governance.keys import KeyProtection, KeyStore, SigningKey
from bastion.governance.registry import Registry
from bastion.governance.signing import sign_folder
from bastion.models.sklearn import SklearnAdapter

from .conftest import SERVE_PASSPHRASE, add_users, cli_environment, make_release, serving

pytest.importorskip("fastapi")


@pytest.fixture
def setting(tmp_path: Path) -> Any:
    location = resolve_location(tmp_path / "home", f"sqlite:///{tmp_path / 'home' / 'r.db'}")
    store = KeyStore.at(tmp_path / "keys", tmp_path / "keys" / "keyring.json")
    protection = KeyProtection.from_passphrase(SERVE_PASSPHRASE, "the test")
    store.generate("release", protection)
    signer = store.load_signing_key(None, protection)
    registry = Registry(location)
    yield registry, signer, tuple(store.keyring().keys)
    dispose(location)


def test_a_signed_passing_release_is_served(setting: Any, tmp_path: Path) -> None:
    registry, signer, trusted = setting
    registry.register("m", make_release(tmp_path / "r1", signer))
    registry.set_alias("m@1", "staging")
    served = load_release(registry, "m@staging", trusted)
    assert served.ref == "m@1"
    assert served.key_id == signer.key_id
    app = create_oip_app({"m": served.model})
    with run_in_thread(app) as url:
        body = {"inputs": [{"name": "input-0", "shape": [2, 1], "datatype": "FP64",
                            "data": [0.0, 3.0]}]}  # fmt: skip
        answer = httpx.post(f"{url}/v2/models/m/infer", json=body).json()
        assert answer["outputs"][0]["data"] == [0, 1]
        assert answer["model_version"] == "1"


@pytest.mark.parametrize("case", ["unsigned", "untrusted", "failed gate", "tampered", "unsafe"])
def test_each_failed_condition_is_named(setting: Any, tmp_path: Path, case: str) -> None:
    registry, signer, trusted = setting
    root = tmp_path / "r"
    if case == "unsigned":
        make_release(root, None)
        expected = "signature does not verify"
    elif case == "untrusted":
        from cryptography.hazmat.primitives.asymmetric import ec

        make_release(root, SigningKey.from_private_key(ec.generate_private_key(ec.SECP256R1())))
        expected = "signature does not verify"
    elif case == "failed gate":
        make_release(root, signer, passed=False)
        expected = "signed gate report did not pass: MV001"
    elif case == "tampered":
        make_release(root, signer)
        (root / "report.json").write_text(
            json.dumps({"verdict": {"passed": True, "reasons": [], "counts": {}}}) + " "
        )
        expected = "signature does not verify"
    else:
        make_release(root, None)
        (root / "model" / "model.joblib").write_bytes(pickle.dumps(os.system))
        sign_folder(root, signer)
        expected = "did not scan clean"
    registry.register("m", root)
    with pytest.raises(ServeRefusedError, match=expected):
        load_release(registry, "m@1", trusted)
    with pytest.raises(ServeRefusedError, match="no trusted signing key"):
        load_release(registry, "m@1", ())


def test_a_moved_alias_is_verified_before_the_swap(setting: Any, tmp_path: Path) -> None:
    registry, signer, trusted = setting
    registry.register("m", make_release(tmp_path / "r1", signer))
    registry.set_alias("m@1", "staging")
    current = load_release(registry, "m@staging", trusted)
    swapped: list[str] = []
    refused: list[str] = []
    watcher = AliasWatcher(
        registry, "m@staging", trusted, current,
        on_swap=lambda r: swapped.append(r.ref), on_refused=lambda ref, _: refused.append(ref),
    )  # fmt: skip
    assert watcher.check_once() is None  # nothing moved
    registry.register("m", make_release(tmp_path / "r2", signer, passed=False))
    registry.set_alias("m@2", "staging")
    assert watcher.check_once() is None
    assert refused == ["m@2"]
    assert watcher.current.ref == "m@1"  # the old release keeps serving
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    registry.register(
        "m", make_release(tmp_path / "r3", signer, model=LogisticRegression().fit(X, [1, 1, 0, 0]))
    )
    registry.set_alias("m@3", "staging")
    fresh = watcher.check_once()
    assert fresh is not None
    assert swapped == ["m@3"]
    assert fresh.model.predict(np.array([[0.0]]))[0] == 1
    actions = [e.action for e in registry.audit.events()]
    assert "serve.swap.refused" in actions
    assert "serve.swap" in actions


def test_serve_command_refuses_and_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bastion.cli.main import run

    env = cli_environment(tmp_path / "home", monkeypatch)
    assert run(["keys", "generate"]) == 0
    unsigned = make_release(tmp_path / "r1", None)
    assert run(["registry", "register", "m", str(unsigned)]) == 0
    assert run(["registry", "alias", "m@1", "staging"]) == 0
    capsys.readouterr()
    assert run(["serve", "-m", "m@staging", "--port", "1"]) == 1
    assert "not serving: m@1: its signature does not verify" in capsys.readouterr().err
    signed = make_release(tmp_path / "r2", None)
    assert run(["registry", "sign", str(signed)]) == 0
    assert run(["registry", "register", "m", str(signed)]) == 0
    assert run(["registry", "alias", "m@2", "staging"]) == 0
    assert run(["serve", "-m", "m@staging", "--port", "1"]) == 2  # no users: nobody could log in
    assert "the registry has no users" in capsys.readouterr().err
    root, client = add_users(run, capsys)
    with serving(
        "m@staging",
        {**env, "BASTION_TOKEN": root},
        ["--watch-s", "0", "--log-inputs", str(tmp_path / "plog")],
        logs=tmp_path / "logs",
    ) as (server,):
        url = f"{server.url}/v2/models/m"
        assert httpx.get(url).status_code == 401
        assert httpx.get(url, headers={"Authorization": "Bearer bst_nope"}).status_code == 401
        meta = httpx.get(url, headers={"Authorization": f"Bearer {client}"})
        assert meta.status_code == 200
        assert meta.json()["versions"] == ["2"]
        infer = {"id": "q1", "inputs": [{"name": "input-0", "shape": [1, 1], "datatype": "FP64",
                                         "data": [2.5]}]}  # fmt: skip
        answer = httpx.post(
            f"{url}/infer", json=infer, headers={"Authorization": f"Bearer {client}"}
        )
        assert answer.status_code == 200
    out = server.log.read_text()
    assert f"every request's inputs are stored in {tmp_path / 'plog'}" in out
    (log,) = (tmp_path / "plog").glob("predictions-*.jsonl")  # written, then closed on exit
    assert oct(log.stat().st_mode & 0o777) == "0o600"
    line = json.loads(log.read_text())
    assert (line["request_id"], line["release"], line["inputs"]) == ("q1", "m@2", [{"x0": 2.5}])
    assert client not in log.read_text()


def test_feedback_and_monitor_routes(setting: Any, tmp_path: Path) -> None:
    from bastion.gateway.guards.auth import TokenAuthorizer
    from bastion.monitoring.live import LiveMonitor

    registry = setting[0]
    access = registry.access
    root = access.add_user("root", "admin", by=access.local_identity())
    admin = access.authenticate(root)
    viewer = access.add_user("vic", "viewer", by=admin)
    scientist = access.add_user("dana", "data-scientist", by=admin)
    report = {
        "datasets": [{"name": "train", "features": ["x"], "target": "y"}],
        "profiles": {"train": {"columns": {"x": {"kind": "numeric", "histogram": {
            "edges": [1.0, 2.0], "counts": [5, 5, 5]}}}}},
    }  # fmt: skip
    monitor = LiveMonitor(report)
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    app = create_oip_app(
        {"m": SklearnAdapter(LogisticRegression().fit(X, [0, 0, 1, 1]))},
        authorizer=TokenAuthorizer(access),
        on_predict=lambda _n, _m, rows, labels, rid: monitor.observe(rows, labels, rid),
        on_feedback=lambda _n, rid, labels: monitor.feedback(rid, labels),
        monitor_snapshot=lambda _n: monitor.snapshot().to_dict(),
    )
    body = {"id": "req-1", "inputs": [{"name": "input-0", "shape": [2, 1], "datatype": "FP64",
                                       "data": [0.0, 3.0]}]}  # fmt: skip

    def auth(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    with run_in_thread(app) as url:
        assert httpx.post(f"{url}/v2/models/m/infer", json=body, headers=auth(viewer)).is_success
        feedback = {"id": "req-1", "labels": [0, 0]}
        assert httpx.post(f"{url}/v2/models/m/feedback", json=feedback,
                          headers=auth(viewer)).status_code == 403  # fmt: skip
        done = httpx.post(f"{url}/v2/models/m/feedback", json=feedback, headers=auth(scientist))
        assert done.json() == {"id": "req-1", "matched": 2}
        again = httpx.post(f"{url}/v2/models/m/feedback", json=feedback, headers=auth(scientist))
        assert again.status_code == 404
        assert httpx.get(f"{url}/v2/models/m/monitor", headers=auth(viewer)).status_code == 403
        snap = httpx.get(f"{url}/v2/models/m/monitor", headers=auth(root)).json()
        assert snap["n_rows"] == 2
        assert snap["accuracy"] == 0.5


def profiled_report() -> dict[str, Any]:
    column = {"kind": "numeric", "min": 0.0, "max": 3.0,
              "histogram": {"edges": [1.0, 2.0], "counts": [1, 1, 2]}}  # fmt: skip
    return {
        "verdict": {"passed": True, "fail_on": "medium", "reasons": [], "counts": {}},
        "datasets": [{"name": "train", "features": ["x"]}],
        "profiles": {"train": {"columns": {"x": column}}, "holdout": {"columns": {"x": column}}},
    }


def test_ood_profile_unknown_is_a_startup_error_naming_the_available_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bastion.cli.main import run

    home = tmp_path / "home"
    monkeypatch.setenv("BASTION_HOME", str(home))
    monkeypatch.setenv("BASTION_KEY_STORE", str(home / "keys"))
    monkeypatch.setenv("BASTION_KEY_PASSPHRASE", "serve-test-passphrase")
    for k in ("BASTION_DATABASE_URL", "BASTION_TOKEN", "BASTION_KEYRING"):
        monkeypatch.delenv(k, raising=False)
    assert run(["keys", "generate"]) == 0
    release = make_release(tmp_path / "r1", None)
    (release / "report.json").write_text(json.dumps(profiled_report()))
    assert run(["registry", "sign", str(release)]) == 0
    assert run(["registry", "register", "m", str(release)]) == 0
    assert run(["users", "add", "root", "--role", "admin"]) == 0
    root = capsys.readouterr().out.strip().splitlines()[-1]
    monkeypatch.setenv("BASTION_TOKEN", root)
    assert run(["serve", "-m", "m@1", "--port", "1", "--ood-profile", "nope"]) == 2
    err = capsys.readouterr().err
    assert "--ood-profile 'nope'" in err
    assert "available: ['holdout', 'train']" in err
    assert run(["serve", "-m", "m@1", "--ood", "off", "--ood-profile", "train"]) == 2
    assert "--ood-profile needs --ood flag or block" in capsys.readouterr().err


def test_a_release_without_the_ood_profile_is_refused_at_the_swap(
    setting: Any, tmp_path: Path
) -> None:
    from bastion.gateway.metrics import GatewayMetrics
    from bastion.gateway.service import GatewayService, WatchOptions
    from bastion.monitoring.alerts import Alerter

    registry, signer, trusted = setting
    first = make_release(tmp_path / "r1", None)
    (first / "report.json").write_text(json.dumps(profiled_report()))
    sign_folder(first, signer)
    registry.register("m", first)
    registry.set_alias("m@1", "staging")
    current = load_release(registry, "m@staging", trusted)
    service = GatewayService(
        GatewayMetrics(), Alerter(audit=lambda *_: None), WatchOptions(ood_profile="holdout")
    )
    service.serve("m", current.ref, current.report)
    assert service._served["m"].ood is not None
    second = make_release(tmp_path / "r2", None)
    lacking = profiled_report()
    del lacking["profiles"]["holdout"]
    (second / "report.json").write_text(json.dumps(lacking))
    sign_folder(second, signer)
    registry.register("m", second)
    registry.set_alias("m@2", "staging")
    refused: list[str] = []
    watcher = AliasWatcher(
        registry, "m@staging", trusted, current,
        on_swap=lambda r: service.serve("m", r.ref, r.report),
        on_refused=lambda ref, err: refused.append(f"{ref}: {err}"),
    )  # fmt: skip
    assert watcher.check_once() is None
    assert watcher.current.ref == "m@1"
    assert service._served["m"].ref == "m@1"  # the old release keeps its detectors
    assert len(refused) == 1
    assert "available: ['train']" in refused[0]
    assert "serve.swap.refused" in [e.action for e in registry.audit.events()]
