"""Which raw rows a staging run processes, and staging them.

Full tables: the whole `raw_ows_<table>` (it holds exactly the latest extract).
Incremental and append tables: the raw rows brought by raw batches that finished after the
newest raw batch already staged (`etl_batches.watermark_to` of the staging batch holds that
raw batch's `finished_at`). The staging batch's `as_of` is the newest included raw batch's.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Optional

import pandas as pd
import sqlalchemy as sa

from ows_pipeline.source.schema import SOURCE_TABLES_BY_NAME
from ows_pipeline.staging.quarantine import StagingResult, stage_rows
from ows_pipeline.warehouse.batches import last_successful_batch
from ows_pipeline.warehouse.bulk import as_utc
from ows_pipeline.warehouse.schema.raw import RAW_TABLES
from ows_pipeline.warehouse.schema.ledger import etl_batches


@dataclass(frozen=True)
class PendingRaw:
    """The raw rows to stage and the raw batches they come from."""

    frame: pd.DataFrame
    raw_batch_ids: tuple[str, ...]
    as_of: Optional[dt.datetime]
    watermark_from: Optional[str]
    watermark_to: Optional[str]


def _stamp(value) -> Optional[dt.datetime]:
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return as_utc(value)


def pending_raw(conn: sa.Connection, table_name: str) -> PendingRaw:
    """The raw rows of `table_name` that staging has not processed yet."""
    source = SOURCE_TABLES_BY_NAME[table_name]
    raw = RAW_TABLES[table_name]
    previous = last_successful_batch(conn, f"stg_{table_name}")
    watermark_from = previous.watermark_to if previous is not None else None
    since = _stamp(watermark_from)
    batches = conn.execute(
        sa.select(etl_batches.c.batch_id, etl_batches.c.as_of, etl_batches.c.finished_at)
        .where(etl_batches.c.asset_key == f"raw_{table_name}", etl_batches.c.status == "SUCCESS")
        .order_by(etl_batches.c.finished_at)
    ).all()
    if source.mode == "full":
        newer = batches[-1:]
    else:
        newer = [b for b in batches if since is None or _stamp(b.finished_at) > since]
    columns = [c for c in raw.columns if not c.name.startswith("_")]
    query = sa.select(*columns).order_by(*(raw.c[k] for k in source.key))
    if source.mode != "full":
        ids = [b.batch_id for b in newer]
        if not ids:
            return PendingRaw(pd.DataFrame(columns=[c.name for c in columns]), (), _as_of(previous), watermark_from,
                              watermark_from)
        query = query.where(raw.c._batch_id.in_(ids))
    frame = pd.DataFrame(conn.execute(query).all(), columns=[c.name for c in columns])
    as_of = max((_stamp(b.as_of) for b in newer if b.as_of is not None), default=None) or _as_of(previous)
    watermark_to = _stamp(newer[-1].finished_at).isoformat() if newer else watermark_from
    return PendingRaw(frame, tuple(b.batch_id for b in newer), as_of, watermark_from, watermark_to)


def _as_of(previous) -> Optional[dt.datetime]:
    return _stamp(previous.as_of) if previous is not None else None


def stage_from_raw(
    engine: sa.Engine, table_name: str, *, batch_id: str, run_id: Optional[str] = None, keep_clean: bool = False
) -> StagingResult:
    """Stage the pending raw rows of `table_name` (see the module docstring)."""
    with engine.connect() as conn:
        pending = pending_raw(conn, table_name)
    return stage_rows(
        engine, table_name, pending.frame, batch_id=batch_id, as_of=pending.as_of, run_id=run_id,
        keep_clean=keep_clean,
        batch_values={
            "watermark_from": pending.watermark_from,
            "watermark_to": pending.watermark_to,
            "message": f"raw batches: {', '.join(pending.raw_batch_ids) or 'none new'}"[:2000],
        },
    )
