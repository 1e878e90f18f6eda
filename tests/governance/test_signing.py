"""Signed release folders: round trip, every kind of tampering, trust rules, and interop with
the OpenSSF `model_signing` tool in both directions."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bastion.exceptions import ConfigError
from bastion.governance import signing as signing_module
from bastion.governance.keys import (
    KeyProtection,
    KeyStore,
    SigningKey,
    TrustedKey,
    load_trusted_keys,
)
from bastion.governance.signing import sign_folder, verify_folder

PASS = "correct horse battery staple"
PROT = KeyProtection.from_passphrase(PASS)


def make_release(folder: Path, seed: int = 0) -> Path:
    """A release folder: model weights, gate report, model card, ML-BOM, a nested file."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(rng.bytes(4096))
    (folder / "report.json").write_text(
        json.dumps({"schema": "bastion.report/v1", "verdict": "pass"})
    )
    (folder / "model_card.md").write_text("# Model card\n\nA diagnostic classifier.\n")
    (folder / "bom.cdx.json").write_text(
        json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.6"})
    )
    (folder / "weights").mkdir()
    (folder / "weights" / "layer0.bin").write_bytes(rng.bytes(1024))
    return folder


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    return KeyStore.at(tmp_path / "keys")


@pytest.fixture
def signer(store: KeyStore) -> SigningKey:
    key = store.generate("release", PROT)
    return store.load_signing_key(key.key_id, PROT)


@pytest.fixture
def release(tmp_path: Path) -> Path:
    return make_release(tmp_path / "release-7")


def bundle_of(folder: Path) -> dict[str, Any]:
    return json.loads((folder / signing_module.SIGNATURE_NAME).read_text())  # type: ignore[no-any-return]


def statement_of(bundle: dict[str, Any]) -> dict[str, Any]:
    return json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))  # type: ignore[no-any-return]


def fresh_key() -> SigningKey:
    return SigningKey.from_private_key(ec.generate_private_key(ec.SECP256R1()))


# -- the round trip and the format ---------------------------------------------------------------


def test_round_trip(release: Path, signer: SigningKey, store: KeyStore) -> None:
    signed = sign_folder(release, signer)
    names = ["bom.cdx.json", "model.onnx", "model_card.md", "report.json", "weights/layer0.bin"]
    assert [f.name for f in signed.files] == names
    assert signed.signature_path == (release / "model.sig").absolute()
    result = verify_folder(release, store.keyring())
    assert result.ok, result.problems
    assert result.key_id == signer.key_id
    assert result.label == "release"
    assert result.files_checked == tuple(names)
    assert result.root_digest == signed.root_digest


def test_bundle_has_the_openssf_layout(release: Path, signer: SigningKey) -> None:
    signed = sign_folder(release, signer)
    bundle = bundle_of(release)
    assert bundle["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert bundle["verificationMaterial"] == {
        "publicKey": {"hint": signer.bundle_hint},
        "tlogEntries": [],
    }
    envelope = bundle["dsseEnvelope"]
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    statement = statement_of(bundle)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://model_signing/signature/v1.0"
    assert statement["subject"] == [{"name": "release-7", "digest": {"sha256": signed.root_digest}}]
    assert statement["predicate"]["serialization"] == {
        "method": "files",
        "hash_type": "sha256",
        "allow_symlinks": False,
        "ignore_paths": ["model.sig"],
    }
    import hashlib

    report = hashlib.sha256((release / "report.json").read_bytes()).hexdigest()
    assert {"name": "report.json", "algorithm": "sha256", "digest": report} in statement[
        "predicate"
    ]["resources"]
    # the signature covers the DSSE pre-authentication encoding of the payload
    payload = base64.b64decode(envelope["payload"])
    sig = base64.b64decode(envelope["signatures"][0]["sig"])
    message = b"DSSEv1 28 application/vnd.in-toto+json %d " % len(payload) + payload
    assert signing_module.pae(signing_module.PAYLOAD_TYPE, payload) == message
    assert signer.trusted().verify(message, sig)


def test_order_is_by_path_components(tmp_path: Path, signer: SigningKey) -> None:
    folder = tmp_path / "m"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "b").write_text("1")
    (folder / "a-c").write_text("2")
    (folder / "a.txt").write_text("3")
    assert [f.name for f in sign_folder(folder, signer).files] == ["a/b", "a-c", "a.txt"]


# -- tampering ------------------------------------------------------------------------------------


def verify(folder: Path, signer: SigningKey) -> signing_module.VerificationResult:
    return verify_folder(folder, [signer.trusted()])


def test_changed_file_fails_naming_it(release: Path, signer: SigningKey) -> None:
    sign_folder(release, signer)
    data = bytearray((release / "weights" / "layer0.bin").read_bytes())
    data[100] ^= 1
    (release / "weights" / "layer0.bin").write_bytes(bytes(data))
    result = verify(release, signer)
    assert not result.ok
    assert len(result.problems) == 1
    assert result.problems[0].startswith("changed file: weights/layer0.bin")


def test_changed_report_fails(release: Path, signer: SigningKey) -> None:
    sign_folder(release, signer)
    (release / "report.json").write_text(
        json.dumps({"schema": "bastion.report/v1", "verdict": "fail"})
    )
    result = verify(release, signer)
    assert not result.ok
    assert [p.split(" (")[0] for p in result.problems] == ["changed file: report.json"]


def test_added_and_removed_files_fail_naming_them(release: Path, signer: SigningKey) -> None:
    sign_folder(release, signer)
    (release / "backdoor.pkl").write_bytes(b"\x80\x04")
    (release / "model_card.md").unlink()
    result = verify(release, signer)
    assert not result.ok
    assert signing_module.MSG_EXTRA.format(name="backdoor.pkl") in result.problems
    assert signing_module.MSG_MISSING.format(name="model_card.md") in result.problems
    assert len(result.problems) == 2


def test_file_under_a_signer_ignored_path_is_still_extra(release: Path, signer: SigningKey) -> None:
    sign_folder(release, signer)
    (release / ".gitignore").write_text("*\n")
    result = verify(release, signer)
    assert result.problems == (signing_module.MSG_EXTRA.format(name=".gitignore"),)


def test_changed_bundle_signature_fails(release: Path, signer: SigningKey) -> None:
    sign_folder(release, signer)
    bundle = bundle_of(release)
    sig = bytearray(base64.b64decode(bundle["dsseEnvelope"]["signatures"][0]["sig"]))
    sig[-1] ^= 1
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    (release / "model.sig").write_text(json.dumps(bundle))
    result = verify(release, signer)
    assert not result.ok
    assert result.key_id is None
    assert result.problems[0] == signing_module.MSG_BAD_SIGNATURE.format(key=signer.key_id[:16])
    assert signing_module.MSG_NOT_CHECKED in result.problems


def test_edited_statement_fails(release: Path, signer: SigningKey) -> None:
    """Re-hashing a tampered file into the statement without re-signing is caught."""
    sign_folder(release, signer)
    (release / "report.json").write_text('{"verdict": "pass", "forged": true}')
    bundle = bundle_of(release)
    statement = statement_of(bundle)
    forged = signing_module.hash_folder(release, exclude=release / "model.sig")
    statement["predicate"]["resources"] = [
        {"name": f.name, "algorithm": "sha256", "digest": f.sha256} for f in forged
    ]
    statement["subject"][0]["digest"]["sha256"] = signing_module.root_digest(forged)
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    (release / "model.sig").write_text(json.dumps(bundle))
    assert not verify(release, signer).ok


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (None, "no signature"),
        ("not json", "not JSON"),
        ('{"mediaType": "something/else"}', "mediaType"),
        ('{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}', "no dsseEnvelope"),
    ],
)
def test_missing_or_malformed_bundle(
    release: Path, signer: SigningKey, content: str | None, why: str
) -> None:
    sign_folder(release, signer)
    if content is None:
        (release / "model.sig").unlink()
    else:
        (release / "model.sig").write_text(content)
    result = verify(release, signer)
    assert not result.ok
    assert why in result.problems[0]


# -- trust --------------------------------------------------------------------------------------


def test_wrong_key_fails(release: Path, signer: SigningKey) -> None:
    sign_folder(release, signer)
    other = fresh_key()
    result = verify_folder(release, [other.trusted()])
    assert not result.ok
    assert result.problems[0].startswith("signature does not verify with any trusted key")


def test_no_trusted_keys_fails(release: Path, signer: SigningKey) -> None:
    sign_folder(release, signer)
    assert verify_folder(release, []).problems == (signing_module.MSG_NO_TRUSTED_KEYS,)


def test_a_key_only_in_the_database_is_not_trusted(
    release: Path, signer: SigningKey, store: KeyStore
) -> None:
    """Whoever writes the registry database cannot make a forged release verify: keys stored
    there, or carried in the bundle itself, are never used."""
    sign_folder(release, signer)
    attacker = fresh_key()
    database = {"signing_keys": {attacker.key_id: attacker.public_pem()}}
    (release / "report.json").write_text('{"verdict": "pass"}')
    sign_folder(release, attacker)
    bundle = bundle_of(release)
    bundle["verificationMaterial"]["publicKey"]["rawBytes"] = base64.b64encode(
        attacker.public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()
    (release / "model.sig").write_text(json.dumps(bundle))
    assert attacker.key_id in database["signing_keys"]
    result = verify_folder(release, store.keyring())
    assert not result.ok
    assert result.problems[0].startswith("signature does not verify with any trusted key")
    # the same forgery verifies only if someone pins the attacker's key on purpose
    assert verify_folder(release, [attacker.trusted()]).ok


def test_revoked_key_fails_even_for_old_releases(
    release: Path, signer: SigningKey, store: KeyStore
) -> None:
    sign_folder(release, signer)
    assert verify_folder(release, store.keyring()).ok
    store.revoke(signer.key_id, reason="compromised")
    result = verify_folder(release, store.keyring())
    assert not result.ok
    assert result.problems[0].startswith(
        f"signed by key {signer.key_id[:16]} (release), revoked at"
    )


def test_rotation_keeps_old_releases_verifying_until_revocation(
    tmp_path: Path, store: KeyStore
) -> None:
    old_key = store.generate("release", PROT)
    old_release = make_release(tmp_path / "r1", seed=1)
    sign_folder(old_release, store.load_signing_key(None, PROT, label="release"))
    new_key, _ = store.rotate("release", PROT)
    new_release = make_release(tmp_path / "r2", seed=2)
    new_signed = sign_folder(new_release, store.load_signing_key(None, PROT, label="release"))
    assert new_signed.key_id == new_key.key_id

    ring = store.keyring()
    assert verify_folder(old_release, ring).key_id == old_key.key_id
    assert verify_folder(new_release, ring).ok

    store.revoke(old_key.key_id)
    ring = store.keyring()
    assert not verify_folder(old_release, ring).ok
    assert verify_folder(new_release, ring).ok


# -- unsafe folder content ---------------------------------------------------------------------


def test_symlink_leaving_the_folder_is_refused(
    release: Path, signer: SigningKey, tmp_path: Path
) -> None:
    secret = tmp_path / "outside.txt"
    secret.write_text("not part of the release")
    (release / "link.txt").symlink_to(secret)
    with pytest.raises(ConfigError, match=r"symbolic link leaves the folder: link\.txt"):
        sign_folder(release, signer)
    assert not (release / "model.sig").exists()


def test_symlink_inside_the_folder_is_followed(release: Path, signer: SigningKey) -> None:
    (release / "alias.onnx").symlink_to("model.onnx")
    sign_folder(release, signer)
    assert statement_of(bundle_of(release))["predicate"]["serialization"]["allow_symlinks"] is True
    assert verify(release, signer).ok
    # repointing the link changes what it hashes to
    (release / "alias.onnx").unlink()
    (release / "alias.onnx").symlink_to("report.json")
    result = verify(release, signer)
    assert [p.split(" (")[0] for p in result.problems] == ["changed file: alias.onnx"]


def test_git_metadata_is_refused(release: Path, signer: SigningKey) -> None:
    (release / ".git").mkdir()
    with pytest.raises(ConfigError, match=r"holds \.git"):
        sign_folder(release, signer)


def test_missing_folder_is_a_config_error(tmp_path: Path, signer: SigningKey) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        sign_folder(tmp_path / "nope", signer)
    with pytest.raises(ConfigError, match="does not exist"):
        verify_folder(tmp_path / "nope", [signer.trusted()])


def test_signature_outside_the_folder(release: Path, signer: SigningKey, tmp_path: Path) -> None:
    sig = tmp_path / "sigs" / "release-7.sig"
    sign_folder(release, signer, signature=sig)
    assert (
        "ignore_paths"
        not in statement_of(json.loads(sig.read_text()))["predicate"]["serialization"]
    )
    assert verify_folder(release, [signer.trusted()], signature=sig).ok


# -- sign_release / verify_release (behind `bastion registry sign/verify`) ---------------------


def test_sign_and_verify_release(
    release: Path, store: KeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bastion.cli.keys import render_verification, sign_release, verify_release

    key = store.generate("release", PROT)
    monkeypatch.setenv("BASTION_KEY_PASSPHRASE", PASS)
    signed = sign_release(release, store=store.folder)
    assert signed.key_id == key.key_id
    check = verify_release(release, keyring=store.keyring_path)
    assert check.ok
    assert "verified" in render_verification(check)
    # keys pinned in the configuration as PEM files, or id + PEM pairs
    pem = store.public_key_path(key.key_id)
    assert verify_release(release, pem_files=[pem]).ok
    assert verify_release(release, pinned={key.key_id: pem.read_text()}).ok

    (release / "model.onnx").write_bytes(b"swapped")
    check = verify_release(release, keyring=store.keyring_path)
    assert not check.ok
    assert "changed file: model.onnx" in render_verification(check)

    monkeypatch.setenv("BASTION_KEY_PASSPHRASE", "a wrong pass phrase")
    with pytest.raises(ConfigError, match="wrong passphrase"):
        sign_release(release, store=store.folder)
    monkeypatch.delenv("BASTION_KEY_PASSPHRASE")
    with pytest.raises(ConfigError, match="no key protection"):
        sign_release(release, store=store.folder)


def test_sign_release_refuses_a_retired_key_file(
    release: Path, store: KeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bastion.cli.keys import sign_release

    old = store.generate("release", PROT)
    key_file = store.private_key_path(old.key_id)
    kept = release.parent / "old.key.pem"
    shutil.copy(key_file, kept)
    store.rotate("release", PROT)
    monkeypatch.setenv("BASTION_KEY_PASSPHRASE", PASS)
    with pytest.raises(ConfigError, match="retired"):
        sign_release(release, kept, store=store.folder)


# -- interop with OpenSSF model_signing ------------------------------------------------------------


@pytest.fixture
def model_signing() -> Any:
    return pytest.importorskip("model_signing")


@pytest.fixture
def plain_keypair(tmp_path: Path) -> tuple[Path, Path, SigningKey]:
    """A key pair as model_signing users keep it: PEM files, private key unencrypted."""
    private = ec.generate_private_key(ec.SECP256R1())
    priv = tmp_path / "key.priv"
    pub = tmp_path / "key.pub"
    priv.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pub.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return priv, pub, SigningKey.from_private_key(private)


def test_statement_matches_model_signing(
    model_signing: Any, tmp_path: Path, plain_keypair: tuple[Path, Path, SigningKey]
) -> None:
    priv, _, key = plain_keypair
    folder = make_release(tmp_path / "m")
    (folder / "a").mkdir()
    (folder / "a" / "b").write_text("nested")
    (folder / "a-c").write_text("sorts after a/b")
    theirs_sig = tmp_path / "theirs.sig"
    hashing = model_signing.hashing.Config().set_ignored_paths(paths=[], ignore_git_paths=False)
    model_signing.signing.Config().use_elliptic_key_signer(private_key=priv).set_hashing_config(
        hashing
    ).sign(folder, theirs_sig)
    ours_sig = tmp_path / "ours.sig"
    sign_folder(folder, key, signature=ours_sig)
    theirs = json.loads(theirs_sig.read_text())
    ours = json.loads(ours_sig.read_text())
    assert statement_of(ours) == statement_of(theirs)
    assert ours["verificationMaterial"] == theirs["verificationMaterial"]
    assert ours["mediaType"] == theirs["mediaType"]


def test_bastion_signed_verifies_in_model_signing(
    model_signing: Any, release: Path, plain_keypair: tuple[Path, Path, SigningKey]
) -> None:
    _, pub, key = plain_keypair
    sign_folder(release, key)
    verifier = model_signing.verifying.Config().use_elliptic_key_verifier(public_key=pub)
    verifier.verify(release, release / "model.sig")
    (release / "report.json").write_text('{"verdict": "pass"}')
    with pytest.raises(ValueError, match=r"Hash mismatch for 'report\.json'"):
        model_signing.verifying.Config().use_elliptic_key_verifier(public_key=pub).verify(
            release, release / "model.sig"
        )


def test_model_signing_signed_verifies_in_bastion(
    model_signing: Any, release: Path, plain_keypair: tuple[Path, Path, SigningKey]
) -> None:
    priv, pub, key = plain_keypair
    hashing = model_signing.hashing.Config().set_ignored_paths(paths=["model.sig"])
    model_signing.signing.Config().use_elliptic_key_signer(private_key=priv).set_hashing_config(
        hashing
    ).sign(release, release / "model.sig")
    trusted = load_trusted_keys(pem_files=[pub])
    result = verify_folder(release, trusted)
    assert result.ok, result.problems
    assert result.key_id == key.key_id
    (release / "weights" / "layer0.bin").write_bytes(b"poisoned")
    result = verify_folder(release, trusted)
    assert [p.split(" (")[0] for p in result.problems] == ["changed file: weights/layer0.bin"]
    assert not verify_folder(release, [fresh_key().trusted()]).ok


def test_interop_through_the_model_signing_cli(
    model_signing: Any, release: Path, plain_keypair: tuple[Path, Path, SigningKey], tmp_path: Path
) -> None:
    """The command-line tool, as a user outside Bastion would run it."""
    priv, pub, key = plain_keypair
    cli = [sys.executable, "-m", "model_signing"]
    sign_folder(release, key)
    done = subprocess.run(
        [
            *cli,
            "verify",
            "key",
            "--public_key",
            str(pub),
            "--signature",
            str(release / "model.sig"),
            str(release),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    other = make_release(tmp_path / "theirs", seed=3)
    done = subprocess.run(
        [
            *cli,
            "sign",
            "key",
            "--private_key",
            str(priv),
            "--signature",
            str(other / "model.sig"),
            str(other),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert verify_folder(other, [TrustedKey.from_pem(pub.read_bytes())]).ok


def test_a_stored_key_signs_in_model_signing_and_verifies_in_bastion(
    model_signing: Any, release: Path, store: KeyStore
) -> None:
    """The store's passphrase-encrypted PKCS#8 file is standard: model_signing opens it."""
    key = store.generate("release", PROT)
    model_signing.signing.Config().use_elliptic_key_signer(
        private_key=store.private_key_path(key.key_id), password=PASS.encode()
    ).set_hashing_config(
        model_signing.hashing.Config().set_ignored_paths(paths=["model.sig"])
    ).sign(release, release / "model.sig")
    result = verify_folder(release, store.keyring())
    assert result.ok, result.problems
    assert result.key_id == key.key_id
