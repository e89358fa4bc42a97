"""Dagster resources: the OWS source, the warehouse and SMTP. Secrets come only from EnvVar.

Engines are created on first use, never at import time.
"""

from __future__ import annotations

import functools
import os
from typing import Optional

import sqlalchemy as sa
from dagster import ConfigurableResource, EnvVar
from pydantic import Field

from ows_pipeline.settings import Settings, ensure_sqlite_parent


class SourceConfigError(ValueError):
    """A source or warehouse setting that cannot work, with the fix in its message."""


def check_oracle_url(url: sa.URL) -> None:
    """Refuse the SID trap: `host:1521/OWS` names a SID; a service needs `?service_name=OWS`."""
    if not url.drivername.startswith("oracle"):
        return
    if url.drivername != "oracle+oracledb":
        raise SourceConfigError(
            f"OWS_SOURCE_URL uses driver '{url.drivername}'; use 'oracle+oracledb://' (python-oracledb thin mode)."
        )
    if url.database and "service_name" not in url.query:
        raise SourceConfigError(
            f"OWS_SOURCE_URL points at a SID path ('/{url.database}'); "
            f"use '{url.set(database='').render_as_string(hide_password=True)}?service_name={url.database}' "
            "for a service name."
        )


def _apply_password(url: sa.URL, password: Optional[str]) -> sa.URL:
    return url.set(password=password) if password else url


@functools.lru_cache(maxsize=16)
def _engine(url: sa.URL, role: str) -> sa.Engine:
    kwargs: dict = {"pool_pre_ping": True}
    if url.get_backend_name() == "oracle":
        check_oracle_url(url)
        kwargs["arraysize"] = 5000
    engine = sa.create_engine(url, **kwargs)
    backend = url.get_backend_name()
    if backend == "oracle":

        @sa.event.listens_for(engine, "connect")
        def _utc_session(dbapi_conn, _record):
            with dbapi_conn.cursor() as cur:
                cur.execute("ALTER SESSION SET TIME_ZONE = 'UTC'")

    elif backend == "postgresql":

        @sa.event.listens_for(engine, "connect")
        def _pg_utc(dbapi_conn, _record):
            with dbapi_conn.cursor() as cur:
                cur.execute("SET TIME ZONE 'UTC'")
            dbapi_conn.commit()

    elif backend == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout = 60000")
            if role == "warehouse":
                cur.execute("PRAGMA journal_mode = WAL")
                cur.execute("PRAGMA synchronous = NORMAL")
            cur.close()

        begin = "BEGIN IMMEDIATE" if role == "warehouse" else "BEGIN"

        @sa.event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            # A real transaction from the first statement, DDL included. Warehouse transactions take
            # the write lock up front, so concurrent writers queue (busy_timeout) instead of failing.
            conn.exec_driver_sql(begin)

    return engine


def make_engine(url: str, password: Optional[str] = None, role: str = "source") -> sa.Engine:
    """A cached engine for `url`; SQLite folders are created, Oracle URLs validated."""
    ensure_sqlite_parent(url)
    return _engine(_apply_password(sa.make_url(url), password), role)


class OwsSourceResource(ConfigurableResource):
    """The OWS database: Oracle through python-oracledb thin mode, or the SQLite demo."""

    url: Optional[str] = Field(
        default=None, description="SQLAlchemy URL (OWS_SOURCE_URL); default: the demo SQLite file under OWS_HOME."
    )
    password: Optional[str] = Field(default=None, description="Password (OWS_SOURCE_PASSWORD), kept out of the URL.")
    db_schema: Optional[str] = Field(default=None, description="Oracle schema owning the OWS tables.")
    safety_delay_seconds: int = Field(default=60, description="Upper watermark = database clock minus this delay.")
    lookback_seconds: int = Field(default=3600, description="Look-back window under the watermark for late commits.")
    lookback_ids: int = Field(default=10_000, description="Look-back on hist_id for history rows committed late.")
    chunk_rows: int = Field(default=50_000, description="Rows per streamed chunk.")

    def resolved_url(self) -> str:
        return self.url or Settings.from_env().source_url

    def get_engine(self) -> sa.Engine:
        return make_engine(self.resolved_url(), self.password, "source")

    def display_url(self) -> str:
        return sa.make_url(self.resolved_url()).render_as_string(hide_password=True)


class WarehouseResource(ConfigurableResource):
    """The reporting warehouse: any SQLAlchemy URL; SQLite under OWS_HOME by default."""

    url: Optional[str] = Field(default=None, description="SQLAlchemy URL (OWS_WAREHOUSE_URL).")
    password: Optional[str] = Field(default=None, description="Password (OWS_WAREHOUSE_PASSWORD).")

    def resolved_url(self) -> str:
        return self.url or Settings.from_env().warehouse_url

    def get_engine(self) -> sa.Engine:
        from ows_pipeline.warehouse.schema import create_warehouse_tables

        engine = make_engine(self.resolved_url(), self.password, "warehouse")
        _ensure_tables_once(engine, create_warehouse_tables)
        return engine

    def display_url(self) -> str:
        return sa.make_url(self.resolved_url()).render_as_string(hide_password=True)


_created: set[int] = set()


def _ensure_tables_once(engine: sa.Engine, create) -> None:
    if id(engine) not in _created:
        create(engine)
        _created.add(id(engine))


class SmtpResource(ConfigurableResource):
    """SMTP delivery of the weekly report; unset host means no email."""

    host: Optional[str] = Field(default=None, description="OWS_SMTP_HOST; unset: no email is sent.")
    port: int = Field(default=587, description="OWS_SMTP_PORT.")
    user: Optional[str] = Field(default=None, description="OWS_SMTP_USER.")
    password: Optional[str] = Field(default=None, description="OWS_SMTP_PASSWORD.")
    starttls: bool = Field(default=True, description="OWS_SMTP_STARTTLS: upgrade the connection with STARTTLS.")
    from_addr: Optional[str] = Field(default=None, description="OWS_REPORT_FROM.")
    recipients: Optional[str] = Field(default=None, description="OWS_REPORT_RECIPIENTS, comma separated.")
    timeout_seconds: float = Field(default=30.0, description="Socket timeout per attempt.")

    @property
    def configured(self) -> bool:
        return bool(self.host and self.recipients)

    def recipient_list(self) -> list[str]:
        return [r.strip() for r in (self.recipients or "").split(",") if r.strip()]


def _env(name: str):
    """EnvVar(name) when the variable is set, else None (so the default applies)."""
    return EnvVar(name) if os.environ.get(name) else None


def _env_int(name: str, default: int):
    return EnvVar.int(name) if os.environ.get(name) else default


def resources_from_env() -> dict:
    """The resources of the code location, bound to environment variables by name."""
    starttls = Settings.from_env().smtp_starttls
    return {
        "ows_source": OwsSourceResource(
            url=_env("OWS_SOURCE_URL"), password=_env("OWS_SOURCE_PASSWORD"), db_schema=_env("OWS_SOURCE_SCHEMA")
        ),
        "warehouse": WarehouseResource(url=_env("OWS_WAREHOUSE_URL"), password=_env("OWS_WAREHOUSE_PASSWORD")),
        "smtp": SmtpResource(
            host=_env("OWS_SMTP_HOST"),
            port=_env_int("OWS_SMTP_PORT", 587),
            user=_env("OWS_SMTP_USER"),
            password=_env("OWS_SMTP_PASSWORD"),
            starttls=starttls,
            from_addr=_env("OWS_REPORT_FROM"),
            recipients=_env("OWS_REPORT_RECIPIENTS"),
        ),
    }
