"""Where the registry lives: ``BASTION_HOME`` and the database URL, engines, migrations.

Embedded default: a SQLite file ``registry.db`` and a content-addressed store under
``BASTION_HOME`` (default ``./.bastion``): nothing to install or start. At scale:
``BASTION_DATABASE_URL=postgresql+psycopg://user@host/db`` (the ``postgres`` extra). The schema
is created and upgraded by Alembic migrations shipped in the package
(:mod:`bastion.governance.migrations`), applied on first use.

SQLite runs in WAL mode with ``synchronous=NORMAL``: a committed transaction survives a crash
of any process (the tests SIGKILL writers); a power cut may lose the last transactions
(``BASTION_SQLITE_SYNC=FULL`` trades speed for that). Writers take the database lock up front
(``BEGIN IMMEDIATE``) so concurrent appends serialise instead of failing on upgrade.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text

from bastion.exceptions import ConfigError

__all__ = ["Location", "dispose", "engine_for", "resolve_location", "upgrade"]

_ENGINES: dict[str, Engine] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Location:
    """Where one registry lives.

    Attributes:
        home: folder of the content-addressed store (and of the SQLite file by default).
        url: SQLAlchemy URL of the database.
    """

    home: Path
    url: str

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")


def resolve_location(
    home: str | os.PathLike[str] | None = None, url: str | None = None
) -> Location:
    """``home`` / ``url`` if given, else ``BASTION_HOME`` / ``BASTION_DATABASE_URL``, else
    ``./.bastion`` and SQLite inside it."""
    folder = Path(home or os.environ.get("BASTION_HOME") or ".bastion").absolute()
    db_url = url or os.environ.get("BASTION_DATABASE_URL") or f"sqlite:///{folder / 'registry.db'}"
    if "://" not in db_url:
        raise ConfigError(
            f"BASTION_DATABASE_URL must be a SQLAlchemy URL such as "
            f"postgresql+psycopg://user@host/db; received {db_url!r}"
        )
    return Location(folder, db_url)


def engine_for(location: Location) -> Engine:
    """One engine per URL per process, the schema upgraded to the latest migration."""
    with _LOCK:
        engine = _ENGINES.get(location.url)
        if engine is not None:
            return engine
        if location.is_sqlite:
            location.home.mkdir(parents=True, exist_ok=True)
            engine = create_engine(
                location.url, connect_args={"timeout": 60, "isolation_level": None}
            )
            _sqlite_pragmas(engine)
        else:
            try:
                engine = create_engine(location.url, pool_pre_ping=True)
            except ImportError as err:  # the driver (psycopg) is missing
                from bastion.exceptions import MissingExtraError

                raise MissingExtraError(
                    f"{location.url.split('://')[0]} needs its driver: "
                    "pip install 'bastion[postgres]'"
                ) from err
        upgrade(engine)
        _ENGINES[location.url] = engine
        return engine


def dispose(location: Location) -> None:
    """Close the pooled connections of ``location``'s engine (tests, forks)."""
    with _LOCK:
        engine = _ENGINES.pop(location.url, None)
    if engine is not None:
        engine.dispose()


def _sqlite_pragmas(engine: Engine) -> None:
    sync = os.environ.get("BASTION_SQLITE_SYNC", "NORMAL").upper()
    if sync not in ("NORMAL", "FULL"):
        raise ConfigError(f"BASTION_SQLITE_SYNC must be NORMAL or FULL; received {sync!r}")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={sync}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # take the write lock at BEGIN: two writers never both read the chain head
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def upgrade(engine: Engine) -> None:
    """Apply every Alembic migration the database lacks (idempotent; serialised)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # one migrator at a time across processes
            conn.execute(text("SELECT pg_advisory_xact_lock(7212001)"))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
