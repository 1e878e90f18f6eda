"""``bastion registry / users / audit / keys``: a release signed, registered, verified; tampering
caught; roles enforced; the audit chain checkpointed and verified."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.cli.main import run


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("BASTION_HOME", str(home))
    monkeypatch.delenv("BASTION_DATABASE_URL", raising=False)
    monkeypatch.delenv("BASTION_TOKEN", raising=False)
    monkeypatch.delenv("BASTION_KEY_STORE", raising=False)
    monkeypatch.delenv("BASTION_KEYRING", raising=False)
    monkeypatch.setenv("BASTION_KEY_PASSPHRASE", "correct horse battery staple")
    return home


def release(folder: Path, passed: bool = True) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"\x08\x07weights of " + folder.name.encode())
    verdict = {"passed": passed, "fail_on": "medium", "reasons": [], "counts": {}}
    (folder / "report.json").write_text(json.dumps({"verdict": verdict, "findings": []}))
    return folder


def out_of(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().out


def test_sign_register_verify_and_catch_tampering(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["keys", "generate", "--label", "release"]) == 0
    folder = release(tmp_path / "rel")
    assert run(["registry", "sign", str(folder)]) == 0
    assert (folder / "model.sig").is_file()
    assert run(["registry", "register", "cancer", str(folder)]) == 0
    assert "registered cancer@1" in out_of(capsys)
    assert run(["registry", "verify", "cancer@1"]) == 0
    assert "verified cancer@1" in out_of(capsys)
    assert run(["registry", "show", "cancer", "-f", "json"]) == 0
    shown = json.loads(out_of(capsys))
    assert shown["ref"] == "cancer@1"
    assert shown["gate_passed"] is True
    # a blob changed in the store: verification re-hashes and refuses
    model_sha = next(f["sha256"] for f in shown["files"] if f["path"] == "model.onnx")
    blob = env / "store" / "sha256" / model_sha[:2] / model_sha
    blob.write_bytes(b"\x08\x07evil")
    assert run(["registry", "verify", "cancer@1"]) == 2  # the store refuses the corrupt blob
    # a release signed by a key nobody pinned does not verify
    other = tmp_path / "other-store"
    assert run(["keys", "generate", "--store", str(other)]) == 0
    folder2 = release(tmp_path / "rel2")
    from bastion.cli.keys import sign_release

    sign_release(folder2, store=other)
    assert run(["registry", "register", "cancer", str(folder2)]) == 0
    capsys.readouterr()
    assert run(["registry", "verify", "cancer@2"]) == 1
    assert "NOT verified" in out_of(capsys)


def test_users_roles_and_four_eyes_from_the_command_line(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(["users", "add", "root", "--role", "admin"]) == 0
    root = out_of(capsys).strip().splitlines()[-1]
    assert run(["users", "list"]) == 2  # users exist now: a token is needed
    assert "pass an API token" in capsys.readouterr().err
    tokens = {}
    for name, role in (("dana", "data-scientist"), ("ava", "approver"), ("vic", "viewer")):
        assert run(["users", "add", name, "--role", role, "--token", root]) == 0
        tokens[name] = out_of(capsys).strip().splitlines()[-1]
    assert run(["keys", "generate"]) == 2  # key changes need an admin once users exist
    assert "pass an API token" in capsys.readouterr().err
    assert run(["keys", "generate", "--token", tokens["dana"]]) == 2
    assert "may not keys.manage" in capsys.readouterr().err
    assert run(["keys", "generate", "--token", root]) == 0
    folder = release(tmp_path / "rel")
    monkeypatch.setenv("BASTION_TOKEN", tokens["dana"])
    assert run(["registry", "sign", str(folder)]) == 0
    assert run(["registry", "register", "m", str(folder)]) == 0
    assert run(["registry", "approve", "m@1"]) == 2
    assert "may not registry.approve" in capsys.readouterr().err
    monkeypatch.setenv("BASTION_TOKEN", tokens["vic"])
    assert run(["registry", "alias", "m@1", "staging"]) == 2
    monkeypatch.setenv("BASTION_TOKEN", tokens["ava"])
    assert run(["registry", "promote", "m@1"]) == 2
    assert "no approval of m@1" in capsys.readouterr().err
    assert run(["registry", "approve", "m@1", "--comment", "ok"]) == 0
    assert run(["registry", "promote", "m@1"]) == 0
    assert "m@production -> m@1" in out_of(capsys)
    monkeypatch.setenv("BASTION_TOKEN", tokens["vic"])
    assert run(["registry", "list", "-f", "json"]) == 0
    assert json.loads(out_of(capsys)) == [{"name": "m", "latest": 1, "aliases": {"production": 1}}]
    assert run(["audit", "export"]) == 2  # viewers do not read the audit trail


def test_audit_checkpoint_verify_and_export(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["keys", "generate"]) == 0
    assert run(["registry", "register", "m", str(release(tmp_path / "rel"))]) == 0
    assert run(["audit", "verify"]) == 1  # no checkpoint yet
    assert "no checkpoint verifies" in out_of(capsys)
    assert run(["audit", "checkpoint"]) == 0
    assert run(["audit", "verify"]) == 0
    assert "audit chain holds" in out_of(capsys)
    out = tmp_path / "audit.jsonl"
    assert run(["audit", "export", "-o", str(out)]) == 0
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["action"] for e in events] == ["key.generate", "model.register"]
    # rewrite an event's actor in the database: verify names the broken link
    import sqlite3

    with sqlite3.connect(env / "registry.db") as conn:
        conn.execute("UPDATE audit_events SET actor = 'mallory' WHERE seq = 2")
    assert run(["audit", "verify"]) == 1
    assert "event 2: content does not match its hash" in out_of(capsys)


def test_verify_with_keys_pinned_in_the_policy(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bastion.governance.keys import KeyStore

    assert run(["keys", "generate"]) == 0
    folder = release(tmp_path / "rel")
    assert run(["registry", "sign", str(folder)]) == 0
    assert run(["registry", "register", "m", str(folder)]) == 0
    store = KeyStore.at()
    (key,) = store.list()
    pem = tmp_path / "pinned.pem"
    pem.write_text(store.public_key_path(key.key_id).read_text())
    policy = tmp_path / "bastion.yaml"
    policy.write_text(f"version: 1\nsigning:\n  trusted_keys: [{pem.name}]\n")
    capsys.readouterr()
    # keys pinned in the policy replace the default keyring (which also holds the key)
    assert run(["registry", "verify", "m@1", "-c", str(policy)]) == 0
    other = tmp_path / "other.pem"
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    other.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    policy.write_text(f"version: 1\nsigning:\n  trusted_keys: [{other.name}]\n")
    assert run(["registry", "verify", "m@1", "-c", str(policy)]) == 1
