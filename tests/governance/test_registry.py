"""The registry: versions, aliases, four-eyes promotion, exports, role checks, audit events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.exceptions import ConfigError, DataError
from bastion.governance.access import AccessControl, AccessDeniedError
from bastion.governance.audit import AuditLog, verify_chain
from bastion.governance.db import Location
from bastion.governance.registry import (
    SIGNATURE_FILE,
    PromotionRefusedError,
    Registry,
    parse_ref,
)
from bastion.models.formats import sha256_file, sha256_path


def release_folder(root: Path, *, passed: bool = True, signed: bool = True, tag: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "model.onnx").write_bytes(b"\x08\x07" + tag.encode())
    report = {
        "verdict": {"passed": passed, "fail_on": "medium", "reasons": [], "counts": {}},
        "datasets": [{"name": "train", "sha256": "a" * 64}, {"name": "test", "sha256": "b" * 64}],
        "findings": [{"check_id": "MV001", "metrics": {"accuracy": 0.97, "note": "x"}}],
    }
    (root / "report.json").write_text(json.dumps(report))
    (root / "sub").mkdir(exist_ok=True)
    (root / "sub" / "card.md").write_text("# card")
    if signed:
        bundle = {"verificationMaterial": {"publicKey": {"hint": "k" * 64}}}
        (root / SIGNATURE_FILE).write_text(json.dumps(bundle))
    return root


@pytest.fixture
def people(location: Location) -> dict[str, Registry]:
    """An admin, a data scientist, two approvers and a viewer, each with their own view."""
    local = Registry(location)
    ac = local.access
    tokens = {
        "root": ac.add_user("root", "admin", by=local.identity),
    }
    root = ac.authenticate(tokens["root"])
    for name, role in (
        ("dana", "data-scientist"),
        ("ava", "approver"),
        ("abe", "approver"),
        ("vic", "viewer"),
    ):
        tokens[name] = ac.add_user(name, role, by=root)
    return {
        name: Registry(location, AccessControl(local.engine).authenticate(t))
        for name, t in tokens.items()
    }


def test_register_get_and_export(people: dict[str, Registry], tmp_path: Path) -> None:
    dana = people["dana"]
    folder = release_folder(tmp_path / "rel")
    v1 = dana.register("cancer", folder, code_version="abc123")
    assert v1.ref == "cancer@1"
    assert v1.manifest_sha256 == sha256_path(folder)
    assert v1.report_sha256 == sha256_file(folder / "report.json")
    assert v1.gate_passed is True
    assert v1.key_id == "k" * 64
    assert v1.datasets == {"train": "a" * 64, "test": "b" * 64}
    assert v1.metrics == {"MV001.accuracy": 0.97}
    assert v1.created_by == "dana"
    assert {p for p, _ in v1.files} == {"model.onnx", "report.json", "sub/card.md", SIGNATURE_FILE}
    v2 = dana.register("cancer", release_folder(tmp_path / "rel2", tag="2"))
    assert v2.version == 2
    assert people["vic"].get("cancer").version == 2  # latest
    assert people["vic"].get("cancer@1") == v1
    out = people["vic"].export("cancer@1", tmp_path / "out")
    assert sha256_path(out) == v1.manifest_sha256
    with pytest.raises(ConfigError, match="not empty"):
        people["vic"].export("cancer@1", out)
    listed = people["vic"].models()
    assert listed == [{"name": "cancer", "latest": 2, "aliases": {}}]
    with pytest.raises(DataError, match="no model 'nope'"):
        people["vic"].get("nope@1")
    with pytest.raises(DataError, match="no version '9'"):
        people["vic"].get("cancer@9")


def test_a_corrupt_blob_is_caught_on_export(people: dict[str, Registry], tmp_path: Path) -> None:
    v1 = people["dana"].register("m", release_folder(tmp_path / "rel"))
    sha = dict(v1.files)["model.onnx"]
    blob = people["dana"].store.path_of(sha)
    blob.write_bytes(b"tampered")
    with pytest.raises(DataError, match="missing or corrupt"):
        people["vic"].export("m@1", tmp_path / "out")


def test_roles_are_checked_for_every_operation(people: dict[str, Registry], tmp_path: Path) -> None:
    folder = release_folder(tmp_path / "rel")
    with pytest.raises(AccessDeniedError, match="vic"):
        people["vic"].register("m", folder)
    with pytest.raises(AccessDeniedError):
        people["ava"].register("m", folder)  # approvers do not register
    people["dana"].register("m", folder)
    with pytest.raises(AccessDeniedError):
        people["vic"].set_alias("m@1", "staging")
    with pytest.raises(AccessDeniedError):
        people["dana"].approve("m@1")
    with pytest.raises(AccessDeniedError):
        people["dana"].promote("m@1")
    assert people["dana"].set_alias("m@1", "staging").aliases == ("staging",)


def test_four_eyes_promotion(people: dict[str, Registry], tmp_path: Path) -> None:
    dana, ava, abe, root = people["dana"], people["ava"], people["abe"], people["root"]
    dana.register("m", release_folder(tmp_path / "rel"))
    with pytest.raises(PromotionRefusedError, match="no approval of m@1"):
        ava.promote("m@1")
    with pytest.raises(AccessDeniedError, match=r"registry\.promote"):
        dana.set_alias("m@1", "production")  # the protected alias goes through promote
    ava.approve("m@1", "looked at the report")
    promoted = abe.promote("m@1")
    assert promoted.aliases == ("production",)
    assert abe.get("m@production").version == 1
    # an admin who registered a version cannot approve it either
    root.register("m", release_folder(tmp_path / "rel2", tag="2"))
    with pytest.raises(PromotionRefusedError, match="root registered m@2 and cannot approve it"):
        root.approve("m@2")


def test_promotion_needs_a_passing_gate_and_a_signature(
    people: dict[str, Registry], tmp_path: Path
) -> None:
    dana, ava = people["dana"], people["ava"]
    dana.register("m", release_folder(tmp_path / "a", passed=False, signed=False))
    ava.approve("m@1")
    with pytest.raises(PromotionRefusedError) as info:
        ava.promote("m@1")
    assert "gate report failed" in str(info.value)
    assert f"no signature bundle ({SIGNATURE_FILE})" in str(info.value)


def test_every_change_is_audited(people: dict[str, Registry], tmp_path: Path) -> None:
    people["dana"].register("m", release_folder(tmp_path / "rel"))
    people["dana"].set_alias("m@1", "staging")
    people["ava"].approve("m@1")
    people["dana"].register("m", release_folder(tmp_path / "r2", passed=False, tag="2"))
    people["ava"].approve("m@2")
    with pytest.raises(PromotionRefusedError):
        people["abe"].promote("m@2")
    engine = people["dana"].engine
    events = [(e.actor, e.action, e.object) for e in AuditLog(engine).events()]
    assert ("dana", "model.register", "model:m@1") in events
    assert ("dana", "model.alias", "model:m@staging") in events
    assert ("ava", "model.approve", "model:m@1") in events
    assert ("abe", "model.promote.refused", "model:m@2") in events
    assert verify_chain(engine).ok


def test_refs_and_names_are_validated() -> None:
    assert parse_ref("cancer@3") == ("cancer", "3")
    assert parse_ref("cancer") == ("cancer", None)
    for bad in ("", "a b", "x@", "../x", "x/y@1"):
        with pytest.raises(ConfigError):
            parse_ref(bad)


def test_blobs_are_encrypted_at_rest_with_a_store_key(
    location: Location, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import base64

    from bastion.governance.crypto import generate_kek, is_encrypted

    kek = generate_kek()
    reg = Registry(location, kek=kek)
    folder = release_folder(tmp_path / "rel", tag="secret weights")
    mv = reg.register("m", folder)
    for _, sha in mv.files:
        blob = reg.store.path_of(sha)
        assert is_encrypted(blob)
        assert b"secret weights" not in blob.read_bytes()
    out = reg.export("m@1", tmp_path / "out")
    assert sha256_path(out) == mv.manifest_sha256
    assert repr(kek) not in repr(reg.store)
    # without the key the blobs cannot be read; with it from the environment they can
    with pytest.raises(DataError, match="BASTION_STORE_KEK"):
        Registry(location).export("m@1", tmp_path / "out2")
    monkeypatch.setenv("BASTION_STORE_KEK", base64.b64encode(kek).decode())
    assert sha256_path(Registry(location).export("m@1", tmp_path / "out3")) == mv.manifest_sha256
    # a flipped byte in an encrypted blob is caught
    blob = reg.store.path_of(dict(mv.files)["model.onnx"])
    raw = bytearray(blob.read_bytes())
    raw[-5] ^= 1
    blob.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="missing or corrupt"):
        Registry(location).export("m@1", tmp_path / "out4")


def test_datasets_are_stored_encrypted_and_recorded_in_lineage(
    location: Location, tmp_path: Path
) -> None:
    from sqlalchemy import select

    from bastion.governance import schema
    from bastion.governance.crypto import generate_kek, is_encrypted

    csv = tmp_path / "train.csv"
    csv.write_text("age,label\n41,1\n37,0\n")
    reg = Registry(location, kek=generate_kek())
    sha = reg.add_dataset(csv, "train")
    assert sha == sha256_file(csv)
    assert is_encrypted(reg.store.path_of(sha))
    assert b"41,1" not in reg.store.path_of(sha).read_bytes()
    out = reg.get_dataset(sha, tmp_path / "back.csv")
    assert out.read_bytes() == csv.read_bytes()
    events = [(e.action, e.object) for e in AuditLog(reg.engine).events()]
    assert ("dataset.add", f"dataset:{sha}") in events
    with reg.engine.connect() as conn:
        row = conn.execute(
            select(schema.datasets.c.name, schema.datasets.c.location, schema.datasets.c.rows)
        ).one()
    assert tuple(row) == ("train", f"registry:sha256:{sha}", 2)
    with pytest.raises(DataError, match="no dataset"):
        reg.get_dataset("0" * 64, tmp_path / "x.csv")
