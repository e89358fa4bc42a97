"""The SCD type 2 merge engine: pure SQLAlchemy Core, no Dagster.

`merge_scd2(engine_or_conn, spec, rows, as_of, full=True)` merges one batch of rows of one entity
into its dimension table, in one transaction, and returns `MergeStats`.

History is a function of the *set* of batches, not of their load order. Every batch is an
observation of each key at its as-of time: present (a live state, identified by `row_hash`) or,
for a full extract, absent (deleted). Versions are the runs of equal states in as-of order:

- a version opens at the source's `updated_at` when that lies after the previous observation of
  the key and not after the batch's as-of time, else at the as-of time (deletions: the as-of time);
- a key absent from a full extract after having been live gets a tombstone version (`is_deleted`)
  carrying its last attributes; a key that comes back opens a new live version;
- observations that repeat the current state change nothing (re-running a batch is a no-op).

A batch newer than everything loaded takes the fast path: stage, close changed, insert new.
An older batch (a late upload) is slotted into history: the engine rebuilds the affected keys'
observations from the dimension, the batch log (`scd2_batches`) and the log of partial
observations (`<dim>_seen`), recomputes their versions with window functions, and applies the
difference. Both paths are set-based SQL on staged temporary tables.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Union

import sqlalchemy as sa

from ows_pipeline.source.schema import TS
from ows_pipeline.warehouse.batches import new_batch_id, record_batch, utc_now
from ows_pipeline.warehouse.bulk import _sqlite_value, as_utc, insert_rows
from ows_pipeline.warehouse.schema.ledger import data_errors, etl_batches
from ows_pipeline.warehouse.schema.scd2 import DimensionSpec, Scd2Error, declare_dimension, scd2_batches  # noqa: F401

if TYPE_CHECKING:
    import pandas as pd

NULL_TOKEN = "\\N"

class DuplicateKeyError(Scd2Error):
    """The batch holds a natural key more than once and `on_duplicate='fail'`."""


@dataclass
class MergeStats:
    """What one merge did. `path` is `in_order` or `out_of_order`."""

    batch_id: str
    rows_in: int = 0
    opened: int = 0
    closed: int = 0
    tombstoned: int = 0
    unchanged: int = 0
    rejected: int = 0
    scd1_updated: int = 0
    path: str = "in_order"

    def as_metadata(self) -> dict:
        return {
            "batch_id": self.batch_id,
            "rows_in": self.rows_in,
            "versions_opened": self.opened,
            "versions_closed": self.closed,
            "versions_tombstoned": self.tombstoned,
            "rows_unchanged": self.unchanged,
            "rows_rejected": self.rejected,
            "scd1_updated": self.scd1_updated,
            "path": self.path,
        }


# --------------------------------------------------------------------------- hashing


def _float_text(v) -> str:
    if v != v:  # NaN
        return NULL_TOKEN
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def _value_text(v) -> str:
    """Typed, normalised text of one value: NULL-safe, equal for 1 / 1.0 / True-like types kept apart."""
    import pandas as pd
    if v is None or v is pd.NaT:
        return NULL_TOKEN
    if isinstance(v, str):
        return f"{len(v)}:{v}"
    if isinstance(v, bool):
        return "t" if v else "f"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _float_text(v)
    if isinstance(v, dt.datetime):
        return as_utc(v).strftime("%Y-%m-%dT%H:%M:%S.%f")
    if isinstance(v, dt.date):
        return v.isoformat()
    try:
        if pd.isna(v):
            return NULL_TOKEN
    except (TypeError, ValueError):
        pass
    if hasattr(v, "item"):  # numpy scalars
        return _value_text(v.item())
    return _value_text(str(v))


def _column_text(s: pd.Series) -> list[str]:
    import pandas as pd
    kind = s.dtype.kind
    if kind in "iu":
        return [str(v) for v in s.tolist()]
    if kind == "b" and not isinstance(s.dtype, pd.BooleanDtype):
        return ["t" if v else "f" for v in s.tolist()]
    strings = isinstance(s.dtype, pd.StringDtype) or (pd.api.types.is_string_dtype(s.dtype) and kind != "O")
    if strings or (kind == "O" and pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty")):
        null = NULL_TOKEN
        return [null if v is None or v != v else f"{len(v)}:{v}" for v in s.astype(object).tolist()]
    return [_value_text(v) for v in s.tolist()]


def row_hashes(frame: pd.DataFrame, tracked: Sequence[str]) -> list[str]:
    """md5 hex per row over the typed, normalised `tracked` columns (in that order), NULL-safe."""
    if len(frame) == 0:
        return []
    columns = [_column_text(frame[col]) for col in tracked]
    md5 = hashlib.md5
    return [md5("\x1f".join(parts).encode()).hexdigest() for parts in zip(*columns)]


# --------------------------------------------------------------------------- input


def _as_frame(spec: DimensionSpec, rows) -> pd.DataFrame:
    import pandas as pd
    frame = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    needed = list(spec.natural_key) + list(spec.tracked)
    missing = [c for c in needed if c not in frame.columns]
    if missing and len(frame):
        raise Scd2Error(
            f"{spec.name}: the batch lacks column(s) {missing}; every row needs the natural key "
            f"{list(spec.natural_key)} and the tracked columns {list(spec.tracked)}."
        )
    for col in needed + list(spec.scd1) + list(spec.untracked):
        if col not in frame.columns:
            frame[col] = None
    frame = frame[list(spec.natural_key) + list(spec.attributes)].reset_index(drop=True)
    frame["_row_number"] = range(1, len(frame) + 1)
    return frame


def _key_text(frame: pd.DataFrame, keys: Sequence[str]) -> pd.Series:
    text = None
    for k in keys:
        part = frame[k].astype(object).map(lambda v: "" if v is None else str(v))
        text = part if text is None else text + "|" + part
    return text


def _split_rejects(spec: DimensionSpec, frame: pd.DataFrame) -> tuple[pd.DataFrame, list[dict], pd.DataFrame]:
    """Rows with a missing or duplicate natural key go to `data_errors`, never into the dimension.

    Returns the clean rows, the errors, and the duplicated keys (not observed by this batch:
    a full extract does not delete them)."""
    keys = list(spec.natural_key)
    errors: list[dict] = []
    null_key = frame[keys].isna().any(axis=1)
    for _, row in frame[null_key].iterrows():
        errors.append(
            dict(
                row_number=int(row["_row_number"]),
                record_key=None,
                field=",".join(keys),
                value=None,
                rule="natural_key_not_null",
                message=f"{spec.name}: row {int(row['_row_number'])} has no {'/'.join(keys)}; "
                "fill in the natural key or drop the row.",
            )
        )
    frame = frame[~null_key]
    dup = frame.duplicated(keys, keep=False)
    skipped = frame[dup][keys].drop_duplicates()
    if dup.any():
        dups = frame[dup].copy()
        dups["_key_text"] = _key_text(dups, keys)
        for key_text, group in dups.groupby("_key_text", sort=True):
            numbers = [int(n) for n in group["_row_number"]]
            for n in numbers:
                errors.append(
                    dict(
                        row_number=n,
                        record_key=key_text,
                        field=",".join(keys),
                        value=key_text,
                        rule="duplicate_natural_key",
                        message=f"{spec.name}: natural key {'/'.join(keys)}={key_text} appears {len(numbers)} "
                        f"times in the batch (rows {', '.join(map(str, numbers))}); none of them was loaded. "
                        "Keep one row per key in the source and load it again.",
                    )
                )
        frame = frame[~dup]
    return frame.reset_index(drop=True), errors, skipped.reset_index(drop=True)


# --------------------------------------------------------------------------- transactions


def dimension_lock_id(name: str) -> int:
    """The PostgreSQL advisory lock id serialising merges of one dimension."""
    return zlib.crc32(f"scd2:{name}".encode())


def _lock(conn: sa.Connection, spec: DimensionSpec) -> None:
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": dimension_lock_id(spec.name)})
    elif dialect == "sqlite":
        if not conn.in_transaction():
            # The warehouse engine's begin hook emits BEGIN IMMEDIATE (ows_pipeline.resources).
            conn.begin()
        if not conn.connection.dbapi_connection.in_transaction:
            # A plain pysqlite engine begins lazily (and DEFERRED); take the write lock up front instead.
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def _utc(value: dt.datetime) -> dt.datetime:
    import pandas as pd
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if not isinstance(value, dt.datetime):
        raise Scd2Error(f"as_of must be a datetime, not {value!r}")
    return as_utc(value)


# --------------------------------------------------------------------------- temp tables


def _temp_table(name: str, *columns: sa.Column) -> sa.Table:
    return sa.Table(name, sa.MetaData(), *columns, prefixes=["TEMPORARY"])


def _copy_columns(spec: DimensionSpec, names: Iterable[str]) -> list[sa.Column]:
    return [sa.Column(n, spec.table.c[n].type) for n in names]


@dataclass
class _Temps:
    stage: sa.Table
    changes: sa.Table
    keys: sa.Table
    obs: sa.Table
    hist: sa.Table
    skip: sa.Table
    diff: sa.Table
    rows: sa.Table

    def all(self):
        return [self.stage, self.changes, self.keys, self.obs, self.hist, self.skip, self.diff, self.rows]


def _temps(spec: DimensionSpec) -> _Temps:
    k = spec.natural_key
    a = spec.attributes
    stage = _temp_table(
        "_scd2_stage", *_copy_columns(spec, k + a), sa.Column("row_hash", sa.String(32)), sa.Column("_row_number", sa.BigInteger)
    )
    changes = _temp_table(
        "_scd2_changes",
        *_copy_columns(spec, k),
        sa.Column("action", sa.String(1)),
        sa.Column("valid_from", TS),
        sa.Column("prev_sk", sa.BigInteger),
    )
    keys = _temp_table("_scd2_keys", *_copy_columns(spec, k))
    obs_cols = [
        *_copy_columns(spec, k),
        sa.Column("t", TS),
        sa.Column("dead", sa.Boolean),
        sa.Column("row_hash", sa.String(32)),
        *_copy_columns(spec, a),
        sa.Column("batch_id", sa.String(40)),
    ]
    obs = _temp_table("_scd2_obs", *obs_cols)
    hist = _temp_table(
        "_scd2_hist",
        *_copy_columns(spec, k + a),
        sa.Column("row_hash", sa.String(32)),
        sa.Column("valid_from", TS),
        sa.Column("valid_to", TS),
        sa.Column("is_current", sa.Boolean),
        sa.Column("is_deleted", sa.Boolean),
        sa.Column("batch_id", sa.String(40)),
    )
    skip = _temp_table("_scd2_skip", *_copy_columns(spec, k))
    diff = _temp_table(
        "_scd2_diff", *_copy_columns(spec, k), sa.Column("action", sa.String(1)), sa.Column("prev_sk", sa.BigInteger)
    )
    rows = _temp_table(
        "_scd2_rows", *_copy_columns(spec, k + a), sa.Column("row_hash", sa.String(32)), sa.Column("_row_number", sa.BigInteger)
    )
    return _Temps(stage, changes, keys, obs, hist, skip, diff, rows)


def _create_temps(conn: sa.Connection, temps: _Temps, spec: DimensionSpec) -> None:
    for t in temps.all():
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {t.name}")
        t.create(conn)
    keys = ", ".join(spec.natural_key)
    conn.exec_driver_sql(f"CREATE INDEX ix{temps.stage.name} ON {temps.stage.name} ({keys})")
    conn.exec_driver_sql(f"CREATE INDEX ix{temps.changes.name} ON {temps.changes.name} (prev_sk)")
    conn.exec_driver_sql(f"CREATE INDEX ix{temps.keys.name} ON {temps.keys.name} ({keys})")
    conn.exec_driver_sql(f"CREATE INDEX ix{temps.obs.name} ON {temps.obs.name} ({keys}, t)")
    conn.exec_driver_sql(f"CREATE INDEX ix{temps.hist.name} ON {temps.hist.name} ({keys}, valid_from)")
    conn.exec_driver_sql(f"CREATE INDEX ix{temps.rows.name} ON {temps.rows.name} ({keys})")


def _drop_temps(conn: sa.Connection, temps: _Temps) -> None:
    for t in temps.all():
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {t.name}")


def _analyze(conn: sa.Connection, table: sa.Table) -> None:
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"ANALYZE {table.name}")


def _stage_rows(conn: sa.Connection, stage: sa.Table, frame: pd.DataFrame) -> None:
    columns = [c.name for c in stage.columns if c.name in frame.columns]
    if len(frame) == 0:
        return
    if conn.dialect.name == "postgresql":
        _copy_frame(conn, stage, columns, frame[columns])
        return
    if conn.dialect.name == "sqlite":
        _sqlite_executemany(conn, stage.name, columns, frame)
        return
    data = frame[columns].astype(object)
    data = data.where(data.notna(), None)
    insert_rows(conn, stage.name, columns, list(data.itertuples(index=False, name=None)))


def _stage_keys_and_hashes(conn: sa.Connection, stage: sa.Table, frame: pd.DataFrame) -> None:
    """Stage natural keys and row hashes; integer keys on PostgreSQL go as hand-built COPY text."""
    columns = list(frame.columns)
    if conn.dialect.name != "postgresql" or len(frame) == 0 or any(frame[c].dtype.kind not in "iu" for c in columns[:-1]):
        _stage_rows(conn, stage, frame)
        return
    import io

    lines = "\n".join(map("\t".join, zip(*[map(str, frame[c].tolist()) for c in columns[:-1]], frame[columns[-1]].tolist())))
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.copy_expert(f"COPY {stage.name} ({', '.join(columns)}) FROM STDIN", io.StringIO(lines + "\n"))
    finally:
        cursor.close()


def _sqlite_executemany(conn: sa.Connection, name: str, columns: list[str], frame: pd.DataFrame) -> None:
    """executemany with column-wise conversion (timestamps as SQLAlchemy's SQLite text, NaN as NULL)."""
    import numpy as np
    import pandas as pd

    values = []
    for col in columns:
        s = frame[col]
        kind = s.dtype.kind
        if kind == "M":
            if getattr(s.dt, "tz", None) is not None:
                s = s.dt.tz_convert("UTC").dt.tz_localize(None)
            text = np.char.replace(np.datetime_as_string(s.to_numpy(dtype="datetime64[us]"), unit="us"), "T", " ")
            values.append([None if m else t for t, m in zip(text.tolist(), s.isna().tolist())])
        elif kind in "iub":
            values.append(s.tolist())
        elif kind == "f":
            values.append([None if v != v else v for v in s.tolist()])
        else:
            values.append([None if v is None or v is pd.NaT or (isinstance(v, float) and v != v) else _sqlite_value(v)
                           for v in s.astype(object).tolist()])
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        marks = ", ".join("?" for _ in columns)
        cursor.executemany(f"INSERT INTO {name} ({', '.join(columns)}) VALUES ({marks})", list(zip(*values)))
    finally:
        cursor.close()


def _copy_frame(conn: sa.Connection, table: sa.Table, columns: list[str], frame: pd.DataFrame) -> None:
    """COPY a DataFrame as CSV (much faster than value-by-value text for a million rows)."""
    import numpy as np
    import pandas as pd
    import io

    out = frame.copy()
    for col in out.columns:
        s = out[col]
        if s.dtype.kind == "f" and isinstance(table.c[col].type, sa.Integer):
            out[col] = s.astype("Int64")
        elif s.dtype.kind == "M":
            if getattr(s.dt, "tz", None) is not None:
                s = s.dt.tz_convert("UTC").dt.tz_localize(None)
            text = pd.Series(np.datetime_as_string(s.to_numpy(dtype="datetime64[us]"), unit="us"), index=s.index)
            out[col] = (text + "+00").where(s.notna(), None)
        elif s.dtype.kind == "O":
            if any(isinstance(v, dt.datetime) for v in s.head(50).tolist()):
                out[col] = [None if v is None or v is pd.NaT else as_utc(v).isoformat() for v in s.tolist()]
    buf = io.StringIO()
    out.to_csv(buf, header=False, index=False, na_rep=NULL_TOKEN)
    buf.seek(0)
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.copy_expert(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv, NULL '\\N')", buf)
    finally:
        cursor.close()


# --------------------------------------------------------------------------- SQL building blocks


def _key_match(a, b, keys: Sequence[str]):
    return sa.and_(*[a.c[k] == b.c[k] for k in keys])


def _in_interval(t, version):
    """`version` (a dim row) covers time `t`."""
    return sa.and_(version.c.valid_from <= t, sa.or_(version.c.valid_to.is_(None), t < version.c.valid_to))


def _not_skipped(spec: DimensionSpec, keyed, t):
    """The full batch at `t` did observe the key of `keyed` (it was not quarantined there)."""
    seen = spec.seen_table
    skipped = sa.exists().where(_key_match(seen, keyed, spec.natural_key), seen.c.as_of == t, sa.not_(seen.c.observed))
    return ~skipped.correlate_except(seen)


def _log_bound(spec: DimensionSpec, agg, version):
    """min/max as-of of full batches inside `version`'s interval (a correlated scalar subquery)."""
    log = scd2_batches
    return (
        sa.select(agg(log.c.as_of))
        .where(
            log.c.dimension == spec.name,
            log.c.is_full,
            _in_interval(log.c.as_of, version),
            _not_skipped(spec, version, log.c.as_of),
        )
        .scalar_subquery()
    )


def fast_path_diff_statements(spec: DimensionSpec, temps: _Temps, *, full: bool, one_pass: bool = False):
    """In-order merge, step 1: the keys that are new, changed, back or gone (from the staged hashes).

    `one_pass`: a full extract is compared in one FULL OUTER JOIN (PostgreSQL plans it as one
    hash join; SQLite would loop), else a left join and an anti-join."""
    d = spec.table
    s, df = temps.stage, temps.diff
    keys = spec.natural_key
    cols = list(keys) + ["action", "prev_sk"]
    if full and one_pass:
        cur = sa.select(d).where(d.c.is_current).subquery("cur")
        skip = temps.skip
        missing, absent = cur.c[keys[0]].is_(None), s.c[keys[0]].is_(None)
        action = sa.case((missing, "N"), (absent, "D"), (cur.c.is_deleted, "R"), else_="C")
        differs = (
            sa.select(*[sa.func.coalesce(s.c[k], cur.c[k]) for k in keys], action, cur.c[spec.sk])
            .select_from(s.outerjoin(cur, _key_match(cur, s, keys), full=True))
            .where(
                sa.or_(
                    missing,
                    sa.and_(absent, sa.not_(cur.c.is_deleted), ~sa.exists().where(_key_match(skip, cur, keys))),
                    sa.and_(sa.not_(absent), sa.or_(cur.c.is_deleted, cur.c.row_hash != s.c.row_hash)),
                )
            )
        )
        return [df.insert().from_select(cols, differs)]
    cur = d.alias("cur")
    action = sa.case((cur.c[keys[0]].is_(None), "N"), (cur.c.is_deleted, "R"), else_="C")
    differs = (
        sa.select(*[s.c[k] for k in keys], action, cur.c[spec.sk])
        .select_from(s.outerjoin(cur, sa.and_(_key_match(cur, s, keys), cur.c.is_current)))
        .where(sa.or_(cur.c[keys[0]].is_(None), cur.c.is_deleted, cur.c.row_hash != s.c.row_hash))
    )
    stmts = [df.insert().from_select(cols, differs)]
    if full:
        gone = sa.select(*[d.c[k] for k in keys], sa.literal("D"), d.c[spec.sk]).where(
            d.c.is_current,
            sa.not_(d.c.is_deleted),
            ~sa.exists().where(_key_match(s, d, keys)),
            ~sa.exists().where(_key_match(temps.skip, d, keys)),
        )
        stmts.append(df.insert().from_select(cols, gone))
    return stmts


def fast_path_statements(spec: DimensionSpec, temps: _Temps, *, full: bool, as_of, last_full, batch_id: str):
    """In-order merge, step 2 (the full rows of the differing keys staged in `rows`): business
    times, close, insert (tombstones included). Returns a list of statements."""
    d = spec.table
    s, c, seen, df = temps.rows, temps.changes, spec.seen_table, temps.diff
    keys = spec.natural_key
    t = sa.bindparam("t", as_of, type_=TS)
    cur = d.alias("cur")
    seen_max = (
        sa.select(*[seen.c[k] for k in keys], sa.func.max(seen.c.as_of).label("last_seen"))
        .where(seen.c.observed)
        .group_by(*[seen.c[k] for k in keys])
        .subquery("seen_max")
    )
    vf = t
    if spec.updated_at:
        u = s.c[spec.updated_at]
        conds = [u.is_not(None), u <= t, sa.or_(cur.c.valid_from.is_(None), u > cur.c.valid_from)]
        conds.append(sa.or_(seen_max.c.last_seen.is_(None), u > seen_max.c.last_seen))
        if last_full is not None:
            lf = sa.bindparam("last_full", last_full, type_=TS)
            log = scd2_batches
            last_observed_full = (
                sa.select(sa.func.max(log.c.as_of))
                .where(log.c.dimension == spec.name, log.c.is_full, _not_skipped(spec, df, log.c.as_of))
                .scalar_subquery()
            )
            conds.append(
                sa.case(
                    (u > lf, sa.true()),
                    (_not_skipped(spec, df, lf), sa.false()),
                    else_=sa.or_(last_observed_full.is_(None), u > last_observed_full),
                )
            )
        vf = sa.case((sa.and_(*conds), u), else_=t)
    classify = sa.select(*[df.c[k] for k in keys], df.c.action, vf, df.c.prev_sk).select_from(
        df.outerjoin(s, _key_match(s, df, keys))
        .outerjoin(cur, cur.c[spec.sk] == df.c.prev_sk)
        .outerjoin(seen_max, _key_match(seen_max, df, keys))
    )
    cols = list(keys) + ["action", "valid_from", "prev_sk"]
    stmts = [c.insert().from_select(cols, classify)]
    closing = sa.select(c.c.valid_from).where(c.c.prev_sk == d.c[spec.sk]).scalar_subquery()
    stmts.append(
        d.update()
        .where(d.c.is_current, sa.exists().where(c.c.prev_sk == d.c[spec.sk]))
        .values(valid_to=closing, is_current=False)
    )
    batch = sa.bindparam("batch_id", batch_id, type_=sa.String(40))
    dim_cols = list(keys) + list(spec.attributes) + ["row_hash", "valid_from", "valid_to", "is_current", "is_deleted", "batch_id"]
    opened = (
        sa.select(
            *[s.c[n] for n in keys + spec.attributes],
            s.c.row_hash,
            c.c.valid_from,
            sa.null(),
            sa.true(),
            sa.false(),
            batch,
        )
        .select_from(c.join(s, _key_match(s, c, keys)))
        .where(c.c.action.in_(["N", "C", "R"]))
    )
    stmts.append(d.insert().from_select(dim_cols, opened))
    if full:
        prev = d.alias("prev")
        tomb = (
            sa.select(
                *[prev.c[n] for n in keys + spec.attributes],
                prev.c.row_hash,
                c.c.valid_from,
                sa.null(),
                sa.true(),
                sa.true(),
                batch,
            )
            .select_from(c.join(prev, prev.c[spec.sk] == c.c.prev_sk))
            .where(c.c.action == "D")
        )
        stmts.append(d.insert().from_select(dim_cols, tomb))
    return stmts


def scd1_statement(spec: DimensionSpec, source: sa.FromClause, match_on: Sequence[str], columns: Sequence[str], scope: str):
    """UPDATE the SCD1 `columns` of the dimension from `source` (matched on `match_on`), only where they differ."""
    d = spec.table
    match = sa.and_(*[source.c[m] == d.c[m] for m in match_on])
    differs = sa.or_(*[source.c[col].is_distinct_from(d.c[col]) for col in columns])
    where = [sa.exists().where(match, differs)]
    if scope == "current":
        where.append(d.c.is_current)
    values = {col: sa.select(source.c[col]).where(match).limit(1).scalar_subquery() for col in columns}
    return d.update().where(*where).values(**values)


def _near_full(spec: DimensionSpec, keyed, before: bool, t):
    """The full batch nearest to `t` (before or after it) that observed `keyed`'s key."""
    log = scd2_batches
    agg = sa.func.max if before else sa.func.min
    side = log.c.as_of < t if before else log.c.as_of > t
    return (
        sa.select(agg(log.c.as_of))
        .where(log.c.dimension == spec.name, log.c.is_full, side, _not_skipped(spec, keyed, log.c.as_of))
        .scalar_subquery()
    )


def out_of_order_statements(spec: DimensionSpec, temps: _Temps, *, full: bool, as_of, batch_id: str):
    """The late-batch merge: rebuild the affected keys' observations, recompute their versions, apply the difference."""
    d = spec.table
    s, kt, o, h = temps.stage, temps.keys, temps.obs, temps.hist
    seen = spec.seen_table
    keys = list(spec.natural_key)
    attrs = list(spec.attributes)
    t = sa.bindparam("t", as_of, type_=TS)
    batch = sa.bindparam("batch_id", batch_id, type_=sa.String(40))
    obs_cols = keys + ["t", "dead", "row_hash"] + attrs + ["batch_id"]
    stmts = []

    # 1. affected keys: the batch's keys, and for a full extract every key of the dimension.
    stmts.append(kt.insert().from_select(keys, sa.select(*[s.c[k] for k in keys])))
    if full:
        others = (
            sa.select(*[d.c[k] for k in keys])
            .where(d.c.is_current, ~sa.exists().where(_key_match(s, d, keys)))
        )
        stmts.append(kt.insert().from_select(keys, others))

    # 2. the new observations: rows present at t; for a full extract, every other key absent at t.
    stmts.append(
        o.insert().from_select(
            obs_cols,
            sa.select(*[s.c[k] for k in keys], t, sa.false(), s.c.row_hash, *[s.c[a] for a in attrs], batch),
        )
    )
    if full:
        stmts.append(
            o.insert().from_select(
                obs_cols,
                sa.select(*[kt.c[k] for k in keys], t, sa.true(), sa.null(), *[sa.null() for _ in attrs], batch).where(
                    ~sa.exists().where(_key_match(s, kt, keys)),
                    ~sa.exists().where(_key_match(temps.skip, kt, keys)),
                ),
            )
        )

    # 3. the existing observations that can bound a version, per version of an affected key:
    #    first and last full batch inside it, the full batches nearest to t, and every partial observation.
    v = d.alias("v")
    affected = sa.exists().where(_key_match(kt, v, keys))
    candidates = [
        sa.select(v.c[spec.sk].label("sk"), _log_bound(spec, sa.func.min, v).label("t")).where(affected),
        sa.select(v.c[spec.sk].label("sk"), _log_bound(spec, sa.func.max, v).label("t")).where(affected),
        sa.select(v.c[spec.sk].label("sk"), seen.c.as_of.label("t"))
        .select_from(v.join(seen, _key_match(seen, v, keys)))
        .where(affected, seen.c.observed, _in_interval(seen.c.as_of, v)),
    ]
    for before in (True, False):
        near = (
            sa.select(v.c[spec.sk].label("sk"), v.c.valid_from, v.c.valid_to, _near_full(spec, v, before, t).label("t"))
            .where(affected)
            .subquery()
        )
        candidates.append(sa.select(near.c.sk, near.c.t).where(_in_interval(near.c.t, near)))
    cand = sa.union(*candidates).subquery("cand")
    w = d.alias("w")
    existing_at = sa.exists().where(_key_match(o, w, keys), o.c.t == cand.c.t)
    stmts.append(
        o.insert().from_select(
            obs_cols,
            sa.select(*[w.c[k] for k in keys], cand.c.t, w.c.is_deleted, w.c.row_hash, *[w.c[a] for a in attrs], w.c.batch_id)
            .select_from(cand.join(w, w.c[spec.sk] == cand.c.sk))
            .where(cand.c.t.is_not(None), ~existing_at),
        )
    )

    # 4. absent observations before a key's first version: the last full batch before it, and the
    #    full batches nearest to t when they fall before it (or the key has no version yet).
    first = (
        sa.select(*[d.c[k] for k in keys], sa.func.min(d.c.valid_from).label("first_from"))
        .group_by(*[d.c[k] for k in keys])
        .subquery("first")
    )
    log = scd2_batches
    q = (
        sa.select(sa.func.max(log.c.as_of))
        .where(
            log.c.dimension == spec.name,
            log.c.is_full,
            log.c.as_of < first.c.first_from,
            _not_skipped(spec, first, log.c.as_of),
        )
        .scalar_subquery()
    )
    absent_sources = [
        sa.select(*[first.c[k] for k in keys], q.label("t")).where(sa.exists().where(_key_match(kt, first, keys)))
    ]
    for before in (True, False):
        near = sa.select(*[kt.c[k] for k in keys], _near_full(spec, kt, before, t).label("t")).subquery()
        absent_sources.append(
            sa.select(*[near.c[k] for k in keys], near.c.t)
            .select_from(near.outerjoin(first, _key_match(first, near, keys)))
            .where(sa.or_(first.c.first_from.is_(None), near.c.t < first.c.first_from))
        )
    absent = sa.union(*absent_sources).subquery("absent")
    log_batch = (
        sa.select(sa.func.max(log.c.batch_id))
        .where(log.c.dimension == spec.name, log.c.is_full, log.c.as_of == absent.c.t)
        .scalar_subquery()
    )
    stmts.append(
        o.insert().from_select(
            obs_cols,
            sa.select(*[absent.c[k] for k in keys], absent.c.t, sa.true(), sa.null(), *[sa.null() for _ in attrs], log_batch).where(
                absent.c.t.is_not(None), ~sa.exists().where(_key_match(o, absent, keys), o.c.t == absent.c.t)
            ),
        )
    )

    # 5. versions = runs of equal state in as-of order (leading absences dropped).
    win = dict(partition_by=[o.c[k] for k in keys], order_by=o.c.t)
    lagged = sa.select(
        o,
        sa.func.lag(o.c.dead).over(**win).label("prev_dead"),
        sa.func.lag(o.c.row_hash).over(**win).label("prev_hash"),
        sa.func.lag(o.c.t).over(**win).label("prev_t"),
    ).subquery("lagged")
    g = lagged.c
    is_start = sa.or_(
        sa.and_(g.prev_t.is_(None), sa.not_(g.dead)),
        sa.and_(
            g.prev_t.is_not(None),
            sa.or_(g.dead != g.prev_dead, sa.and_(sa.not_(g.dead), g.row_hash != g.prev_hash)),
        ),
    )
    vf = g.t
    if spec.updated_at:
        u = g[spec.updated_at]
        vf = sa.case(
            (
                sa.and_(sa.not_(g.dead), u.is_not(None), u <= g.t, sa.or_(g.prev_t.is_(None), u > g.prev_t)),
                u,
            ),
            else_=g.t,
        )
    starts = sa.select(*[g[k] for k in keys], *[g[a] for a in attrs], g.row_hash, g.dead, g.batch_id, vf.label("vf"), g.t).where(
        is_start
    ).subquery("starts")
    st = starts.c
    win2 = dict(partition_by=[st[k] for k in keys], order_by=st.t)

    def carried(col):
        # a tombstone carries the attributes of the version it closes
        return sa.case((st.dead, sa.func.lag(col).over(**win2)), else_=col)

    next_from = sa.func.lead(st.vf).over(**win2)
    hist_select = sa.select(
        *[st[k] for k in keys],
        *[carried(st[a]) for a in attrs],
        carried(st.row_hash),
        st.vf,
        next_from,
        sa.case((next_from.is_(None), sa.true()), else_=sa.false()),
        st.dead,
        st.batch_id,
    )
    hist_cols = keys + attrs + ["row_hash", "valid_from", "valid_to", "is_current", "is_deleted", "batch_id"]
    stmts.append(h.insert().from_select(hist_cols, hist_select))

    # 6. apply the difference for the affected keys (a version is kept when key, start, state agree).
    def same_version(x, y):
        return sa.and_(
            _key_match(x, y, keys),
            x.c.valid_from == y.c.valid_from,
            x.c.is_deleted == y.c.is_deleted,
            x.c.row_hash == y.c.row_hash,
        )

    in_scope = sa.exists().where(_key_match(kt, d, keys))
    stmts.append(("removed", d.delete().where(in_scope, ~sa.exists().where(same_version(h, d)))))
    new_to = sa.select(h.c.valid_to).where(same_version(h, d)).scalar_subquery()
    stmts.append(
        (
            "reclosed",
            d.update()
            .where(
                in_scope,
                sa.exists().where(
                    same_version(h, d),
                    h.c.valid_to.is_not(None),
                    sa.or_(d.c.valid_to.is_(None), d.c.valid_to != h.c.valid_to),
                ),
            )
            .values(valid_to=new_to, is_current=False),
        )
    )
    stmts.append(
        d.update()
        .where(in_scope, sa.not_(d.c.is_current), sa.exists().where(same_version(h, d), h.c.valid_to.is_(None)))
        .values(valid_to=None, is_current=True)
    )
    dim_cols = keys + attrs + ["row_hash", "valid_from", "valid_to", "is_current", "is_deleted", "batch_id"]
    stmts.append(
        (
            "inserted",
            d.insert().from_select(
                dim_cols,
                sa.select(*[h.c[n] for n in dim_cols]).where(~sa.exists().where(same_version(d, h))),
            ),
        )
    )
    return stmts


# --------------------------------------------------------------------------- the merge


def _log_scalars(conn: sa.Connection, spec: DimensionSpec):
    """The newest as-of merged into the dimension, and the newest of a full batch."""
    log = scd2_batches
    mine = log.c.dimension == spec.name
    row = conn.execute(
        sa.select(
            sa.select(sa.func.max(log.c.as_of)).where(mine).scalar_subquery(),
            sa.select(sa.func.max(log.c.as_of)).where(mine, log.c.is_full).scalar_subquery(),
        )
    ).one()
    return [None if v is None else as_utc(v) for v in row]


def _write_errors(conn: sa.Connection, spec: DimensionSpec, errors: list[dict], batch_id: str, asset_key: str, source_file):
    now = utc_now()
    for e in errors:
        e.update(batch_id=batch_id, asset_key=asset_key, source_file=source_file, severity="ERROR", created_at=now)
    if errors:
        conn.execute(sa.insert(data_errors), errors)


def merge_scd2(
    target: Union[sa.Engine, sa.Connection],
    spec: DimensionSpec,
    rows: Union[pd.DataFrame, Iterable[Mapping]],
    as_of: dt.datetime,
    *,
    full: bool = True,
    batch_id: Optional[str] = None,
    on_duplicate: str = "quarantine",
    source_file: Optional[str] = None,
    asset_key: Optional[str] = None,
    record_etl_batch: bool = True,
    source: Optional[str] = None,
) -> MergeStats:
    """Merge one batch of `spec`'s entity into its SCD2 dimension; see the module docstring.

    `target`: an Engine (the merge commits its own transaction) or a Connection (the merge runs in
    the caller's transaction, which the caller commits). `rows`: a DataFrame or dicts carrying the
    natural key and tracked columns (SCD1 / untracked columns optional). `full=True`: keys absent
    from the batch are deletions. `on_duplicate`: 'quarantine' (duplicate keys go to `data_errors`,
    the rest merges) or 'fail' (raise `DuplicateKeyError`; the errors are still recorded).
    """
    if on_duplicate not in ("quarantine", "fail"):
        raise Scd2Error(f"on_duplicate must be 'quarantine' or 'fail', not {on_duplicate!r}")
    as_of = _utc(as_of)
    batch_id = batch_id or new_batch_id()
    asset_key = asset_key or spec.asset_key
    frame = _as_frame(spec, rows)
    rows_in = len(frame)
    frame, errors, skipped = _split_rejects(spec, frame)
    if errors and on_duplicate == "fail":
        if isinstance(target, sa.Engine):
            with target.begin() as conn:
                _write_errors(conn, spec, errors, batch_id, asset_key, source_file)
        else:
            _write_errors(target, spec, errors, batch_id, asset_key, source_file)
        raise DuplicateKeyError(
            f"{spec.name}: batch {batch_id} rejected, {len(errors)} row(s) with a duplicate or missing natural key; "
            f"first: {errors[0]['message']}"
        )
    frame["row_hash"] = row_hashes(frame, spec.tracked)
    stats = MergeStats(batch_id=batch_id, rows_in=rows_in, rejected=len(errors))

    def run(conn: sa.Connection) -> None:
        _lock(conn, spec)
        _write_errors(conn, spec, errors, batch_id, asset_key, source_file)
        _merge(conn, spec, frame, skipped, as_of, full, batch_id, stats)
        if record_etl_batch:
            exists = conn.execute(sa.select(etl_batches.c.batch_id).where(etl_batches.c.batch_id == batch_id)).first()
            if not exists:
                record_batch(
                    conn,
                    batch_id=batch_id,
                    asset_key=asset_key,
                    source=source or source_file,
                    mode="full" if full else "partial",
                    as_of=as_of,
                    rows_in=rows_in,
                    rows_loaded=rows_in - stats.rejected,
                    rows_rejected=stats.rejected,
                    status="SUCCESS",
                    message=f"{stats.path}: opened {stats.opened}, closed {stats.closed}, "
                    f"tombstoned {stats.tombstoned}, unchanged {stats.unchanged}",
                )

    if isinstance(target, sa.Engine):
        with target.connect() as conn:
            try:
                run(conn)
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
    else:
        run(target)
    return stats


def _count(conn: sa.Connection, stmt) -> int:
    result = conn.execute(stmt)
    return max(result.rowcount or 0, 0)


def _merge(
    conn: sa.Connection,
    spec: DimensionSpec,
    frame: pd.DataFrame,
    skipped: pd.DataFrame,
    as_of,
    full: bool,
    batch_id: str,
    stats: MergeStats,
):
    already = _check_batch_id(conn, spec, batch_id, as_of, full)
    temps = _temps(spec)
    _create_temps(conn, temps, spec)
    _stage_rows(conn, temps.skip, skipped)
    stage_frame = frame[[c.name for c in temps.stage.columns if c.name in frame.columns]]
    last_any, last_full = _log_scalars(conn, spec)
    if last_any is None or as_of > last_any:
        _merge_in_order(conn, spec, temps, stage_frame, as_of, last_full, full, batch_id, stats)
    else:
        _merge_out_of_order(conn, spec, temps, stage_frame, as_of, full, batch_id, stats)
    if not already:
        _log_batch(conn, spec, temps, batch_id, as_of, full, stats.rows_in, observed=len(frame), skipped=len(skipped))
    _drop_temps(conn, temps)


def _check_batch_id(conn: sa.Connection, spec: DimensionSpec, batch_id: str, as_of, full: bool) -> bool:
    """True when this very batch was merged before (a re-run); a reused id with another as-of is refused."""
    log = scd2_batches
    logged = conn.execute(
        sa.select(log.c.as_of, log.c.is_full).where(log.c.dimension == spec.name, log.c.batch_id == batch_id)
    ).first()
    if logged is not None and (as_utc(logged.as_of) != as_of or bool(logged.is_full) != full):
        raise Scd2Error(
            f"{spec.name}: batch id {batch_id} was merged before with as-of {logged.as_of} "
            f"({'full' if logged.is_full else 'partial'}); give a different batch a new batch id."
        )
    return logged is not None


def _merge_in_order(conn, spec, temps: _Temps, stage_frame, as_of, last_full, full, batch_id, stats: MergeStats):
    """The batch is newer than everything loaded: compare hashes, then close and open versions."""
    import pandas as pd

    stats.path = "in_order"
    if spec.scd1:
        _stage_rows(conn, temps.stage, stage_frame)  # SCD1 columns may change on unchanged keys
    else:  # only keys and hashes for the comparison; full rows follow for the keys that differ
        _stage_keys_and_hashes(conn, temps.stage, stage_frame[list(spec.natural_key) + ["row_hash"]])
    _analyze(conn, temps.stage)
    for stmt in fast_path_diff_statements(spec, temps, full=full, one_pass=conn.dialect.name == "postgresql"):
        conn.execute(stmt)
    keys, df = list(spec.natural_key), temps.diff
    wanted = conn.execute(sa.select(*[df.c[k] for k in keys]).where(df.c.action.in_(["N", "C", "R"]))).all()
    if len(keys) == 1:
        positions = pd.Index(stage_frame[keys[0]]).get_indexer([w[0] for w in wanted])
    else:
        positions = pd.MultiIndex.from_frame(stage_frame[keys]).get_indexer([tuple(w) for w in wanted])
    _stage_rows(conn, temps.rows, stage_frame.iloc[positions])
    _analyze(conn, temps.diff)
    _analyze(conn, temps.rows)
    for stmt in fast_path_statements(spec, temps, full=full, as_of=as_of, last_full=last_full, batch_id=batch_id):
        conn.execute(stmt)
    c = temps.changes
    counts = dict(conn.execute(sa.select(c.c.action, sa.func.count()).group_by(c.c.action)).all())
    stats.opened = counts.get("N", 0) + counts.get("C", 0) + counts.get("R", 0)
    stats.closed = counts.get("C", 0) + counts.get("R", 0) + counts.get("D", 0)
    stats.tombstoned = counts.get("D", 0)
    stats.unchanged = len(stage_frame) - stats.opened
    if spec.scd1 and len(stage_frame):
        stats.scd1_updated = _count(conn, scd1_statement(spec, temps.stage, spec.natural_key, spec.scd1, spec.scd1_scope))


def _merge_out_of_order(conn, spec, temps: _Temps, stage_frame, as_of, full, batch_id, stats: MergeStats):
    """The batch is not newer than everything loaded: recompute the affected keys' history, apply the difference."""
    stats.path = "out_of_order"
    _stage_rows(conn, temps.stage, stage_frame)
    _analyze(conn, temps.stage)
    counted = {}
    for stmt in out_of_order_statements(spec, temps, full=full, as_of=as_of, batch_id=batch_id):
        if not isinstance(stmt, tuple):
            conn.execute(stmt)
            continue
        label, stmt = stmt
        if label == "inserted":
            h, d = temps.hist, spec.table
            same = sa.exists().where(
                _key_match(d, h, spec.natural_key),
                d.c.valid_from == h.c.valid_from,
                d.c.is_deleted == h.c.is_deleted,
                d.c.row_hash == h.c.row_hash,
            )
            for deleted, n in conn.execute(
                sa.select(h.c.is_deleted, sa.func.count()).where(~same).group_by(h.c.is_deleted)
            ).all():
                counted["tombstoned" if deleted else "opened"] = n
        counted[label] = _count(conn, stmt)
    stats.opened = counted.get("opened", 0)
    stats.tombstoned = counted.get("tombstoned", 0)
    stats.closed = counted.get("removed", 0) + counted.get("reclosed", 0)
    stats.unchanged = max(len(stage_frame) - stats.opened, 0)
    if spec.scd1 and spec.scd1_scope == "all" and len(stage_frame):
        cur = spec.table.alias("latest")
        latest = (
            sa.select(*[cur.c[k] for k in spec.natural_key], *[cur.c[c] for c in spec.scd1])
            .where(cur.c.is_current)
            .subquery()
        )
        stats.scd1_updated = _count(conn, scd1_statement(spec, latest, spec.natural_key, spec.scd1, "all"))


def _log_batch(conn, spec, temps: _Temps, batch_id, as_of, full, rows_in, observed: int, skipped: int) -> None:
    """The batch log: full batches observe every key (but the ones they quarantined); partial
    batches are remembered key by key."""
    conn.execute(
        sa.insert(scd2_batches).values(
            dimension=spec.name, batch_id=batch_id, as_of=as_of, is_full=full, rows_in=rows_in, merged_at=utc_now()
        )
    )
    seen, keys = spec.seen_table, spec.natural_key
    source = temps.skip if full else temps.stage
    if (skipped if full else observed) == 0:
        return
    t = sa.bindparam("t", as_of, type_=TS)
    conn.execute(
        seen.insert().from_select(
            list(keys) + ["as_of", "observed"],
            sa.select(*[source.c[k] for k in keys], t, sa.literal(not full, sa.Boolean)).where(
                ~sa.exists().where(_key_match(seen, source, keys), seen.c.as_of == t)
            ),
        )
    )


def apply_scd1(
    target: Union[sa.Engine, sa.Connection],
    spec: DimensionSpec,
    rows: Union[pd.DataFrame, Iterable[Mapping]],
    match_on: Sequence[str],
    columns: Optional[Sequence[str]] = None,
    scope: Optional[str] = None,
) -> int:
    """Overwrite SCD1 `columns` in place from `rows` matched on `match_on` (e.g. `project_code`).

    No version opens or closes. `scope`: 'current' (the current version) or 'all' (every
    version of the key); default: the spec's `scd1_scope`. Returns the number of rows updated.
    """
    import pandas as pd
    columns = tuple(columns or spec.scd1)
    scope = scope or spec.scd1_scope
    frame = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    missing = [c for c in list(match_on) + list(columns) if c not in frame.columns]
    if missing:
        raise Scd2Error(f"{spec.name}: SCD1 rows lack column(s) {missing}")
    frame = frame[list(match_on) + list(columns)].drop_duplicates(list(match_on), keep="last")
    src = _temp_table("_scd1_source", *_copy_columns(spec, list(match_on) + list(columns)))

    def run(conn: sa.Connection) -> int:
        _lock(conn, spec)
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {src.name}")
        src.create(conn)
        _stage_rows(conn, src, frame)
        n = _count(conn, scd1_statement(spec, src, match_on, columns, scope))
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {src.name}")
        return n

    if isinstance(target, sa.Engine):
        with target.connect() as conn:
            try:
                n = run(conn)
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
        return n
    return run(target)


# --------------------------------------------------------------------------- invariants


def invariant_violations(conn: sa.Connection, spec: DimensionSpec) -> dict[str, int]:
    """Count violations of the DESIGN.md section 3 invariants; all zero when the dimension is sound."""
    d = spec.table
    keys = [d.c[k] for k in spec.natural_key]
    per_key = (
        sa.select(*keys, sa.func.sum(sa.case((d.c.is_current, 1), else_=0)).label("n_current"))
        .group_by(*keys)
        .subquery()
    )
    not_one_current = sa.select(sa.func.count()).select_from(per_key).where(per_key.c.n_current != 1)
    current_closed = sa.select(sa.func.count()).where(d.c.is_current, d.c.valid_to.is_not(None))
    open_not_current = sa.select(sa.func.count()).where(sa.not_(d.c.is_current), d.c.valid_to.is_(None))
    empty_interval = sa.select(sa.func.count()).where(d.c.valid_to.is_not(None), d.c.valid_from >= d.c.valid_to)
    nxt = sa.select(
        d.c.valid_to, sa.func.lead(d.c.valid_from).over(partition_by=keys, order_by=d.c.valid_from).label("next_from")
    ).subquery()
    gaps = sa.select(sa.func.count()).select_from(nxt).where(
        sa.or_(
            sa.and_(nxt.c.next_from.is_not(None), sa.or_(nxt.c.valid_to.is_(None), nxt.c.valid_to != nxt.c.next_from)),
            sa.and_(nxt.c.next_from.is_(None), nxt.c.valid_to.is_not(None)),
        )
    )
    lagged = sa.select(
        d.c.is_deleted,
        d.c.row_hash,
        sa.func.lag(d.c.is_deleted).over(partition_by=keys, order_by=d.c.valid_from).label("prev_deleted"),
        sa.func.lag(d.c.row_hash).over(partition_by=keys, order_by=d.c.valid_from).label("prev_hash"),
        sa.func.row_number().over(partition_by=keys, order_by=d.c.valid_from).label("n"),
    ).subquery()
    l = lagged.c
    repeated = sa.select(sa.func.count()).select_from(lagged).where(
        sa.or_(
            sa.and_(l.n == 1, l.is_deleted),
            sa.and_(l.n > 1, l.is_deleted, l.prev_deleted),
            sa.and_(l.n > 1, sa.not_(l.is_deleted), sa.not_(l.prev_deleted), l.row_hash == l.prev_hash),
        )
    )
    checks = {
        "keys_without_exactly_one_current": not_one_current,
        "current_with_valid_to": current_closed,
        "closed_without_valid_to": open_not_current,
        "valid_from_not_before_valid_to": empty_interval,
        "gaps_or_overlaps": gaps,
        "repeated_or_leading_states": repeated,
    }
    return {name: int(conn.execute(q).scalar() or 0) for name, q in checks.items()}
