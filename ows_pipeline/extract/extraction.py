"""Extract one OWS table into its `raw_ows_<table>` copy: full, incremental or append-only.

Incremental loads read `lo < last_update_date <= hi`, where `hi` is the source database's
clock minus a safety delay and `lo` the stored watermark minus a look-back window, so rows
committed late are not lost. Rows are streamed in Arrow batches (`warehouse.bulk.read_batches`,
written by `warehouse.bulk.write_arrow`; PostgreSQL to PostgreSQL is one COPY pipe) into a
temporary stage, merged into the raw table keeping the newest version of each key (a first load
goes straight into the empty raw table), and the new watermark is recorded in `etl_batches` in
the same transaction: a failure leaves table and watermark untouched.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional

import sqlalchemy as sa

from ows_pipeline.resources import SourceConfigError
from ows_pipeline.source.schema import TS, SourceTable
from ows_pipeline.warehouse.batches import last_successful_batch, new_batch_id, record_batch, record_failed_batch
from ows_pipeline.warehouse.bulk import arrow_schema, as_utc, compiled_sql, postgres_copy_select, read_batches, write_arrow
from ows_pipeline.warehouse.schema.raw import RAW_TABLES

Log = Callable[[str], None]
IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_$#]{0,127}")


@dataclass(frozen=True)
class ExtractOptions:
    safety_delay: dt.timedelta = dt.timedelta(seconds=60)
    lookback: dt.timedelta = dt.timedelta(hours=1)
    lookback_ids: int = 10_000
    chunk_rows: int = 50_000
    schema: Optional[str] = None

    def __post_init__(self):
        if self.schema is not None and not IDENTIFIER.fullmatch(self.schema):
            raise SourceConfigError(
                f"OWS_SOURCE_SCHEMA={self.schema!r} is not a plain Oracle identifier "
                "(letters, digits, _ $ #, starting with a letter); set it to the schema name only."
            )


@dataclass
class ExtractResult:
    table: str
    batch_id: str
    mode: str
    rows_in: int
    rows_loaded: int
    table_rows: int
    as_of: dt.datetime
    watermark_from: Optional[str]
    watermark_to: Optional[str]
    seconds: float
    preview: list[tuple] = field(default_factory=list)
    columns: tuple[str, ...] = ()


DEMO_STATE_TABLE = "ows_demo_state"


def source_clock(conn: sa.Connection) -> dt.datetime:
    """The source database's current time, as an aware UTC datetime.

    A demo source (`ows-pipeline demo-source`) simulates a database whose clock stands at its
    as-of time, kept in `ows_demo_state`; that time is used instead of the server's.
    """
    dialect = conn.dialect.name
    if dialect != "oracle" and sa.inspect(conn).has_table(DEMO_STATE_TABLE):
        as_of = sa.column("as_of", TS)
        demo_now = conn.execute(sa.select(sa.func.max(as_of)).select_from(sa.table(DEMO_STATE_TABLE))).scalar()
        if demo_now is not None:
            return as_utc(demo_now)
    if dialect == "oracle":
        value = conn.exec_driver_sql("SELECT SYS_EXTRACT_UTC(SYSTIMESTAMP) FROM DUAL").scalar_one()
    elif dialect == "postgresql":
        value = conn.exec_driver_sql("SELECT clock_timestamp()").scalar_one()
    elif dialect == "sqlite":
        value = dt.datetime.fromisoformat(conn.exec_driver_sql("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')").scalar_one())
    else:
        value = dt.datetime.now(dt.timezone.utc)
    return as_utc(value)


def extract_query(
    source: SourceTable,
    dialect: str,
    lower: Optional[dt.datetime | int] = None,
    upper: Optional[dt.datetime] = None,
) -> sa.Select:
    """The SELECT for one extract, with bind variables for the watermark range.

    On Oracle, TIMESTAMP WITH TIME ZONE columns are read through SYS_EXTRACT_UTC.
    """
    columns = []
    for col in source.table.columns:
        if dialect == "oracle" and isinstance(col.type, sa.TIMESTAMP):
            columns.append(sa.func.sys_extract_utc(col, type_=TS).label(col.name))
        else:
            columns.append(col)
    query = sa.select(*columns)
    if source.mode in ("incremental", "append"):
        wm = source.table.c[source.watermark_column]
        if lower is not None:
            query = query.where(wm > sa.bindparam("wm_lower", lower, type_=wm.type))
        if upper is not None and source.mode == "incremental":
            query = query.where(wm <= sa.bindparam("wm_upper", upper, type_=wm.type))
    return query


def _watermark_text(value) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return as_utc(value).isoformat()
    return str(value)


def _parse_watermark(source: SourceTable, text: Optional[str]):
    if text is None:
        return None
    return int(text) if source.mode == "append" else dt.datetime.fromisoformat(text)


def _bounds(source: SourceTable, previous: Optional[str], clock: dt.datetime, opts: ExtractOptions):
    """(lower bound to read from, upper bound) for this extract."""
    last = _parse_watermark(source, previous)
    if source.mode == "incremental":
        upper = clock - opts.safety_delay
        lower = None if last is None else last - opts.lookback
        return lower, upper
    if source.mode == "append":
        return (None if last is None else max(0, last - opts.lookback_ids)), None
    return None, None


def _quote(conn: sa.Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


def _merge_sql(conn: sa.Connection, source: SourceTable, raw: sa.Table, stage: str) -> list[str]:
    """Set-based statements that move the stage into the raw table, newest version per key."""
    q = lambda name: _quote(conn, name)  # noqa: E731
    cols = ", ".join(q(c.name) for c in raw.columns)
    key_match = " AND ".join(f"s.{q(k)} = r.{q(k)}" for k in source.key)
    raw_name = q(raw.name)
    insert_new = (
        f"INSERT INTO {raw_name} ({cols}) SELECT {cols} FROM {stage} s "
        f"WHERE NOT EXISTS (SELECT 1 FROM {raw_name} r WHERE {key_match})"
    )
    if source.mode == "append":
        return [insert_new]
    wm = q(source.watermark_column)
    key_match_raw = " AND ".join(f"s.{q(k)} = {raw_name}.{q(k)}" for k in source.key)
    newest_in_stage = (
        f"DELETE FROM {stage} WHERE EXISTS (SELECT 1 FROM {stage} s WHERE "
        + " AND ".join(f"s.{q(k)} = {stage}.{q(k)}" for k in source.key)
        + f" AND s.{wm} > {stage}.{wm})"
    )
    replace_older = (
        f"DELETE FROM {raw_name} WHERE EXISTS (SELECT 1 FROM {stage} s "
        f"WHERE {key_match_raw} AND s.{wm} > {raw_name}.{wm})"
    )
    return [newest_in_stage, replace_older, insert_new]


def _copy_arrow(sconn, wconn, source: SourceTable, query, target, constants, chunk_rows: int, log: Log) -> int:
    """Stream `query` from any source into `target` as Arrow batches (the generic path)."""
    schema = arrow_schema(source.table)
    rows = 0

    def counted(batches):
        nonlocal rows
        for batch in batches:
            rows += batch.num_rows
            log(f"{source.name}: {rows:,} rows read")
            yield batch

    return write_arrow(wconn, target, counted(read_batches(sconn, query, schema, chunk_rows)), schema, constants)


def _copy_postgres_to_postgres(sconn, wconn, query, target, columns, batch_id, extracted_at) -> int:
    """Stream `query` from one PostgreSQL to another with COPY on both ends, through a pipe."""
    query = query.add_columns(
        sa.literal(batch_id, sa.String).label("_batch_id"), sa.literal(extracted_at, TS).label("_extracted_at")
    )
    sql, params = compiled_sql(sconn, query)
    source_cursor = sconn.connection.dbapi_connection.cursor()
    select_sql = postgres_copy_select(source_cursor, sql, params)
    target_cols = ", ".join(_quote(wconn, c) for c in columns)
    read_fd, write_fd = os.pipe()
    failure: list[BaseException] = []

    def produce():
        with os.fdopen(write_fd, "wb") as out:
            try:
                source_cursor.copy_expert(f"COPY ({select_sql}) TO STDOUT", out, size=1 << 20)
            except BaseException as exc:  # surfaced below, after the consumer stops
                failure.append(exc)

    producer = threading.Thread(target=produce, name="ows-copy-out", daemon=True)
    producer.start()
    target_cursor = wconn.connection.dbapi_connection.cursor()
    try:
        with os.fdopen(read_fd, "rb") as inp:
            target_cursor.copy_expert(f"COPY {_quote(wconn, target)} ({target_cols}) FROM STDIN", inp, size=1 << 20)
        rows = target_cursor.rowcount
    finally:
        producer.join()
        target_cursor.close()
        source_cursor.close()
    if failure:
        raise failure[0]
    return rows


def extract_table(
    source_engine: sa.Engine,
    warehouse_engine: sa.Engine,
    source: SourceTable,
    options: ExtractOptions = ExtractOptions(),
    run_id: Optional[str] = None,
    log: Log = lambda message: None,
) -> ExtractResult:
    """Extract `source` into `raw_<table>` in one warehouse transaction; see the module docstring."""
    raw = RAW_TABLES[source.name]
    asset_key = raw.name
    batch_id = new_batch_id()
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    lower = upper = None
    with warehouse_engine.connect() as wconn:
        last = last_successful_batch(wconn, asset_key)
        previous = last.watermark_to if last is not None else None
    try:
        translate = {None: options.schema} if options.schema else None
        with source_engine.connect() as sconn:
            if translate:
                sconn = sconn.execution_options(schema_translate_map=translate)
            clock = source_clock(sconn)
            lower, upper = _bounds(source, previous, clock, options)
            query = extract_query(source, sconn.dialect.name, lower, upper)
            extracted_at = clock
            rows_in = rows_loaded = 0
            max_wm = _parse_watermark(source, previous)
            with warehouse_engine.begin() as wconn:
                stage = _quote(wconn, f"stage_{raw.name}")
                target = raw.name
                # a full extract replaces the table; into an empty table (a first load) the rows,
                # one per key as the source's key guarantees, go straight in: no stage to merge
                direct = source.mode == "full" or wconn.execute(sa.select(sa.literal(1)).select_from(raw).limit(1)).first() is None
                if source.mode == "full":
                    wconn.execute(sa.delete(raw))
                elif not direct:
                    wconn.exec_driver_sql(f"DROP TABLE IF EXISTS {stage}")
                    wconn.exec_driver_sql(
                        f"CREATE TEMPORARY TABLE {stage} AS SELECT * FROM {_quote(wconn, raw.name)} WHERE 1 = 0"
                    )
                    target = f"stage_{raw.name}"
                columns = [c.name for c in raw.columns]
                if sconn.dialect.name == wconn.dialect.name == "postgresql":
                    rows_in = _copy_postgres_to_postgres(sconn, wconn, query, target, columns, batch_id, extracted_at)
                    log(f"{source.name}: {rows_in:,} rows copied")
                else:
                    constants = {"_batch_id": batch_id, "_extracted_at": extracted_at}
                    rows_in = _copy_arrow(sconn, wconn, source, query, target, constants, options.chunk_rows, log)
                if source.mode == "append" and rows_in:
                    wm = _quote(wconn, source.watermark_column)
                    chunk_max = wconn.exec_driver_sql(f"SELECT MAX({wm}) FROM {_quote(wconn, target)}").scalar_one()
                    max_wm = chunk_max if max_wm is None else max(max_wm, chunk_max)
                preview = [tuple(r) for r in wconn.execute(sa.select(sa.table(target, *(sa.column(c) for c in columns))).limit(5))]
                if direct:
                    rows_loaded = table_rows = rows_in
                else:
                    key_cols = ", ".join(_quote(wconn, k) for k in source.key)
                    wconn.exec_driver_sql(f"CREATE INDEX {_quote(wconn, 'ix_stage_' + raw.name)} ON {stage} ({key_cols})")
                    if wconn.dialect.name == "postgresql":
                        wconn.exec_driver_sql(f"ANALYZE {stage}")
                    before = wconn.execute(sa.select(sa.func.count()).select_from(raw)).scalar_one()
                    replaced = 0
                    for statement in _merge_sql(wconn, source, raw, stage):
                        result = wconn.exec_driver_sql(statement)
                        if statement.startswith(f"DELETE FROM {_quote(wconn, raw.name)}"):
                            replaced = result.rowcount
                    table_rows = wconn.execute(sa.select(sa.func.count()).select_from(raw)).scalar_one()
                    rows_loaded = table_rows - before + replaced
                    wconn.exec_driver_sql(f"DROP TABLE {stage}")
                watermark_to = upper if source.mode == "incremental" else max_wm
                as_of = upper if source.mode == "incremental" else clock
                record_batch(
                    wconn,
                    batch_id=batch_id,
                    asset_key=asset_key,
                    run_id=run_id,
                    source=source.name,
                    mode=source.mode,
                    as_of=as_of,
                    watermark_from=_watermark_text(lower),
                    watermark_to=_watermark_text(watermark_to),
                    rows_in=rows_in,
                    rows_loaded=rows_loaded,
                    rows_rejected=0,
                    status="SUCCESS",
                    started_at=started,
                )
    except Exception as exc:
        record_failed_batch(
            warehouse_engine,
            batch_id=batch_id,
            asset_key=asset_key,
            run_id=run_id,
            source=source.name,
            mode=source.mode,
            watermark_from=_watermark_text(lower),
            message=f"{type(exc).__name__}: {exc}"[:4000],
            started_at=started,
        )
        raise
    return ExtractResult(
        table=source.name,
        batch_id=batch_id,
        mode=source.mode,
        rows_in=rows_in,
        rows_loaded=rows_loaded,
        table_rows=table_rows,
        as_of=as_of,
        watermark_from=_watermark_text(lower),
        watermark_to=_watermark_text(watermark_to),
        seconds=time.perf_counter() - t0,
        preview=preview,
        columns=tuple(columns),
    )
