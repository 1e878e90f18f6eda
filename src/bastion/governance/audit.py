"""The audit trail: an append-only hash chain in the registry database, with signed checkpoints.

Each event holds ``seq`` (1, 2, ...), ``ts``, ``actor``, ``action``, ``object``, ``details``
(canonical JSON), ``prev_hash`` and ``hash = sha256(seq US ts US actor US action US object US
details US prev_hash)`` (US is the unit separator 0x1f, which no field may hold; the first
event's ``prev_hash`` is 64 zeros). Changing, removing or reordering any event breaks every
later link.

A bare chain can be rewritten whole by anyone who can write the database, so
:meth:`AuditLog.checkpoint` signs ``bastion-audit-checkpoint:v1:<seq>:<head hash>`` with an
ECDSA P-256 key held outside the database; :func:`verify_chain` checks every link and every
checkpoint against keys the caller trusts. Events after the last checkpoint are protected by
the chain only: checkpoint often (the gateway and ``bastion release`` do).

Appends from several processes are serialised by the database: each append locks the one-row
``audit_head`` table (``BEGIN IMMEDIATE`` on SQLite, ``SELECT ... FOR UPDATE`` on
PostgreSQL), reads the head, inserts the next event and moves the head in one transaction, so
the chain never forks; an event is acknowledged (the call returns) only after its
transaction commits. :meth:`AuditLog.append_many` commits a batch in one transaction (group
commit).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select, text

from bastion.exceptions import ConfigError
from bastion.governance import schema

__all__ = [
    "GENESIS",
    "AuditEvent",
    "AuditLog",
    "AuditWriter",
    "ChainVerification",
    "checkpoint_message",
    "event_hash",
    "utc_now",
    "verify_chain",
]

GENESIS = "0" * 64
_US = "\x1f"
_HEAD_ID = 1


def utc_now() -> str:
    """Now, as the registry stores times (UTC, microseconds, ``Z``)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(details: Mapping[str, Any] | None) -> str:
    """Sorted keys, no spaces, non-ASCII kept, non-finite numbers refused."""
    return json.dumps(
        dict(details or {}),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=str,
    )


def event_hash(
    seq: int, ts: str, actor: str, action: str, obj: str, details: str, prev_hash: str
) -> str:
    """The chain's hash of one event (see the module docstring)."""
    joined = _US.join((str(seq), ts, actor, action, obj, details, prev_hash))
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()


def checkpoint_message(seq: int, head_hash: str) -> bytes:
    """What a checkpoint signs."""
    return f"bastion-audit-checkpoint:v1:{seq}:{head_hash}".encode("ascii")


@dataclass(frozen=True)
class AuditEvent:
    """One committed event."""

    seq: int
    ts: str
    actor: str
    action: str
    object: str
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": self.ts,
            "actor": self.actor,
            "action": self.action,
            "object": self.object,
            "details": self.details,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True)
class ChainVerification:
    """What :func:`verify_chain` found.

    Attributes:
        ok: every link and every checkpoint holds, and at least ``require_checkpoint``.
        events: events checked.
        checkpoints: checkpoints whose signature verified.
        problem: the first broken link or checkpoint, in words (None when ok).
        broken_seq: the seq where the problem is.
        unprotected_tail: events after the last verified checkpoint (protected by the chain
            alone).
    """

    ok: bool
    events: int
    checkpoints: int
    problem: str | None = None
    broken_seq: int | None = None
    unprotected_tail: int = 0
    head_hash: str = GENESIS


@dataclass
class AuditLog:
    """Append to and read the chain in one registry database.

    Example::

        >>> log = AuditLog(engine)                                   # doctest: +SKIP
        >>> log.append("alice", "register", "model:cancer@3", {"sha256": "..."})
    """

    engine: Engine
    _dialect: str = field(init=False)

    def __post_init__(self) -> None:
        self._dialect = self.engine.dialect.name

    def append(
        self, actor: str, action: str, obj: str, details: Mapping[str, Any] | None = None
    ) -> AuditEvent:
        """Append one event; returns it once committed."""
        return self.append_many([(actor, action, obj, details)])[0]

    def append_many(
        self, events: Iterable[tuple[str, str, str, Mapping[str, Any] | None]]
    ) -> list[AuditEvent]:
        """Append several events in one transaction (group commit); all or none."""
        prepared = [_prepare(*e) for e in events]
        if not prepared:
            return []
        out: list[AuditEvent] = []
        with self.engine.begin() as conn:
            seq, prev = self._lock_head(conn)
            rows = []
            for actor, action, obj, details, parsed in prepared:
                seq += 1
                ts = utc_now()
                digest = event_hash(seq, ts, actor, action, obj, details, prev)
                rows.append(
                    {
                        "seq": seq,
                        "ts": ts,
                        "actor": actor,
                        "action": action,
                        "object": obj,
                        "details": details,
                        "prev_hash": prev,
                        "hash": digest,
                    }
                )
                out.append(AuditEvent(seq, ts, actor, action, obj, parsed, prev, digest))
                prev = digest
            conn.execute(schema.audit_events.insert(), rows)
            conn.execute(
                schema.audit_head.update()
                .where(schema.audit_head.c.id == _HEAD_ID)
                .values(seq=seq, hash=prev)
            )
        return out

    def _lock_head(self, conn: Any) -> tuple[int, str]:
        head = schema.audit_head
        query = select(head.c.seq, head.c.hash).where(head.c.id == _HEAD_ID)
        if self._dialect == "postgresql":
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            if self._dialect == "postgresql":
                # the first append creates the head; concurrent first appends race on the
                # primary key, so serialise them with a transaction-scoped advisory lock
                conn.execute(text("SELECT pg_advisory_xact_lock(7212002)"))
                row = conn.execute(query).first()
            if row is None:
                conn.execute(head.insert().values(id=_HEAD_ID, seq=0, hash=GENESIS))
                return 0, GENESIS
        return int(row.seq), str(row.hash)

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last committed event ((0, GENESIS) when empty)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(schema.audit_head.c.seq, schema.audit_head.c.hash).where(
                    schema.audit_head.c.id == _HEAD_ID
                )
            ).first()
        return (int(row.seq), str(row.hash)) if row is not None else (0, GENESIS)

    def events(self, since: int = 0, batch: int = 10_000) -> Iterator[AuditEvent]:
        """Every event with ``seq > since``, in order (streamed in batches)."""
        for row in _rows(self.engine, since, batch):
            seq, ts, actor, action, obj, details, prev, digest = row
            yield AuditEvent(seq, ts, actor, action, obj, json.loads(details), prev, digest)

    def checkpoint(self, sign: Callable[[bytes], bytes], key_id: str) -> tuple[int, str]:
        """Sign the current head with ``sign`` (an ECDSA P-256 signer held outside the
        database) and store the checkpoint; returns (seq, head hash)."""
        seq, head_hash = self.head()
        signature = base64.b64encode(sign(checkpoint_message(seq, head_hash))).decode("ascii")
        with self.engine.begin() as conn:
            existing = conn.execute(
                select(schema.audit_checkpoints.c.seq).where(schema.audit_checkpoints.c.seq == seq)
            ).first()
            if existing is None:
                conn.execute(
                    schema.audit_checkpoints.insert().values(
                        seq=seq,
                        head_hash=head_hash,
                        created_at=utc_now(),
                        key_id=key_id,
                        signature=signature,
                    )
                )
        return seq, head_hash

    def export_jsonl(self, out: Any, since: int = 0) -> int:
        """Write events as JSON lines to the text stream ``out``; returns the count."""
        n = 0
        for event in self.events(since):
            out.write(json.dumps(event.to_dict(), sort_keys=True, ensure_ascii=False) + "\n")
            n += 1
        return n


class AuditWriter:
    """Group commit for many concurrent appenders in one process (the gateway's threads).

    :meth:`append` queues the event and blocks until the transaction holding it has
    committed: an event is acknowledged only once durable, as with :meth:`AuditLog.append`,
    but the events of every thread waiting at that moment share one transaction.

    Example::

        >>> with AuditWriter(AuditLog(engine)) as writer:            # doctest: +SKIP
        ...     writer.append("gateway", "alert", "model:m@3", {"kind": "drift"})
    """

    def __init__(self, log: AuditLog, max_batch: int = 1000) -> None:
        import queue
        import threading

        self.log = log
        self.max_batch = max_batch
        self._queue: queue.Queue[Any] = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="bastion-audit-writer", daemon=True)
        self._thread.start()

    def append(
        self, actor: str, action: str, obj: str, details: Mapping[str, Any] | None = None
    ) -> AuditEvent:
        """Append one event; returns it once its transaction has committed."""
        from concurrent.futures import Future

        if self._closed:
            raise ConfigError("the audit writer is closed")
        _prepare(actor, action, obj, details)  # bad events fail here, not in the batch
        done: Future[AuditEvent] = Future()
        self._queue.put(((actor, action, obj, details), done))
        return done.result()

    def _run(self) -> None:
        import queue

        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)  # finish this batch, then stop
                    break
                batch.append(nxt)
            try:
                events = self.log.append_many([event for event, _ in batch])
            except Exception as err:  # the whole transaction failed: every caller hears it
                for _, done in batch:
                    done.set_exception(err)
                continue
            for (_, done), event in zip(batch, events, strict=True):
                done.set_result(event)

    def close(self) -> None:
        """Commit what is queued, then stop the writer thread."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()

    def __enter__(self) -> AuditWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def verify_chain(
    engine: Engine,
    verify_signature: Callable[[str, bytes, bytes], bool] | None = None,
    *,
    require_checkpoint: bool = False,
    batch: int = 50_000,
) -> ChainVerification:
    """Re-hash every event and check every checkpoint.

    Parameters:
        engine: the registry database.
        verify_signature: ``(key_id, message, signature) -> bool`` against keys the caller
            trusts (pinned outside the database); None skips checkpoint signatures (reported
            as not verified).
        require_checkpoint: fail when no checkpoint verifies.

    Returns:
        :class:`ChainVerification` naming the first broken link or checkpoint.
    """
    checkpoints = _checkpoints(engine)
    verified = 0
    last_verified_seq = 0
    prev = GENESIS
    expected_seq = 0
    n = 0
    sha = hashlib.sha256
    for seq, ts, actor, action, obj, details, prev_hash, digest in _rows(engine, 0, batch):
        expected_seq += 1
        n += 1
        if seq != expected_seq:
            return _broken(n - 1, verified, f"event {expected_seq} is missing (next is {seq})", seq)
        if prev_hash != prev:
            return _broken(
                n - 1, verified, f"event {seq}: prev_hash does not match event {seq - 1}", seq
            )
        joined = _US.join((str(seq), ts, actor, action, obj, details, prev_hash))
        if sha(joined.encode("utf-8")).hexdigest() != digest:
            return _broken(n - 1, verified, f"event {seq}: content does not match its hash", seq)
        prev = digest
        cp = checkpoints.get(seq)
        if cp is not None:
            head_hash, key_id, signature = cp
            if head_hash != digest:
                return _broken(
                    n, verified, f"checkpoint at event {seq}: head hash differs from the chain", seq
                )
            if verify_signature is not None:
                if not verify_signature(key_id, checkpoint_message(seq, digest), signature):
                    return _broken(
                        n,
                        verified,
                        f"checkpoint at event {seq}: signature does not verify with a trusted "
                        f"key (key {key_id[:16]})",
                        seq,
                    )
                verified += 1
                last_verified_seq = seq
    beyond = [s for s in checkpoints if s > expected_seq]
    if beyond:
        return _broken(
            n,
            verified,
            f"checkpoint at event {min(beyond)} but the chain ends at {expected_seq} "
            "(events were removed)",
            min(beyond),
        )
    head_seq, head_hash = AuditLog(engine).head()
    if (head_seq, head_hash) != (expected_seq, prev):
        return _broken(
            n,
            verified,
            f"the head says event {head_seq} but the chain ends at {expected_seq}",
            expected_seq,
        )
    if require_checkpoint and verified == 0 and n:
        return _broken(n, verified, "no checkpoint verifies with a trusted key", None)
    return ChainVerification(
        ok=True,
        events=n,
        checkpoints=verified,
        unprotected_tail=n - last_verified_seq,
        head_hash=prev,
    )


def _broken(n: int, verified: int, problem: str, seq: int | None) -> ChainVerification:
    return ChainVerification(
        ok=False, events=n, checkpoints=verified, problem=problem, broken_seq=seq
    )


def _checkpoints(engine: Engine) -> dict[int, tuple[str, str, bytes]]:
    cp = schema.audit_checkpoints
    with engine.connect() as conn:
        rows = conn.execute(select(cp.c.seq, cp.c.head_hash, cp.c.key_id, cp.c.signature))
        return {
            int(r.seq): (str(r.head_hash), str(r.key_id), base64.b64decode(r.signature))
            for r in rows
        }


def _rows(engine: Engine, since: int, batch: int) -> Iterator[tuple[Any, ...]]:
    """Events as plain tuples, in seq order, fetched in keyset-paginated batches straight
    from the driver's cursor (no row objects: verification reads millions of them)."""
    sql = (
        "SELECT seq, ts, actor, action, object, details, prev_hash, hash FROM audit_events "
        "WHERE seq > {p} ORDER BY seq LIMIT {n}"
    )
    param = "?" if engine.dialect.name == "sqlite" else "%s"
    query = sql.format(p=param, n=int(batch))
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        last = since
        while True:
            cur.execute(query, (last,))
            rows = cur.fetchall()
            if not rows:
                return
            yield from rows
            last = int(rows[-1][0])
    finally:
        raw.close()


def _prepare(
    actor: str, action: str, obj: str, details: Mapping[str, Any] | None
) -> tuple[str, str, str, str, dict[str, Any]]:
    for name, value in (("actor", actor), ("action", action), ("object", obj)):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"audit event {name} must be a non-empty string; got {value!r}")
        if any(ord(c) < 32 for c in value):
            raise ConfigError(f"audit event {name} holds a control character: {value!r}")
    try:
        text_details = canonical_json(details)
    except ValueError as err:
        raise ConfigError(f"audit event details are not JSON: {err}") from err
    return actor, action, obj, text_details, json.loads(text_details)
