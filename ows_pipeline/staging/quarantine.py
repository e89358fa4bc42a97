"""Stage one batch: clean, validate, quarantine and load, in one transaction.

`stage_rows` is the single path into `stg_ows_<table>`, used by the staging assets (rows from
`raw_ows_<table>`) and by uploads (rows from a file). Rows failing an ERROR rule go to
`data_errors` (one row per failing value) and not to staging; WARN findings are written to
`data_errors` too but the row loads. Nothing is dropped silently:
rows_in = rows_loaded + rows_rejected, recorded in `etl_batches`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pandas as pd
import sqlalchemy as sa

from ows_pipeline.source.schema import SOURCE_TABLES_BY_NAME
from ows_pipeline.staging.clean import clean_frame, column_kind, dtype_problems
from ows_pipeline.staging.rules import RuleContext, RuleOutcome, as_text, evaluate_suite
from ows_pipeline.staging.suites import ERROR, SUITES, key_columns
from ows_pipeline.warehouse.schema.staging import STAGING_TABLES
from ows_pipeline.warehouse.batches import record_batch, utc_now
from ows_pipeline.warehouse.bulk import as_utc, insert_rows, write_frame
from ows_pipeline.warehouse.schema.ledger import data_errors

ERROR_COLUMNS = ["batch_id", "asset_key", "source_file", "row_number", "record_key", "field", "value",
                 "rule", "severity", "message", "created_at"]


@dataclass
class StagingResult:
    """What one staging batch did: counts, the `data_errors` rows and every rule's outcome."""

    table_name: str
    batch_id: str
    as_of: Optional[dt.datetime]
    rows_in: int
    loaded: int
    rejected: int
    errors: pd.DataFrame = field(repr=False)
    check_results: list[RuleOutcome] = field(repr=False)
    staged_rows: int = 0
    orphans: dict[str, int] = field(default_factory=dict)
    dtype_problems: list[str] = field(default_factory=list)
    clean: Optional[pd.DataFrame] = field(default=None, repr=False)

    @property
    def asset_key(self) -> str:
        return f"stg_{self.table_name}"

    @property
    def rejection_rate(self) -> float:
        return self.rejected / self.rows_in if self.rows_in else 0.0

    @property
    def warned(self) -> int:
        return int((self.errors["severity"] != ERROR).sum()) if len(self.errors) else 0


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
    keep_clean: bool = False,
) -> StagingResult:
    """Clean, validate, quarantine and load `frame` (rows of OWS table `table_name`) in one transaction.

    `row_numbers` are the rows' numbers in `source_file` (default 1, 2, ...) and land in
    `data_errors.row_number`. `mode` is how good rows load: `full` replaces the staging table,
    `incremental` / `append` upsert on the key (default: the table's extraction mode).
    `as_of` is the business as-of time of the batch (copied to `etl_batches.as_of`).
    Raises `MissingColumnsError` when `frame` lacks a column of the table.
    """
    if table_name not in SOURCE_TABLES_BY_NAME:
        raise ValueError(f"unknown OWS table {table_name!r}; expected one of {', '.join(SOURCE_TABLES_BY_NAME)}")
    mode = mode or SOURCE_TABLES_BY_NAME[table_name].mode
    if mode not in ("full", "incremental", "append"):
        raise ValueError(f"mode must be full, incremental or append, not {mode!r}")
    started = utc_now()
    as_of = as_utc(as_of) if as_of is not None else None
    clean, issues = clean_frame(frame, table_name)
    raw = frame.reset_index(drop=True)
    numbers = np.arange(1, len(clean) + 1) if row_numbers is None else np.asarray(row_numbers, dtype=np.int64)
    if len(numbers) != len(clean):
        raise ValueError(f"row_numbers has {len(numbers)} entries for {len(clean)} rows")
    with engine.connect() as conn:
        conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            ctx = _context(conn, as_of or started)
            outcomes = evaluate_suite(SUITES[table_name], clean, raw, issues, ctx)
            errors = error_rows(outcomes, clean, raw, numbers, table_name, batch_id, source_file, started)
            rejected = np.zeros(len(clean), dtype=bool)
            for outcome in outcomes:
                if outcome.rule.severity == ERROR:
                    rejected[outcome.failing_positions] = True
            good = clean.loc[~rejected]
            insert_rows(conn, data_errors, ERROR_COLUMNS, error_tuples(errors))
            loaded = load_staging(conn, table_name, good, batch_id, mode, len(clean))
            values = {
                "batch_id": batch_id, "asset_key": f"stg_{table_name}", "run_id": run_id,
                "source": source_file or f"raw_{table_name}", "mode": mode, "as_of": as_of,
                "rows_in": len(clean), "rows_loaded": loaded, "rows_rejected": int(rejected.sum()),
                "status": "SUCCESS", "started_at": started,
            }
            values.update(batch_values or {})
            record_batch(conn, **values)
            staged = conn.execute(sa.select(sa.func.count()).select_from(STAGING_TABLES[table_name])).scalar_one()
            orphans = staged_orphans(conn, table_name)
    return StagingResult(
        table_name, batch_id, as_of, len(clean), loaded, int(rejected.sum()), errors, outcomes,
        staged_rows=int(staged), orphans=orphans, dtype_problems=dtype_problems(clean, table_name),
        clean=clean if keep_clean else None,
    )


def _context(conn: sa.Connection, as_of: dt.datetime) -> RuleContext:
    cache: dict = {}

    def reference_values(table: str, column: str) -> np.ndarray:
        if (table, column) not in cache:
            query = sa.text(f"SELECT DISTINCT {column} FROM {table} WHERE {column} IS NOT NULL")
            cache[(table, column)] = np.array([r[0] for r in conn.execute(query)])
        return cache[(table, column)]

    def open_rows(table: str, key: str, id_column: str, open_column: str) -> pd.DataFrame:
        query = sa.text(f"SELECT {id_column}, {key} FROM {table} WHERE {open_column} IS NULL")
        return pd.DataFrame(conn.execute(query).all(), columns=[id_column, key])

    return RuleContext(as_of, reference_values, open_rows)


def error_rows(
    outcomes: list[RuleOutcome], clean: pd.DataFrame, raw: pd.DataFrame, numbers: np.ndarray,
    table_name: str, batch_id: str, source_file: Optional[str], created_at: dt.datetime,
) -> pd.DataFrame:
    """One `data_errors` row per failing value, in `ERROR_COLUMNS` order."""
    parts = []
    key = key_columns(table_name)
    for outcome in outcomes:
        for finding in outcome.findings:
            pos = finding.positions
            parts.append(pd.DataFrame({
                "row_number": numbers[pos],
                "record_key": _record_keys(clean, raw, key, pos),
                "field": finding.field,
                "value": finding.values.to_numpy(dtype=object),
                "rule": finding.rule.name,
                "severity": finding.rule.severity,
                "message": finding.message,
            }))
    if parts:
        errors = pd.concat(parts, ignore_index=True)
    else:
        errors = pd.DataFrame({c: pd.Series(dtype=object) for c in ERROR_COLUMNS})
    errors["batch_id"] = batch_id
    errors["asset_key"] = f"stg_{table_name}"
    errors["source_file"] = source_file
    errors["created_at"] = created_at
    errors["row_number"] = [int(n) for n in errors["row_number"]]
    errors["value"] = [None if _missing(v) else str(v) for v in errors["value"]]
    return errors[ERROR_COLUMNS].astype(object)


def error_tuples(errors: pd.DataFrame) -> list[tuple]:
    """The `data_errors` rows as tuples for the bulk writer, with None for every missing value."""
    return [tuple(None if _missing(v) else v for v in row) for row in errors.itertuples(index=False, name=None)]


def _missing(value) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def _record_keys(clean: pd.DataFrame, raw: pd.DataFrame, key: tuple[str, ...], pos: np.ndarray) -> list[str]:
    parts = []
    for column in key:
        cleaned = as_text(clean[column].iloc[pos]).to_numpy(dtype=object)
        original = raw[column].iloc[pos].to_numpy(dtype=object)
        parts.append([f"{column}={c if c is not None else o}" for c, o in zip(cleaned, original)])
    return [",".join(p) for p in zip(*parts)]


def load_staging(
    conn: sa.Connection, table_name: str, good: pd.DataFrame, batch_id: str, mode: str, rows_in: int = 0
) -> int:
    """Write the good rows: replace the table (`full`) or upsert on the key (`incremental`, `append`)."""
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
