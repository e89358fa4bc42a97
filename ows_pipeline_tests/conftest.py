"""Shared fixtures: a fresh OWS_HOME, SQLite and real PostgreSQL databases.

PostgreSQL tests use the server at OWS_TEST_PG_URL (default
postgresql+psycopg2://postgres@127.0.0.1:5432/postgres) and create their own database.
Without a server they are skipped with a loud message; under CI=true they fail instead.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

PG_ADMIN_URL = os.environ.get("OWS_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _pg_available() -> str | None:
    try:
        engine = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means no server
        return str(exc).splitlines()[0]


_PG_PROBLEM: str | None | bool = False


def pg_problem() -> str | None:
    global _PG_PROBLEM
    if _PG_PROBLEM is False:
        _PG_PROBLEM = _pg_available()
    return _PG_PROBLEM


def require_pg() -> None:
    """Skip (fail under CI) when no PostgreSQL server answers."""
    problem = pg_problem()
    if problem:
        message = f"!!! PostgreSQL not reachable at {PG_ADMIN_URL}: {problem}"
        if IN_CI:
            pytest.fail(message + " (CI=true: a skipped PostgreSQL test is a failure)")
        pytest.skip(message)


def create_pg_database(prefix: str = "ows_test") -> str:
    """Create a new empty database and return its SQLAlchemy URL."""
    require_pg()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return sa.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(url: str) -> None:
    from ows_pipeline.resources import _engine

    name = sa.make_url(url).database
    _engine.cache_clear()
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def pg_url():
    """A fresh PostgreSQL database, dropped afterwards."""
    url = create_pg_database()
    yield url
    drop_pg_database(url)


@pytest.fixture
def pg_url_2():
    """A second fresh PostgreSQL database (e.g. source and warehouse apart)."""
    url = create_pg_database()
    yield url
    drop_pg_database(url)


@pytest.fixture
def ows_home(tmp_path: Path, monkeypatch) -> Path:
    """A fresh OWS_HOME with every OWS_* setting cleared, so defaults apply under it."""
    for name in list(os.environ):
        if name.startswith("OWS_") and not name.startswith("OWS_TEST_"):
            monkeypatch.delenv(name)
    home = tmp_path / "ows_home"
    home.mkdir()
    monkeypatch.setenv("OWS_HOME", str(home))
    return home


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'db.sqlite'}"


@pytest.fixture
def sqlite_url_2(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'db2.sqlite'}"
