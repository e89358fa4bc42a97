"""Throw-away PostgreSQL databases for the benchmarks, on the server at OWS_TEST_PG_URL."""

from __future__ import annotations

import os
import uuid

import sqlalchemy as sa

ADMIN_URL = os.environ.get("OWS_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


def create_database(prefix: str = "ows_bench", admin_url: str = ADMIN_URL) -> str:
    """Create an empty database named `<prefix>_<random>` and return its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str, admin_url: str = ADMIN_URL) -> None:
    """Drop a database made by `create_database`, closing this process's pooled connections first."""
    from ows_pipeline.resources import _engine

    _engine.cache_clear()
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{sa.make_url(url).database}" WITH (FORCE)')
    admin.dispose()


def clone_database(url: str, prefix: str = "ows_bench_copy", admin_url: str = ADMIN_URL) -> str:
    """A copy of the database at `url` (PostgreSQL's `CREATE DATABASE ... TEMPLATE`); returns its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{sa.make_url(url).database}"')
    admin.dispose()
    return sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
