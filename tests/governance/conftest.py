"""Registry fixtures: every database test runs on SQLite and, where the machine has one (CI
sets BASTION_TEST_DATABASE_URL), on a real PostgreSQL server, each test in its own schema."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.governance.db import Location, dispose, resolve_location

PG_URL = os.environ.get("BASTION_TEST_DATABASE_URL")


def _pg_location(home: Path) -> Iterator[Location]:
    psycopg = pytest.importorskip("psycopg")
    if not PG_URL:
        pytest.skip("BASTION_TEST_DATABASE_URL is not set")
    schema = f"t_{uuid.uuid4().hex[:16]}"
    plain = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in PG_URL else "?"
    location = resolve_location(home, f"{PG_URL}{sep}options=-csearch_path%3D{schema}")
    try:
        yield location
    finally:
        dispose(location)
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Location]:
    """A fresh, empty registry location on each backend."""
    if request.param == "sqlite":
        loc = resolve_location(tmp_path / "home")
        try:
            yield loc
        finally:
            dispose(loc)
    else:
        yield from _pg_location(tmp_path / "home")


@pytest.fixture
def sqlite_location(tmp_path: Path) -> Iterator[Location]:
    loc = resolve_location(tmp_path / "home")
    try:
        yield loc
    finally:
        dispose(loc)
