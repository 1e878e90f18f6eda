"""Gateway helpers: a small release folder, the CLI's environment, and real ``bastion serve``
processes (started with the test's interpreter and ``sys.path``, stopped afterwards)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pytest

from bastion.governance.keys import SigningKey
from bastion.governance.signing import sign_folder

SERVE_PASSPHRASE = "serve-test-passphrase"
# Variables of the developer's shell that would point the CLI somewhere else.
_FOREIGN_ENV = (
    "BASTION_DATABASE_URL",
    "BASTION_TOKEN",
    "BASTION_KEYRING",
    "BASTION_REDIS_URL",
    "BASTION_REDIS_PREFIX",
    "BASTION_RATE_LIMIT_PER_S",
)


def make_release(
    root: Path, signer: SigningKey | None, *, passed: bool = True, model: Any = None
) -> Path:
    """A release folder: a joblib logistic regression and a gate report, signed by ``signer``."""
    from sklearn.linear_model import LogisticRegression

    (root / "model").mkdir(parents=True)
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    estimator = model if model is not None else LogisticRegression().fit(X, [0, 0, 1, 1])
    joblib.dump(estimator, root / "model" / "model.joblib")
    verdict = {"passed": passed, "fail_on": "medium", "reasons": [] if passed else ["MV001"]}
    (root / "report.json").write_text(json.dumps({"verdict": {**verdict, "counts": {}}}))
    if signer is not None:
        sign_folder(root, signer)
    return root


def cli_environment(
    home: Path, monkeypatch: pytest.MonkeyPatch, database_url: str | None = None
) -> dict[str, str]:
    """Point the in-process CLI at a registry under ``home`` (on ``database_url`` if given) and
    return the variables a ``bastion serve`` subprocess needs to find the same registry."""
    env = {
        "BASTION_HOME": str(home),
        "BASTION_KEY_STORE": str(home / "keys"),
        "BASTION_KEY_PASSPHRASE": SERVE_PASSPHRASE,
    }
    if database_url is not None:
        env["BASTION_DATABASE_URL"] = database_url
    for k in _FOREIGN_ENV:
        if k not in env:
            monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def add_users(run: Any, capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    """Create an admin ``root`` and a viewer ``client`` with the CLI: their tokens."""
    capsys.readouterr()
    assert run(["users", "add", "root", "--role", "admin"]) == 0
    root = capsys.readouterr().out.strip().splitlines()[-1]
    assert run(["users", "add", "client", "--role", "viewer", "--token", root]) == 0
    client = capsys.readouterr().out.strip().splitlines()[-1]
    return root, client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Served:
    """One running ``bastion serve``: its base URL, port and log file (stdout and stderr)."""

    url: str
    port: int
    log: Path


@contextmanager
def serving(
    model: str,
    env: dict[str, str],
    args: Sequence[str] = (),
    *,
    replicas: int = 1,
    logs: Path,
    start_timeout_s: float = 60.0,
) -> Iterator[list[Served]]:
    """Start ``replicas`` ``bastion serve -m model`` processes at once, each on a free port,
    wait until every one answers ``/v2/health/live``, and terminate them on exit."""
    logs.mkdir(parents=True, exist_ok=True)
    procs: list[tuple[subprocess.Popen[bytes], Served]] = []
    child_env = {**os.environ, **env, "PYTHONPATH": os.pathsep.join(sys.path)}
    try:
        for i in range(replicas):
            port = free_port()
            log = logs / f"serve-{i}-{port}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "bastion.cli.main", "serve", "-m", model,
                     "--port", str(port), *args],
                    env=child_env, stdout=out, stderr=subprocess.STDOUT,
                )  # fmt: skip
            procs.append((proc, Served(f"http://127.0.0.1:{port}", port, log)))
        deadline = time.monotonic() + start_timeout_s
        for proc, served in procs:
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"bastion serve exited {proc.returncode}: {served.log.read_text()}")
                try:
                    live = httpx.get(f"{served.url}/v2/health/live", timeout=1)
                    assert live.json() == {"live": True}
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        pytest.fail(f"bastion serve did not start: {served.log.read_text()}")
                    time.sleep(0.2)
        yield [served for _, served in procs]
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, _ in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
