"""Registry fixtures: every database test runs on SQLite and, where the machine has one (CI
sets BASTION_TEST_DATABASE_URL), on a real PostgreSQL server, each test in its own schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.governance.db import Location, dispose, resolve_location


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
        # the schema (tests/conftest.py) outlives this location: disposed first, dropped after
        loc = resolve_location(tmp_path / "home", request.getfixturevalue("pg_schema_url"))
        try:
            yield loc
        finally:
            dispose(loc)


@pytest.fixture
def sqlite_location(tmp_path: Path) -> Iterator[Location]:
    loc = resolve_location(tmp_path / "home")
    try:
        yield loc
    finally:
        dispose(loc)
