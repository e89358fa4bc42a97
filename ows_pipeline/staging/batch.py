"""One staging batch built chunk by chunk in work tables, then published in one transaction.

`StagingBatch` lives inside the caller's transaction. `add(frame)` cleans one chunk, runs the
rules on one row at a time (`rules.evaluate_suite(set_based=False)`), and writes the chunk's
cleaned rows to a temporary work table and its findings to a temporary errors table; the chunk's
frames are then freed. `finish()` runs the set-based rules over the whole batch in SQL
(`set_rules`), counts and summarises the findings; `publish()` replaces or upserts the staged
rows and copies the findings to `data_errors` with `INSERT ... SELECT`, so memory stays at one
chunk whatever the batch size. A failure anywhere rolls the caller's transaction back: staging,
`data_errors` and the watermarks stay as they were.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime as dt
import gc
import uuid
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pandas as pd
import sqlalchemy as sa

from ows_pipeline.source.schema import SOURCE_TABLES_BY_NAME
from ows_pipeline.staging.clean import clean_frame, column_kind, dtype_problems
from ows_pipeline.staging.rules import SET_KINDS, RuleContext, RuleOutcome, as_text, evaluate_suite
from ows_pipeline.staging.set_rules import NOUNS, PARENT_REJECTED, Where, run_set_rule
from ows_pipeline.staging.suites import ERROR, SUITES, key_columns
from ows_pipeline.warehouse.bulk import insert_rows, write_frame
from ows_pipeline.warehouse.data_errors import COLUMNS as ERROR_COLUMNS
from ows_pipeline.warehouse.data_errors import error_rows, shorten
from ows_pipeline.warehouse.schema.ledger import data_errors
from ows_pipeline.warehouse.schema.staging import STAGING_TABLES

DERIVED_KINDS = ("valid_type", "references", "one_open_per_key", "not_in_future", "unique", "display_length")
"""Rules whose outcome a sample cannot show by itself: the sample carries them as `rule__<name>` columns."""

_POSITION = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # INTEGER PRIMARY KEY is SQLite's rowid


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the operating system (glibc)."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if name and "libc" in name:
        try:
            ctypes.CDLL(name).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc
            pass


@dataclass
class BatchSummary:
    """What the batch holds once every chunk is in and every rule has run."""

    rows_in: int
    rejected: int
    outcomes: list[RuleOutcome]
    error_rows: int
    warned: int
    key_problems: int
    rejected_with_parent: list[dict] = field(default_factory=list)  # the biggest parents
    rejected_only_with_parent: int = 0  # rows whose only ERROR is a rejected parent


def _work_table(table_name: str, suffix: str) -> sa.Table:
    staged = STAGING_TABLES[table_name]
    # texts unbounded: the work table also holds the rows rejected for being too long
    columns = [sa.Column(c.name, sa.Text() if isinstance(c.type, sa.String) else c.type)
               for c in staged.columns if not c.name.startswith("_")]
    return sa.Table(
        f"tmp_stage_rows_{suffix}", sa.MetaData(), *columns,
        sa.Column("_pos", _POSITION, primary_key=True, autoincrement=False),
        sa.Column("_row_number", sa.BigInteger), sa.Column("_record_key", sa.Text),
        prefixes=["TEMPORARY"],
    )


def _errors_table(suffix: str) -> sa.Table:
    columns = [sa.Column(c.name, c.type) for c in data_errors.columns if c.name in ERROR_COLUMNS]
    return sa.Table(f"tmp_stage_errors_{suffix}", sa.MetaData(), *columns, sa.Column("_pos", sa.BigInteger),
                    prefixes=["TEMPORARY"])


def record_keys(clean: pd.DataFrame, raw: pd.DataFrame, key: tuple[str, ...]) -> np.ndarray:
    """`col=value[,col=value]` of every row's key: the cleaned value, else the raw one."""
    text = None
    for column in key:
        cleaned = as_text(clean[column])
        original = raw[column].astype("str").astype(object).where(raw[column].notna().to_numpy(), "None")
        part = column + "=" + cleaned.where(cleaned.notna(), original).astype(str)
        text = part if text is None else text + "," + part
    return text.to_numpy(dtype=object)


class StagingBatch:
    """The work tables of one staging batch, inside the caller's transaction."""

    def __init__(self, conn: sa.Connection, table_name: str, *, batch_id: str, as_of: Optional[dt.datetime],
                 mode: str, source_file: Optional[str], created_at: dt.datetime):
        self.conn, self.table_name, self.mode = conn, table_name, mode
        self.where = Where(table_name, batch_id, source_file, created_at, mode)
        self.rules = SUITES[table_name]
        self.key = key_columns(table_name)
        self.context = RuleContext(as_of or created_at)
        suffix = uuid.uuid4().hex[:10]
        self.work, self.errs = _work_table(table_name, suffix), _errors_table(suffix)
        self.work.create(conn)
        self.errs.create(conn)
        source = SOURCE_TABLES_BY_NAME[table_name].table
        self.kinds = {c.name: column_kind(c) for c in source.columns}
        self.kinds.update({"_pos": "int", "_row_number": "int", "_record_key": "str"})
        self.rows_in = 0
        self.dtype_problems: list[str] = []

    def add(self, frame: pd.DataFrame, row_numbers=None) -> None:
        """Clean and check one chunk, and write its rows and findings to the work tables."""
        clean, issues = clean_frame(frame, self.table_name)
        raw = frame.reset_index(drop=True)
        n = len(clean)
        positions = np.arange(self.rows_in + 1, self.rows_in + n + 1, dtype=np.int64)
        numbers = positions if row_numbers is None else np.asarray(row_numbers, dtype=np.int64)
        if len(numbers) != n:
            raise ValueError(f"row_numbers has {len(numbers)} entries for {n} rows")
        outcomes = evaluate_suite(self.rules, clean, raw, issues, self.context, set_based=False)
        keys = record_keys(clean, raw, self.key)
        found = []
        for outcome in outcomes:
            for finding in outcome.findings:
                pos = finding.positions
                found.append(pd.DataFrame({
                    "_pos": positions[pos], "row_number": numbers[pos], "record_key": keys[pos],
                    "field": finding.field, "value": finding.values.to_numpy(dtype=object),
                    "rule": finding.rule.name, "severity": finding.rule.severity, "message": finding.message,
                }))
        if found:
            errors = pd.concat(found, ignore_index=True)
            rows = error_rows(errors, batch_id=self.where.batch_id, asset_key=self.where.asset_key,
                              source_file=self.where.source_file, created_at=self.where.created_at)
            insert_rows(self.conn, self.errs, (*ERROR_COLUMNS, "_pos"),
                        [(*row, int(p)) for row, p in zip(rows, errors["_pos"])])
        work = clean.assign(_pos=positions, _row_number=numbers, _record_key=keys)
        write_frame(self.conn, self.work, work, self.kinds)
        for problem in dtype_problems(clean, self.table_name):
            if problem not in self.dtype_problems:
                self.dtype_problems.append(problem)
        self.rows_in += n

    def finish(self) -> BatchSummary:
        """Run the set-based rules over the whole batch and summarise every rule."""
        conn, work, errs = self.conn, self.work, self.errs
        sa.Index(f"ix_{work.name}_key", *(work.c[k] for k in self.key)).create(conn)
        sa.Index(f"ix_{errs.name}_pos", errs.c._pos, errs.c.severity).create(conn)
        if conn.dialect.name == "postgresql":  # autovacuum never analyzes temporary tables
            conn.exec_driver_sql(f"ANALYZE {work.name}")
            conn.exec_driver_sql(f"ANALYZE {errs.name}")
        for rule in self.rules:
            if rule.kind in SET_KINDS:
                run_set_rule(conn, rule, work, errs, self.where)
        failing = errs.c.severity == ERROR
        rejected = conn.execute(sa.select(sa.func.count(sa.distinct(errs.c._pos))).where(failing)).scalar_one()
        counts = dict(conn.execute(
            sa.select(errs.c.rule, sa.func.count(sa.distinct(errs.c._pos))).group_by(errs.c.rule)).all())
        total, warned = self._error_counts()
        outcomes = [
            RuleOutcome(rule, self.rows_in, count=int(counts.get(rule.name, 0)),
                        samples=self._samples(rule) if counts.get(rule.name) else [])
            for rule in self.rules
        ]
        return BatchSummary(self.rows_in, int(rejected), outcomes, total, warned, self._key_problems(),
                            self._rejected_with_parent(), self._rejected_only_with_parent())

    def _error_counts(self) -> tuple[int, int]:
        errs = self.errs
        total = self.conn.execute(sa.select(sa.func.count()).select_from(errs)).scalar_one()
        warned = self.conn.execute(
            sa.select(sa.func.count()).select_from(errs).where(errs.c.severity != ERROR)).scalar_one()
        return int(total), int(warned)

    def _samples(self, rule, limit: int = 10) -> list[str]:
        errs = self.errs
        fields = [f for (f,) in self.conn.execute(
            sa.select(errs.c.field).where(errs.c.rule == rule.name).group_by(errs.c.field)
            .order_by(sa.func.min(errs.c._pos)))]
        order = {c: i for i, c in enumerate(rule.columns)}
        values: list[str] = []
        for name in sorted(fields, key=lambda f: order.get(f, -1)):
            query = (sa.select(errs.c.value).where(errs.c.rule == rule.name, errs.c.field == name)
                     .group_by(errs.c.value).order_by(sa.func.min(errs.c._pos)).limit(limit - len(values)))
            values += [shorten(f"{name}={value}") for (value,) in self.conn.execute(query)]
            if len(values) >= limit:
                break
        return values

    def _key_problems(self) -> int:
        errs = self.errs
        on_key = sa.or_(
            errs.c.rule == "unique_key",
            sa.and_(errs.c.rule.in_([r.name for r in self.rules if r.kind in ("not_null", "valid_type")]),
                    errs.c.field.in_(self.key)),
        )
        return int(self.conn.execute(sa.select(sa.func.count(sa.distinct(errs.c._pos))).where(on_key)).scalar_one())

    def _rejected_only_with_parent(self) -> int:
        errs = self.errs
        other = errs.alias("other")
        marker = "%" + PARENT_REJECTED.split("{")[0] + "%"
        elsewise = sa.exists().where(other.c._pos == errs.c._pos, other.c.severity == ERROR,
                                     ~other.c.message.like(marker))
        query = sa.select(sa.func.count(sa.distinct(errs.c._pos))).where(
            errs.c.severity == ERROR, errs.c.message.like(marker), ~elsewise)
        return int(self.conn.execute(query).scalar_one())

    def _rejected_with_parent(self, limit: int = 10) -> list[dict]:
        """Rows rejected only because their parent was: per rule and parent key, the biggest first."""
        errs = self.errs
        marker = "%" + PARENT_REJECTED.split("{")[0] + "%"
        count = sa.func.count(sa.distinct(errs.c._pos)).label("rows")
        query = (sa.select(errs.c.rule, errs.c.field, errs.c.value, count)
                 .where(errs.c.message.like(marker)).group_by(errs.c.rule, errs.c.field, errs.c.value)
                 .order_by(count.desc(), errs.c.value).limit(limit))
        child = NOUNS[self.table_name][1]
        by_rule = {r.name: r for r in self.rules}
        out = []
        for rule, field_name, value, rows in self.conn.execute(query):
            parent = NOUNS[by_rule[rule].params["table"].removeprefix("stg_")][0]
            out.append({
                "rule": rule, "parent": f"{field_name}={shorten(value)}", "rows": int(rows),
                "text": f"{rows:,} {child} of {parent} {field_name}={shorten(value)}, rejected because the {parent} was",
            })
        return out

    def sample(self, limit: int) -> pd.DataFrame:
        """Up to `limit` cleaned rows for Great Expectations: failing rows first, then the first rows.

        Rules a sample cannot show by itself (`DERIVED_KINDS`) come as a `rule__<name>` column, True
        where the row passed on the whole batch.
        """
        conn, work, errs = self.conn, self.work, self.errs
        failing = sa.select(errs.c._pos).group_by(errs.c._pos).order_by(errs.c._pos).limit(limit // 2).subquery()
        chosen = sa.or_(work.c._pos.in_(sa.select(failing.c._pos)), work.c._pos <= limit // 2)
        names = [c.name for c in SOURCE_TABLES_BY_NAME[self.table_name].table.columns]
        result = conn.execute(sa.select(*(work.c[n] for n in names), work.c._pos).where(chosen)
                              .order_by(work.c._pos).limit(limit))
        rows = result.all()
        columns = list(zip(*rows)) if rows else [() for _ in range(len(names) + 1)]
        raw = pd.DataFrame({n: pd.Series(list(v), dtype=object) for n, v in zip(names, columns)})
        frame, _ = clean_frame(raw, self.table_name)
        pos = np.asarray(columns[-1], dtype=np.int64)
        for rule in self.rules:
            if rule.kind in DERIVED_KINDS:
                bad = {p for (p,) in conn.execute(sa.select(errs.c._pos).where(
                    errs.c.rule == rule.name, errs.c._pos.in_(sa.select(work.c._pos).where(chosen))))}
                frame[f"rule__{rule.name}"] = ~np.isin(pos, list(bad))
        return frame

    def errors(self, limit: int) -> pd.DataFrame:
        """The first `limit` findings, in `data_errors` columns."""
        errs = self.errs
        rows = self.conn.execute(sa.select(*(errs.c[c] for c in ERROR_COLUMNS))
                                 .order_by(errs.c._pos, errs.c.rule, errs.c.field).limit(limit)).all()
        return pd.DataFrame([tuple(r) for r in rows], columns=list(ERROR_COLUMNS), dtype=object)

    def publish(self, batch_id: str) -> int:
        """Write the good rows to `stg_<table>` (replace or upsert) and the findings to `data_errors`."""
        conn, work, errs, staged = self.conn, self.work, self.errs, STAGING_TABLES[self.table_name]
        good = ~sa.exists().where(errs.c._pos == work.c._pos, errs.c.severity == ERROR)
        names = [c.name for c in SOURCE_TABLES_BY_NAME[self.table_name].table.columns]
        loaded = 0
        if self.mode == "full":
            if self.rows_in:  # an empty extract keeps the last validated one (the blocking check fails)
                conn.execute(sa.delete(staged))
        else:
            keys = sa.select(*(work.c[k] for k in self.key)).where(good)
            conn.execute(sa.delete(staged).where(sa.tuple_(*(staged.c[k] for k in self.key)).in_(keys)))
        if self.rows_in:
            insert = sa.insert(staged).from_select(
                [*names, "_batch_id"],
                sa.select(*(work.c[n] for n in names), sa.literal(batch_id, staged.c._batch_id.type)).where(good),
            )
            loaded = conn.execute(insert).rowcount
        copy = sa.insert(data_errors).from_select(
            list(ERROR_COLUMNS),
            sa.select(*(errs.c[c] for c in ERROR_COLUMNS)).order_by(errs.c._pos, errs.c.rule, errs.c.field),
        )
        conn.execute(copy)
        return int(loaded)

    def drop(self) -> None:
        self.work.drop(self.conn)
        self.errs.drop(self.conn)
