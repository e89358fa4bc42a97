"""The `etl_batches` ledger: one row per load, with ids, watermarks, counts, status and timings."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Optional

import sqlalchemy as sa

from ows_pipeline.warehouse.schema.ledger import etl_batches


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def new_batch_id(now: Optional[dt.datetime] = None) -> str:
    """A sortable, unique batch id such as `20261121T235959Z-3fa2c1d9`."""
    now = now or utc_now()
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def record_batch(conn: sa.Connection, **values) -> None:
    """Insert one `etl_batches` row inside the caller's transaction."""
    values.setdefault("started_at", utc_now())
    values.setdefault("finished_at", utc_now())
    conn.execute(sa.insert(etl_batches).values(**values))


def record_failed_batch(engine: sa.Engine, **values) -> None:
    """Record a failed load in its own transaction (the load's own transaction was rolled back)."""
    values["status"] = "FAILED"
    with engine.begin() as conn:
        record_batch(conn, **values)


def last_successful_batch(conn: sa.Connection, asset_key: str) -> Optional[sa.Row]:
    """The newest successful batch of `asset_key`, or None."""
    query = (
        sa.select(etl_batches)
        .where(etl_batches.c.asset_key == asset_key, etl_batches.c.status == "SUCCESS")
        .order_by(etl_batches.c.finished_at.desc(), etl_batches.c.batch_id.desc())
        .limit(1)
    )
    return conn.execute(query).first()
