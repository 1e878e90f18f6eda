"""Registry database start-up: replicas that open a fresh database at the same moment migrate it
once (PostgreSQL: an advisory lock; SQLite: ``BEGIN IMMEDIATE``) and then share one audit chain."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import text

from bastion.governance.audit import AuditLog, verify_chain
from bastion.governance.db import Location, engine_for

_OPENER = textwrap.dedent(
    """
    import sys
    from bastion.governance.audit import AuditLog
    from bastion.governance.db import engine_for, resolve_location

    home, url = sys.argv[1], sys.argv[2]
    sys.stdin.readline()  # released together, so that they race for the empty database
    engine = engine_for(resolve_location(home, url))
    AuditLog(engine).append("replica", "opened", "registry", {"pid": __import__("os").getpid()})
    """
)


@pytest.mark.slow
def test_replicas_opening_a_fresh_database_at_once_migrate_it_once(location: Location) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    args = [sys.executable, "-c", _OPENER, str(location.home), location.url]
    procs = [
        subprocess.Popen(args, stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(4)
    ]
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * len(procs), errors
    engine = engine_for(location)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
    assert [e.action for e in AuditLog(engine).events()] == ["opened"] * len(procs)
    assert verify_chain(engine).ok
