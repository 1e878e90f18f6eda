"""Shared fixtures: small real datasets, a ready project folder like the demo's, and places of
their own on the real PostgreSQL and Redis servers named by ``BASTION_TEST_DATABASE_URL`` and
``BASTION_TEST_REDIS_URL`` (tests that need them skip when the variable is not set)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_URL = os.environ.get("BASTION_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("BASTION_TEST_REDIS_URL")


@pytest.fixture(scope="session")
def breast_cancer_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project folder (CSV files, ONNX models, bastion.yaml) built as `bastion demo` does."""
    pytest.importorskip("skl2onnx")
    from bastion.demo import _breast_cancer, _write_project

    folder = tmp_path_factory.mktemp("project") / "breast_cancer"
    _write_project(folder, _breast_cancer())
    return folder


@pytest.fixture
def project(breast_cancer_project: Path, tmp_path: Path) -> Path:
    """A private copy of the project that a test may break."""
    target = tmp_path / "project"
    shutil.copytree(breast_cancer_project, target)
    return target


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """``BASTION_TEST_DATABASE_URL`` pinned (``search_path``) to a fresh schema of this test's own.

    Engines this process opened on the URL are disposed and the schema dropped afterwards.
    """
    psycopg = pytest.importorskip("psycopg")
    if not PG_URL:
        pytest.skip("BASTION_TEST_DATABASE_URL is not set")
    from bastion.governance.db import dispose, resolve_location

    schema = f"t_{uuid.uuid4().hex[:16]}"
    plain = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in PG_URL else "?"
    url = f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    try:
        yield url
    finally:
        dispose(resolve_location(url=url))
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A Redis key prefix of this test's own on ``BASTION_TEST_REDIS_URL``; its keys are deleted
    afterwards."""
    redis = pytest.importorskip("redis")
    if not REDIS_URL:
        pytest.skip("BASTION_TEST_REDIS_URL is not set")
    value = f"bastion-test:{uuid.uuid4().hex}:"
    yield value
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=value + "*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
