"""The audit chain: links, signed checkpoints, tampering, concurrent writers, SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import text

from bastion.exceptions import ConfigError
from bastion.governance.audit import GENESIS, AuditLog, event_hash, verify_chain
from bastion.governance.db import Location, engine_for


@pytest.fixture
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def signer(key: ec.EllipticCurvePrivateKey):  # type: ignore[no-untyped-def]
    return lambda message: key.sign(message, ec.ECDSA(hashes.SHA256()))


def verifier(trusted: dict[str, ec.EllipticCurvePublicKey]):  # type: ignore[no-untyped-def]
    def check(key_id: str, message: bytes, signature: bytes) -> bool:
        public = trusted.get(key_id)
        if public is None:
            return False
        try:
            public.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True

    return check


def test_chain_links_and_checkpoints_verify(
    location: Location, key: ec.EllipticCurvePrivateKey
) -> None:
    engine = engine_for(location)
    log = AuditLog(engine)
    assert log.head() == (0, GENESIS)
    first = log.append("alice", "model.register", "model:m@1", {"n": 1, "ü": "ok"})
    assert first.seq == 1
    assert first.prev_hash == GENESIS
    expected = event_hash(
        1, first.ts, "alice", "model.register", "model:m@1", '{"n":1,"ü":"ok"}', GENESIS
    )
    assert first.hash == expected
    log.append_many([("bob", "alert", f"x:{i}", {"i": i}) for i in range(10)])
    log.checkpoint(signer(key), "k1")
    log.append("carol", "model.alias", "model:m@staging", None)
    result = verify_chain(engine, verifier({"k1": key.public_key()}), require_checkpoint=True)
    assert result.ok, result.problem
    assert result.events == 12
    assert result.checkpoints == 1
    assert result.unprotected_tail == 1
    events = list(log.events())
    assert [e.seq for e in events] == list(range(1, 13))
    assert events[0].details == {"n": 1, "ü": "ok"}


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        ("UPDATE audit_events SET actor = 'mallory' WHERE seq = 3", "event 3: content"),
        ("DELETE FROM audit_events WHERE seq = 4", "event 4 is missing"),
        ("UPDATE audit_events SET prev_hash = hash WHERE seq = 5", "event 5: prev_hash"),
        ("UPDATE audit_checkpoints SET signature = 'AAAA'", "checkpoint at event 6: signature"),
        ("DELETE FROM audit_events WHERE seq > 5", "checkpoint at event 6 but the chain ends"),
    ],
)
def test_tampering_names_the_first_broken_link(
    location: Location, key: ec.EllipticCurvePrivateKey, tamper: str, problem: str
) -> None:
    engine = engine_for(location)
    log = AuditLog(engine)
    log.append_many([("alice", "a", f"o:{i}", {"i": i}) for i in range(6)])
    log.checkpoint(signer(key), "k1")
    log.append_many([("alice", "a", f"o:{i}", {"i": i}) for i in range(6, 8)])
    assert verify_chain(engine, verifier({"k1": key.public_key()})).ok
    with engine.begin() as conn:
        conn.execute(text(tamper))
    result = verify_chain(engine, verifier({"k1": key.public_key()}))
    assert not result.ok
    assert result.problem is not None
    assert problem in result.problem


def test_a_rewritten_chain_fails_at_the_signed_checkpoint(
    location: Location, key: ec.EllipticCurvePrivateKey
) -> None:
    """Whoever can write the database can recompute every hash, but not the signature."""
    engine = engine_for(location)
    log = AuditLog(engine)
    log.append_many([("alice", "a", f"o:{i}", {"i": i}) for i in range(4)])
    log.checkpoint(signer(key), "k1")
    # rewrite event 2 and recompute every later hash, head included
    with engine.begin() as conn:
        rows = conn.execute(
            text("SELECT seq, ts, actor, action, object, details FROM audit_events ORDER BY seq")
        ).all()
        prev = GENESIS
        for seq, ts, actor, action, obj, details in rows:
            if seq == 2:
                actor = "mallory"
            digest = event_hash(seq, ts, actor, action, obj, details, prev)
            conn.execute(
                text("UPDATE audit_events SET actor=:a, prev_hash=:p, hash=:h WHERE seq=:s"),
                {"a": actor, "p": prev, "h": digest, "s": seq},
            )
            prev = digest
        conn.execute(text("UPDATE audit_head SET hash=:h"), {"h": prev})
    forged = verify_chain(engine, verifier({"k1": key.public_key()}))
    assert not forged.ok
    assert forged.problem is not None
    assert "checkpoint at event 4: head hash differs" in forged.problem
    # and a checkpoint signed by a key the verifier does not trust proves nothing
    other = ec.generate_private_key(ec.SECP256R1())
    log.append("alice", "a", "o:x", {})
    log.checkpoint(signer(other), "k-untrusted")
    result = verify_chain(engine, verifier({"k1": key.public_key()}))
    assert not result.ok


def test_bad_events_are_refused(sqlite_location: Location) -> None:
    log = AuditLog(engine_for(sqlite_location))
    with pytest.raises(ConfigError, match="actor"):
        log.append("", "a", "o", {})
    with pytest.raises(ConfigError, match="control character"):
        log.append("alice", "a\x1fb", "o", {})
    with pytest.raises(ConfigError, match="not JSON"):
        log.append("alice", "a", "o", {"x": float("nan")})
    assert log.head()[0] == 0


_WRITER = textwrap.dedent(
    """
    import os, sys
    from bastion.governance.audit import AuditLog
    from bastion.governance.db import engine_for, resolve_location
    loc = resolve_location(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
    log = AuditLog(engine_for(loc))
    name = f"w{os.getpid()}"
    i = 0
    while True:
        event = log.append(name, "tick", f"o:{i}", {"i": i})
        # acknowledged: only now is the event reported as written
        print(event.seq, name, i, flush=True)
        i += 1
    """
)


def _writers(location: Location, tmp_path: Path, n: int) -> list[subprocess.Popen[str]]:
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    args = [sys.executable, str(script), str(location.home)]
    if not location.is_sqlite:
        args.append(location.url)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return [subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env) for _ in range(n)]


@pytest.mark.slow
def test_sigkilled_concurrent_writers_lose_no_acknowledged_event(
    location: Location, tmp_path: Path
) -> None:
    engine_for(location)  # schema in place before the writers race
    procs = _writers(location, tmp_path, 3)
    acknowledged: list[tuple[int, str, int]] = []
    lock = threading.Lock()

    def collect(p: subprocess.Popen[str]) -> None:
        assert p.stdout is not None
        for line in p.stdout:
            if not line.endswith("\n"):
                continue  # cut by the kill: not a complete acknowledgment
            seq, name, i = line.split()
            with lock:
                acknowledged.append((int(seq), name, int(i)))

    readers = [threading.Thread(target=collect, args=(p,), daemon=True) for p in procs]
    for r in readers:
        r.start()
    deadline = time.monotonic() + 120
    # kill them mid-stream, once every writer has committed a few events
    while time.monotonic() < deadline:
        with lock:
            per_writer = {name for _, name, _ in acknowledged}
            if len(per_writer) == len(procs) and len(acknowledged) > 60:
                break
        time.sleep(0.05)
    for p in procs:
        p.send_signal(signal.SIGKILL)
    for p in procs:
        p.wait(timeout=30)
    for r in readers:
        r.join(timeout=30)
    for p in procs:
        assert p.stdout is not None
        p.stdout.close()
    assert len({name for _, name, _ in acknowledged}) == len(procs)
    engine = engine_for(location)
    result = verify_chain(engine)
    assert result.ok, result.problem  # one chain, no fork, no torn event
    stored = {(e.seq, e.actor, e.details["i"]) for e in AuditLog(engine).events()}
    missing = [a for a in acknowledged if a not in stored]
    assert not missing, missing[:5]
    seqs = sorted(s for s, _, _ in stored)
    assert seqs == list(range(1, len(seqs) + 1))


def test_export_writes_json_lines(sqlite_location: Location, tmp_path: Path) -> None:
    log = AuditLog(engine_for(sqlite_location))
    log.append_many([("alice", "a", f"o:{i}", {"i": i}) for i in range(3)])
    out = tmp_path / "audit.jsonl"
    with open(out, "w", encoding="utf-8") as fh:
        assert log.export_jsonl(fh) == 3
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["seq"] for e in lines] == [1, 2, 3]
    assert lines[1]["prev_hash"] == lines[0]["hash"]


def test_group_commit_writer_acknowledges_after_commit(location: Location) -> None:
    from bastion.governance.audit import AuditWriter

    engine = engine_for(location)
    log = AuditLog(engine)
    seen: list[int] = []
    lock = threading.Lock()
    with AuditWriter(log, max_batch=50) as writer:

        def work(k: int) -> None:
            for i in range(40):
                event = writer.append(f"t{k}", "tick", f"o:{k}:{i}", {"i": i})
                # acknowledged means committed: a fresh connection already reads it
                with engine.connect() as conn:
                    found = conn.execute(
                        text("SELECT hash FROM audit_events WHERE seq = :s"), {"s": event.seq}
                    ).scalar_one()
                assert found == event.hash
                with lock:
                    seen.append(event.seq)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with pytest.raises(ConfigError, match="actor"):
            writer.append("", "tick", "o", {})
    assert sorted(seen) == list(range(1, 241))
    assert verify_chain(engine).ok
    with pytest.raises(ConfigError, match="closed"):
        writer.append("a", "b", "c", {})
