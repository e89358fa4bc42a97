"""Stage one batch: clean, validate, quarantine and load, chunk by chunk, in one transaction.

`stage_rows` (a frame: uploads, tests) and `staging.from_raw.stage_from_raw` (the raw rows of a
table, streamed in key order) both go through `stage_batch`: every chunk is cleaned and checked
row by row and written to work tables (`staging.batch`), the set-based rules run over the whole
batch in the warehouse, and the good rows, the `data_errors` rows and the `etl_batches` row are
published in the same transaction. Rows failing an ERROR rule go to `data_errors` (one row per
failing value) and not to staging; WARN findings are written to `data_errors` too but the row
loads. Nothing is dropped silently: rows_in = rows_loaded + rows_rejected.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pandas as pd
import sqlalchemy as sa

from ows_pipeline.source.schema import SOURCE_TABLES_BY_NAME
from ows_pipeline.staging.batch import StagingBatch, release_memory
from ows_pipeline.staging.clean import column_kind
from ows_pipeline.staging.rules import RuleContext, RuleOutcome, as_text
from ows_pipeline.staging.suites import ERROR, SUITES, key_columns
from ows_pipeline.warehouse.batches import record_batch, utc_now
from ows_pipeline.warehouse.bulk import as_utc, write_frame
from ows_pipeline.warehouse.data_errors import COLUMNS as ERROR_COLUMNS
from ows_pipeline.warehouse.data_errors import error_rows as _error_records
from ows_pipeline.warehouse.schema.staging import STAGING_TABLES

ERROR_SAMPLE_ROWS = 100
"""How many `data_errors` rows a `StagingResult` holds (`error_rows` counts them all)."""


@dataclass
class StagingResult:
    """What one staging batch did: exact counts, every rule's outcome and bounded samples."""

    table_name: str
    batch_id: str
    as_of: Optional[dt.datetime]
    rows_in: int
    loaded: int
    rejected: int
    errors: pd.DataFrame = field(repr=False)  # the first ERROR_SAMPLE_ROWS data_errors rows written
    check_results: list[RuleOutcome] = field(repr=False)
    staged_rows: int = 0
    orphans: dict[str, int] = field(default_factory=dict)
    dtype_problems: list[str] = field(default_factory=list)
    sample: Optional[pd.DataFrame] = field(default=None, repr=False)  # bounded input of the GX run
    error_rows: int = 0
    warned: int = 0
    key_problems: int = 0
    rejected_with_parent: list[dict] = field(default_factory=list)  # the biggest rejected parents
    rejected_only_with_parent: int = 0  # rows rejected only because their parent was
    chunks: int = 0

    @property
    def asset_key(self) -> str:
        return f"stg_{self.table_name}"

    @property
    def rejection_rate(self) -> float:
        return self.rejected / self.rows_in if self.rows_in else 0.0


@dataclass
class StagingInput:
    """A batch to stage: its business as-of time, its chunks and extra `etl_batches` values."""

    as_of: Optional[dt.datetime]
    chunks: Iterable[tuple[pd.DataFrame, Optional[Sequence[int]]]]
    batch_values: dict = field(default_factory=dict)


def stage_batch(
    engine: sa.Engine,
    table_name: str,
    open_input: Callable[[sa.Connection], StagingInput],
    *,
    batch_id: str,
    mode: Optional[str] = None,
    source_file: Optional[str] = None,
    run_id: Optional[str] = None,
    sample_rows: int = 0,
    progress: Optional[Callable[[int, int], None]] = None,
) -> StagingResult:
    """Stage the chunks `open_input(conn)` gives, all or nothing, in one transaction.

    `progress(chunk_number, rows_so_far)` is called after each chunk is in the work tables; an
    exception there (or anywhere) rolls everything back. `sample_rows` > 0 keeps that many cleaned
    rows (failing rows first) as `StagingResult.sample` for Great Expectations.
    """
    if table_name not in SOURCE_TABLES_BY_NAME:
        raise ValueError(f"unknown OWS table {table_name!r}; expected one of {', '.join(SOURCE_TABLES_BY_NAME)}")
    mode = mode or SOURCE_TABLES_BY_NAME[table_name].mode
    if mode not in ("full", "incremental", "append"):
        raise ValueError(f"mode must be full, incremental or append, not {mode!r}")
    started = utc_now()
    with engine.connect() as conn:
        conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            batch_input = open_input(conn)
            as_of = as_utc(batch_input.as_of) if batch_input.as_of is not None else None
            batch = StagingBatch(conn, table_name, batch_id=batch_id, as_of=as_of, mode=mode,
                                 source_file=source_file, created_at=started)
            chunks = 0
            for frame, numbers in batch_input.chunks:
                batch.add(frame, numbers)
                del frame, numbers
                chunks += 1
                release_memory()
                if progress is not None:
                    progress(chunks, batch.rows_in)
            summary = batch.finish()
            sample = batch.sample(sample_rows) if sample_rows > 0 else None
            errors = batch.errors(ERROR_SAMPLE_ROWS)
            loaded = batch.publish(batch_id)
            if loaded != summary.rows_in - summary.rejected:  # pragma: no cover - a bug, not bad data
                raise RuntimeError(f"stg_{table_name}: {loaded} rows loaded, expected "
                                   f"{summary.rows_in - summary.rejected}; nothing was staged")
            batch.drop()
            values = {
                "batch_id": batch_id, "asset_key": f"stg_{table_name}", "run_id": run_id,
                "source": source_file or f"raw_{table_name}", "mode": mode, "as_of": as_of,
                "rows_in": summary.rows_in, "rows_loaded": loaded, "rows_rejected": summary.rejected,
                "status": "SUCCESS", "started_at": started,
            }
            values.update(batch_input.batch_values)
            record_batch(conn, **values)
            staged = conn.execute(sa.select(sa.func.count()).select_from(STAGING_TABLES[table_name])).scalar_one()
            orphans = staged_orphans(conn, table_name)
    return StagingResult(
        table_name, batch_id, as_of, summary.rows_in, loaded, summary.rejected, errors, summary.outcomes,
        staged_rows=int(staged), orphans=orphans, dtype_problems=batch.dtype_problems, sample=sample,
        error_rows=summary.error_rows, warned=summary.warned, key_problems=summary.key_problems,
        rejected_with_parent=summary.rejected_with_parent,
        rejected_only_with_parent=summary.rejected_only_with_parent, chunks=chunks,
    )


def frame_chunks(frame: pd.DataFrame, row_numbers: Optional[Sequence[int]], chunk_rows: Optional[int]):
    """`frame` (and its row numbers) in slices of `chunk_rows` rows (one slice when None)."""
    numbers = None if row_numbers is None else np.asarray(row_numbers, dtype=np.int64)
    if numbers is not None and len(numbers) != len(frame):
        raise ValueError(f"row_numbers has {len(numbers)} entries for {len(frame)} rows")
    step = chunk_rows or max(len(frame), 1)
    for start in range(0, max(len(frame), 1), step):
        yield frame.iloc[start:start + step], None if numbers is None else numbers[start:start + step]


def stage_rows(
    engine: sa.Engine,
    table_name: str,
    frame: pd.DataFrame,
    *,
    batch_id: str,
    as_of: Optional[dt.datetime],
    source_file: Optional[str] = None,
    row_numbers: Optional[Sequence[int]] = None,
    mode: Optional[str] = None,
    run_id: Optional[str] = None,
    batch_values: Optional[dict] = None,
    sample_rows: int = 0,
    chunk_rows: Optional[int] = None,
) -> StagingResult:
    """Clean, validate, quarantine and load `frame` (rows of OWS table `table_name`) in one transaction.

    `row_numbers` are the rows' numbers in `source_file` (default 1, 2, ...) and land in
    `data_errors.row_number`. `mode` is how good rows load: `full` replaces the staging table,
    `incremental` / `append` upsert on the key (default: the table's extraction mode).
    `as_of` is the business as-of time of the batch (copied to `etl_batches.as_of`).
    `chunk_rows` splits the frame into chunks (default: one). Raises `MissingColumnsError` when
    `frame` lacks a column of the table.
    """
    from ows_pipeline.staging.clean import check_columns

    check_columns(frame, table_name)

    def open_input(conn: sa.Connection) -> StagingInput:
        return StagingInput(as_of, frame_chunks(frame, row_numbers, chunk_rows), dict(batch_values or {}))

    return stage_batch(engine, table_name, open_input, batch_id=batch_id, mode=mode, source_file=source_file,
                       run_id=run_id, sample_rows=sample_rows)


# ---------------------------------------------------------------- one frame at a time (uploads)

def rule_context(conn: sa.Connection, as_of: dt.datetime) -> RuleContext:
    """Lookups into the staged tables, in the caller's transaction, for evaluating a whole frame
    (an upload) with the set-based rules in pandas."""
    cache: dict = {}

    def reference_values(table: str, column: str) -> np.ndarray:
        if (table, column) not in cache:
            col = STAGING_TABLES[table.removeprefix("stg_")].c[column]
            cache[(table, column)] = np.array([r[0] for r in conn.execute(sa.select(col).distinct().where(col.is_not(None)))])
        return cache[(table, column)]

    def open_rows(table: str, key: str, id_column: str, open_column: str) -> pd.DataFrame:
        t = STAGING_TABLES[table.removeprefix("stg_")]
        rows = conn.execute(sa.select(t.c[id_column], t.c[key]).where(t.c[open_column].is_(None))).all()
        return pd.DataFrame([tuple(r) for r in rows], columns=[id_column, key])

    return RuleContext(as_of, reference_values, open_rows)


def error_rows(
    outcomes: list[RuleOutcome], clean: pd.DataFrame, raw: pd.DataFrame, numbers: np.ndarray,
    table_name: str, batch_id: str, source_file: Optional[str], created_at: dt.datetime,
) -> pd.DataFrame:
    """One `data_errors` row per failing value of a frame's findings, in `ERROR_COLUMNS` order."""
    from ows_pipeline.staging.batch import record_keys

    keys = record_keys(clean, raw, key_columns(table_name))
    parts = [
        {"row_number": int(numbers[p]), "record_key": keys[p], "field": finding.field, "value": value,
         "rule": finding.rule.name, "severity": finding.rule.severity, "message": finding.message}
        for outcome in outcomes for finding in outcome.findings
        for p, value in zip(finding.positions, finding.values.to_numpy(dtype=object))
    ]
    rows = _error_records(parts, batch_id=batch_id, asset_key=f"stg_{table_name}", source_file=source_file,
                          created_at=created_at)
    return pd.DataFrame(rows, columns=list(ERROR_COLUMNS), dtype=object)


def error_tuples(errors: pd.DataFrame) -> list[tuple]:
    """The `data_errors` rows as tuples for the bulk writer, with None for every missing value."""
    return [tuple(None if _missing(v) else v for v in row) for row in errors.itertuples(index=False, name=None)]


def _missing(value) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def load_staging(
    conn: sa.Connection, table_name: str, good: pd.DataFrame, batch_id: str, mode: str, rows_in: int = 0
) -> int:
    """Write a frame of good rows: replace the table (`full`) or upsert on the key (`incremental`, `append`)."""
    table = STAGING_TABLES[table_name]
    source = SOURCE_TABLES_BY_NAME[table_name].table
    if mode == "full":
        if not len(good) and not rows_in:
            return 0  # an empty extract keeps the last validated one (the blocking check fails)
        conn.execute(sa.delete(table))
    elif len(good) and conn.execute(sa.select(sa.literal(1)).select_from(table).limit(1)).first():
        _delete_keys(conn, table, good[list(key_columns(table_name))])
    kinds = {c.name: column_kind(c) for c in source.columns}
    return write_frame(conn, table, good, kinds, {"_batch_id": batch_id})


def _delete_keys(conn: sa.Connection, table: sa.Table, keys: pd.DataFrame) -> None:
    """Delete the staged rows whose key is in `keys`, through a temporary key table."""
    name = f"tmp_stage_keys_{uuid.uuid4().hex[:8]}"
    temp = sa.Table(name, sa.MetaData(), *(sa.Column(c, sa.Integer) for c in keys.columns), prefixes=["TEMPORARY"])
    temp.create(conn)
    try:
        write_frame(conn, name, keys, {c: "int" for c in keys.columns})
        # without an index the correlated EXISTS probes the whole key table for every staged row
        sa.Index(f"ix_{name}", *temp.c).create(conn)
        match = sa.and_(*(table.c[c] == temp.c[c] for c in keys.columns))
        conn.execute(sa.delete(table).where(sa.exists(sa.select(sa.literal(1)).select_from(temp).where(match))))
    finally:
        temp.drop(conn)


def staged_orphans(conn: sa.Connection, table_name: str) -> dict[str, int]:
    """For each ERROR reference rule: staged rows (the whole table) whose parent is missing."""
    child = STAGING_TABLES[table_name]
    counts = {}
    for rule in SUITES[table_name]:
        if rule.kind != "references" or rule.severity != ERROR:
            continue
        (column,) = rule.columns
        parent = STAGING_TABLES[rule.params["table"].removeprefix("stg_")]
        pcol = parent.c[rule.params["column"]]
        missing = ~sa.exists(sa.select(sa.literal(1)).select_from(parent).where(pcol == child.c[column]))
        query = sa.select(sa.func.count()).select_from(child).where(child.c[column].is_not(None), missing)
        counts[rule.name] = int(conn.execute(query).scalar_one())
    return counts


__all__ = ["ERROR_COLUMNS", "StagingInput", "StagingResult", "as_text", "error_rows", "error_tuples", "rule_context",
           "load_staging", "stage_batch", "stage_rows", "staged_orphans"]
