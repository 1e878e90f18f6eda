"""Key management: encrypted private keys, the keyring, rotation, revocation, `bastion keys`."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bastion.exceptions import ConfigError
from bastion.governance import keys as keys_module
from bastion.governance.keys import (
    KeyProtection,
    Keyring,
    KeyStatus,
    KeyStore,
    SigningKey,
    TrustedKey,
    bundle_hint_of,
    key_id_of,
    load_private_key_file,
    load_trusted_keys,
)

PASS = "correct horse battery staple"
PROT = KeyProtection.from_passphrase(PASS)
KEK = bytes(range(32))
KEK_B64 = base64.b64encode(KEK).decode()


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    return KeyStore.at(tmp_path / "keys")


def test_key_id_is_sha256_of_der_spki_and_hint_is_model_signings_pem_hash() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key()
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert key_id_of(public) == hashlib.sha256(der).hexdigest()
    assert bundle_hint_of(public) == hashlib.sha256(pem).hexdigest()
    assert key_id_of(public) != bundle_hint_of(public)


def test_generate_stores_an_encrypted_key_and_a_keyring_entry(store: KeyStore) -> None:
    key = store.generate("release", PROT)
    private_file = store.private_key_path(key.key_id)
    text = private_file.read_text()
    assert text.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert stat.S_IMODE(private_file.stat().st_mode) == 0o600
    with pytest.raises(TypeError):  # really encrypted: no password, no key
        serialization.load_pem_private_key(text.encode(), None)
    assert store.public_key_path(key.key_id).read_text() == key.public_key_pem

    raw = json.loads(store.keyring_path.read_text())
    assert raw["schema"] == keys_module.KEYRING_SCHEMA
    (entry,) = raw["keys"]
    assert entry["key_id"] == key.key_id
    assert entry["label"] == "release"
    assert entry["status"] == "active"
    assert entry["created"].endswith("Z")
    assert entry["revoked_at"] is None

    signer = store.load_signing_key(key.key_id, PROT)
    assert signer.key_id == key.key_id
    assert key.verify(b"message", signer.sign(b"message"))
    assert not key.verify(b"other message", signer.sign(b"message"))


def test_wrong_passphrase_is_a_clear_error(store: KeyStore) -> None:
    key = store.generate("release", PROT)
    wrong = KeyProtection.from_passphrase("not the passphrase at all", source="$TEST_PASS")
    with pytest.raises(ConfigError, match=r"wrong passphrase \(from \$TEST_PASS\)"):
        store.load_signing_key(key.key_id, wrong)
    only_kek = KeyProtection.from_kek(KEK)
    with pytest.raises(ConfigError, match="encrypted with a passphrase; set \\$BASTION_KEY_PASS"):
        store.load_signing_key(key.key_id, only_kek)


def test_short_passphrase_is_refused_before_anything_is_written(store: KeyStore) -> None:
    with pytest.raises(ConfigError, match="too short"):
        store.generate("release", KeyProtection.from_passphrase("short"))
    assert not store.keyring_path.exists()
    assert list(store.folder.glob("*.pem")) == []


def test_kek_wrapped_keys(store: KeyStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BASTION_KEY_PASSPHRASE", raising=False)
    monkeypatch.setenv("BASTION_KEY_KEK", KEK_B64)
    prot = KeyProtection.from_env()
    assert prot.kek == KEK
    key = store.generate("ci", prot)
    text = store.private_key_path(key.key_id).read_text()
    assert text.startswith("-----BEGIN BASTION WRAPPED PRIVATE KEY-----")
    # the same KEK as 32 raw bytes in a file also opens it
    kek_file = tmp_path / "kek.bin"
    kek_file.write_bytes(KEK)
    monkeypatch.delenv("BASTION_KEY_KEK")
    signer = store.load_signing_key(key.key_id, KeyProtection.from_env(kek_file=kek_file))
    assert signer.key_id == key.key_id
    wrong = KeyProtection.from_kek(bytes(32))
    with pytest.raises(ConfigError, match="wrong key-encryption key"):
        store.load_signing_key(key.key_id, wrong)
    with pytest.raises(ConfigError, match="wrapped with a key-encryption key"):
        store.load_signing_key(key.key_id, PROT)


def test_key_protection_from_env_and_its_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("BASTION_KEY_PASSPHRASE", "BASTION_KEY_KEK"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match=r"set \$BASTION_KEY_PASSPHRASE"):
        KeyProtection.from_env()
    monkeypatch.setenv("MY_PASS", PASS)
    prot = KeyProtection.from_env(passphrase_env="MY_PASS")
    assert prot.passphrase == PASS.encode()
    assert PASS not in repr(prot)
    monkeypatch.setenv("BASTION_KEY_KEK", "abcd")
    with pytest.raises(ConfigError, match="32-byte key"):
        KeyProtection.from_env()
    monkeypatch.setenv("BASTION_KEY_KEK", KEK_B64)
    monkeypatch.setenv("BASTION_KEY_PASSPHRASE", PASS)
    both = KeyProtection.from_env()
    with pytest.raises(ConfigError, match="unset one of them"):
        both.encrypt(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(ConfigError, match="cannot read"):
        KeyProtection.from_env(kek_file=tmp_path / "missing")


def test_generate_twice_for_a_label_asks_for_rotation(store: KeyStore) -> None:
    store.generate("release", PROT)
    with pytest.raises(ConfigError, match="bastion keys rotate --label release"):
        store.generate("release", PROT)
    store.generate("audit", PROT)  # another label is fine
    assert {k.label for k in store.list()} == {"release", "audit"}


def test_rotate_retires_the_old_key_and_records_the_succession(store: KeyStore) -> None:
    old = store.generate("release", PROT)
    new, retired = store.rotate("release", PROT)
    ring = store.keyring()
    assert ring.active("release").key_id == new.key_id
    assert ring.get(old.key_id).status is KeyStatus.retired
    assert retired.superseded_by == new.key_id
    assert ring.get(new.key_id).supersedes == old.key_id
    # the retired key still verifies, but may not sign any more
    signer = store.load_signing_key(new.key_id, PROT)
    assert ring.get(old.key_id).can_verify
    with pytest.raises(ConfigError, match=r"retired \(superseded by"):
        store.load_signing_key(old.key_id, PROT)
    assert signer.key_id != old.key_id


def test_revoke_is_final_and_stops_verification(store: KeyStore) -> None:
    key = store.generate("release", PROT)
    signer = store.load_signing_key(None, PROT, label="release")
    sig = signer.sign(b"checkpoint")
    assert store.keyring().verify_signature(key.key_id, b"checkpoint", sig)
    revoked = store.revoke(key.key_id[:10], reason="laptop stolen")
    assert revoked.status is KeyStatus.revoked
    assert revoked.revoked_at
    assert revoked.revocation_reason == "laptop stolen"
    assert not store.private_key_path(key.key_id).exists()
    ring = store.keyring()
    assert not ring.verify_signature(key.key_id, b"checkpoint", sig)
    assert not ring.get(key.key_id).verify(b"checkpoint", sig)
    with pytest.raises(ConfigError, match="already revoked"):
        store.revoke(key.key_id)
    with pytest.raises(ConfigError, match="no active key"):
        store.load_signing_key(None, PROT, label="release")


def test_keyring_lookup_and_validation(store: KeyStore, tmp_path: Path) -> None:
    a = store.generate("a", PROT)
    ring = store.keyring()
    assert ring.get(a.key_id[:8]) == a
    with pytest.raises(ConfigError, match="no key"):
        ring.get("0000000000")
    with pytest.raises(ConfigError, match="no key"):
        ring.get(a.key_id[:4])  # too short a prefix
    with pytest.raises(ConfigError, match="does not exist"):
        Keyring.load(tmp_path / "nothing.json")
    assert Keyring.load(tmp_path / "nothing.json", missing_ok=True).keys == ()

    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "other", "keys": []}')
    with pytest.raises(ConfigError, match="schema"):
        Keyring.load(bad)
    # an entry whose id does not match its public key is refused, not trusted
    data = json.loads(store.keyring_path.read_text())
    data["keys"][0]["key_id"] = "ab" * 32
    bad.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="does not match its public key"):
        Keyring.load(bad)


def test_load_trusted_keys_checks_pins_and_keeps_revocations(
    store: KeyStore, tmp_path: Path
) -> None:
    key = store.generate("release", PROT)
    pem_file = tmp_path / "release.pub"
    pem_file.write_text(key.public_key_pem)
    other = SigningKey.from_private_key(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(ConfigError, match="does not match"):
        load_trusted_keys(pinned={key.key_id: other.public_pem()})
    (pinned,) = load_trusted_keys(pinned={key.key_id: key.public_key_pem})
    assert pinned.key_id == key.key_id

    store.revoke(key.key_id)
    keys = load_trusted_keys(keyring=store.keyring_path, pem_files=[pem_file])
    assert [k.status for k in keys] == [KeyStatus.revoked]  # the pinned PEM does not undo it


def test_other_curves_and_unencrypted_files_are_refused(tmp_path: Path) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(ConfigError, match="P-256"):
        SigningKey.from_private_key(p384)
    pem = p384.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ConfigError, match="P-256"):
        TrustedKey.from_pem(pem)
    plain = tmp_path / "plain.pem"
    plain.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ConfigError, match="not encrypted"):
        load_private_key_file(plain, PROT)
    assert load_private_key_file(plain, None, allow_unencrypted=True).key_id


# -- the CLI ------------------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """`bastion keys` registered on the main app (unless the lead already did), env isolated."""
    from bastion.cli import keys as keys_cli
    from bastion.cli import main

    added = not any(g.name == "keys" for g in main.app.registered_groups)
    if added:
        main.app.add_typer(keys_cli.app, name="keys")
    monkeypatch.setenv("BASTION_KEY_STORE", str(tmp_path / "store"))
    # key changes are audited in the registry: keep it in the test's folder
    monkeypatch.setenv("BASTION_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("BASTION_DATABASE_URL", raising=False)
    monkeypatch.delenv("BASTION_TOKEN", raising=False)
    monkeypatch.delenv("BASTION_KEYRING", raising=False)
    monkeypatch.delenv("BASTION_KEY_KEK", raising=False)
    monkeypatch.setenv("BASTION_KEY_PASSPHRASE", PASS)
    yield tmp_path / "store"
    if added:
        main.app.registered_groups.pop()


def test_cli_defaults_match_the_library() -> None:
    from bastion.cli import keys as keys_cli

    assert keys_cli.DEFAULT_PASSPHRASE_ENV == keys_module.DEFAULT_PASSPHRASE_ENV
    assert keys_cli.DEFAULT_KEK_ENV == keys_module.DEFAULT_KEK_ENV


def test_cli_generate_list_rotate_revoke(cli: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bastion.cli.main import run

    assert run(["keys", "generate", "--label", "release", "--format", "json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["status"] == "active"
    assert (cli / f"{first['key_id']}.key.pem").exists()

    assert run(["keys", "rotate", "--label", "release", "--format", "json"]) == 0
    rotated = json.loads(capsys.readouterr().out)
    assert rotated["old"]["key_id"] == first["key_id"]
    assert rotated["old"]["status"] == "retired"
    assert rotated["new"]["supersedes"] == first["key_id"]

    assert run(["keys", "revoke", first["key_id"], "--reason", "rotated out"]) == 0
    assert "revoked key" in capsys.readouterr().out

    assert run(["keys", "list"]) == 0
    out = capsys.readouterr().out
    for word in ("revoked", "rotated out", "active", "supersedes"):
        assert word in out
    assert run(["keys", "list", "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [k["status"] for k in listed] == ["revoked", "active"]


def test_cli_errors_exit_2_with_one_line(
    cli: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from bastion.cli.main import run

    monkeypatch.delenv("BASTION_KEY_PASSPHRASE")
    assert run(["keys", "generate"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no key protection")
    assert err.count("\n") == 1
    assert run(["keys", "revoke", "deadbeefdeadbeef"]) == 2
    assert "no key" in capsys.readouterr().err
    monkeypatch.setenv("OTHER_PASS", PASS)
    assert run(["keys", "generate", "--passphrase-env", "OTHER_PASS"]) == 0
    assert os.listdir(cli)


def test_concurrent_generation_keeps_every_entry(store: KeyStore) -> None:
    from concurrent.futures import ThreadPoolExecutor

    labels = [f"team-{i}" for i in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        made = list(pool.map(lambda label: store.generate(label, PROT), labels))
    assert sorted(k.label for k in store.list()) == labels
    assert {k.key_id for k in store.list()} == {k.key_id for k in made}


def test_kek_files_of_encryption_at_rest_protect_signing_keys(
    store: KeyStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bastion.governance.crypto import write_kek

    monkeypatch.delenv("BASTION_KEY_PASSPHRASE", raising=False)
    kek = write_kek(tmp_path / "signing.kek")
    key = store.generate("release", KeyProtection.from_env(kek_file=tmp_path / "signing.kek"))
    assert store.load_signing_key(key.key_id, KeyProtection.from_kek(kek)).key_id == key.key_id
