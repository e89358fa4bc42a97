"""Which raw rows a staging run processes, and staging them.

Full tables: the whole `raw_ows_<table>` (it holds exactly the latest extract).
Incremental and append tables: the raw rows brought by raw batches that finished after the
newest raw batch already staged (`etl_batches.watermark_to` of the staging batch holds that
raw batch's `finished_at`). The staging batch's `as_of` is the newest included raw batch's.
The rows are read in key order, one chunk at a time, and staged by `quarantine.stage_batch`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from collections.abc import Callable, Iterator
from typing import Optional

import pandas as pd
import sqlalchemy as sa

from ows_pipeline.settings import DEFAULT_STAGING_CHUNK_ROWS
from ows_pipeline.source.schema import SOURCE_TABLES_BY_NAME
from ows_pipeline.staging.quarantine import StagingInput, StagingResult, stage_batch
from ows_pipeline.warehouse.batches import last_successful_batch
from ows_pipeline.warehouse.bulk import as_utc
from ows_pipeline.warehouse.schema.raw import RAW_TABLES
from ows_pipeline.warehouse.schema.ledger import etl_batches


DEFAULT_CHUNK_ROWS = DEFAULT_STAGING_CHUNK_ROWS
"""Raw rows cleaned and checked at a time (`OWS_STAGING_CHUNK_ROWS`, run config `chunk_rows`)."""


@dataclass(frozen=True)
class PendingRaw:
    """Which raw rows to stage: the raw batches they come from and the staging batch's bounds."""

    table_name: str
    full: bool
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
    """The raw batches of `table_name` that staging has not processed yet."""
    source = SOURCE_TABLES_BY_NAME[table_name]
    previous = last_successful_batch(conn, f"stg_{table_name}")
    watermark_from = previous.watermark_to if previous is not None else None
    since = _stamp(watermark_from)
    batches = conn.execute(
        sa.select(etl_batches.c.batch_id, etl_batches.c.as_of, etl_batches.c.finished_at)
        .where(etl_batches.c.asset_key == f"raw_{table_name}", etl_batches.c.status == "SUCCESS")
        .order_by(etl_batches.c.finished_at)
    ).all()
    full = source.mode == "full"
    if full:
        newer = batches[-1:]
    else:
        newer = [b for b in batches if since is None or _stamp(b.finished_at) > since]
    as_of = max((_stamp(b.as_of) for b in newer if b.as_of is not None), default=None) or _as_of(previous)
    watermark_to = _stamp(newer[-1].finished_at).isoformat() if newer else watermark_from
    return PendingRaw(table_name, full, tuple(b.batch_id for b in newer), as_of, watermark_from, watermark_to)


def _as_of(previous) -> Optional[dt.datetime]:
    return _stamp(previous.as_of) if previous is not None else None


def raw_chunks(conn: sa.Connection, pending: PendingRaw, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The pending raw rows in key order, `chunk_rows` at a time, through a server-side cursor.

    Columns are read untyped (values as the driver gives them: text timestamps on SQLite are typed
    by the cleaning step, column-wise) and each chunk is built column by column from tuples.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, not {chunk_rows}")
    source = SOURCE_TABLES_BY_NAME[pending.table_name]
    names = [c.name for c in source.table.columns]
    raw = sa.table(RAW_TABLES[pending.table_name].name, *(sa.column(n) for n in (*names, "_batch_id")))
    query = sa.select(*(raw.c[n] for n in names)).order_by(*(raw.c[k] for k in source.key))
    if not pending.full:
        if not pending.raw_batch_ids:
            return
        query = query.where(raw.c._batch_id.in_(pending.raw_batch_ids))
    result = conn.execute(query, execution_options={"yield_per": chunk_rows})
    try:
        for rows in result.partitions(chunk_rows):
            columns = zip(*rows)
            del rows
            yield pd.DataFrame({name: list(values) for name, values in zip(names, columns)})
    finally:
        result.close()


def stage_from_raw(
    engine: sa.Engine, table_name: str, *, batch_id: str, run_id: Optional[str] = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS, sample_rows: int = 0,
    progress: Optional[Callable[[int, int], None]] = None,
) -> StagingResult:
    """Stage the pending raw rows of `table_name` in chunks of `chunk_rows`, all or nothing."""

    def open_input(conn: sa.Connection) -> StagingInput:
        pending = pending_raw(conn, table_name)
        values = {
            "watermark_from": pending.watermark_from,
            "watermark_to": pending.watermark_to,
            "message": f"raw batches: {', '.join(pending.raw_batch_ids) or 'none new'}"[:2000],
        }
        chunks = ((frame, None) for frame in raw_chunks(conn, pending, chunk_rows))
        return StagingInput(pending.as_of, chunks, values)

    return stage_batch(engine, table_name, open_input, batch_id=batch_id, run_id=run_id, sample_rows=sample_rows,
                       progress=progress)
