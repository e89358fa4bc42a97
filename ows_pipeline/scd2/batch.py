"""Staging of one batch: where SQL reads its rows, which rows are rejected, the merge's temporary tables.

A batch is a SQL query (e.g. the staging table, read where it lies) or rows from Python (a
frame or dicts), which are typed canonically (`values`) and written once with the bulk writer
into a temporary table. Rows without a natural key and keys that appear more than once are
found in SQL; they go to `data_errors` and the duplicated keys are not observed by the batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sqlalchemy as sa

from ows_pipeline.scd2.values import canonical_column, column_kind
from ows_pipeline.source.schema import TS
from ows_pipeline.warehouse.bulk import arrow_type, write_arrow
from ows_pipeline.warehouse.schema.scd2 import DimensionSpec, Scd2Error

if TYPE_CHECKING:
    import pandas as pd

ROW_NUMBER = "_row_number"


class DuplicateKeyError(Scd2Error):
    """The batch holds a natural key more than once and `on_duplicate='fail'`."""

    def __init__(self, message: str, errors: list[dict] = ()):
        super().__init__(message)
        self.errors = list(errors)


def _temp_table(name: str, *columns: sa.Column) -> sa.Table:
    return sa.Table(name, sa.MetaData(), *columns, prefixes=["TEMPORARY"])


def _copy_columns(spec: DimensionSpec, names: Iterable[str]) -> list[sa.Column]:
    return [sa.Column(n, spec.table.c[n].type) for n in names]


@dataclass
class _Temps:
    input: sa.Table
    stage: sa.Table
    changes: sa.Table
    keys: sa.Table
    obs: sa.Table
    hist: sa.Table
    skip: sa.Table
    diff: sa.Table
    rows: sa.Table

    def all(self):
        return [self.input, self.stage, self.changes, self.keys, self.obs, self.hist, self.skip, self.diff, self.rows]


def _hash_column() -> sa.Column:
    return sa.Column("row_hash", sa.String(32))


def _temps(spec: DimensionSpec) -> _Temps:
    k = spec.natural_key
    a = spec.attributes
    return _Temps(
        input=_temp_table("_scd2_input", *_copy_columns(spec, k + a), sa.Column(ROW_NUMBER, sa.BigInteger)),
        stage=_temp_table("_scd2_stage", *_copy_columns(spec, k + a), _hash_column()),
        changes=_temp_table(
            "_scd2_changes", *_copy_columns(spec, k), sa.Column("action", sa.String(1)), sa.Column("valid_from", TS),
            sa.Column("prev_sk", sa.BigInteger),
        ),
        keys=_temp_table("_scd2_keys", *_copy_columns(spec, k)),
        obs=_temp_table(
            "_scd2_obs", *_copy_columns(spec, k), sa.Column("t", TS), sa.Column("dead", sa.Boolean), _hash_column(),
            *_copy_columns(spec, a), sa.Column("batch_id", sa.String(40)),
        ),
        hist=_temp_table(
            "_scd2_hist", *_copy_columns(spec, k + a), _hash_column(), sa.Column("valid_from", TS), sa.Column("valid_to", TS),
            sa.Column("is_current", sa.Boolean), sa.Column("is_deleted", sa.Boolean), sa.Column("batch_id", sa.String(40)),
        ),
        skip=_temp_table("_scd2_skip", *_copy_columns(spec, k)),
        diff=_temp_table("_scd2_diff", *_copy_columns(spec, k), sa.Column("action", sa.String(1)), sa.Column("prev_sk", sa.BigInteger)),
        rows=_temp_table("_scd2_rows", *_copy_columns(spec, k + a), _hash_column()),
    )


_INDEXED = {"input": None, "stage": None, "changes": "prev_sk", "keys": None, "obs": "t", "hist": "valid_from",
            "skip": None, "rows": None, "diff": None}


def _create_temps(conn: sa.Connection, temps: _Temps, spec: DimensionSpec) -> None:
    keys = ", ".join(spec.natural_key)
    for name, extra in _INDEXED.items():
        t = getattr(temps, name)
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {t.name}")
        t.create(conn)
        columns = "prev_sk" if extra == "prev_sk" else (f"{keys}, {extra}" if extra else keys)
        conn.exec_driver_sql(f"CREATE INDEX ix{t.name} ON {t.name} ({columns})")


def _drop_temps(conn: sa.Connection, temps: _Temps) -> None:
    for t in temps.all():
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {t.name}")


def _analyze(conn: sa.Connection, table: sa.Table) -> None:
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"ANALYZE {table.name}")


# --------------------------------------------------------------------------- rows from Python


def _as_frame(spec: DimensionSpec, rows) -> pd.DataFrame:
    import pandas as pd

    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    needed = list(spec.natural_key) + list(spec.tracked)
    missing = [c for c in needed if c not in frame.columns]
    if missing and len(frame):
        raise Scd2Error(
            f"{spec.name}: the batch lacks column(s) {missing}; every row needs the natural key "
            f"{list(spec.natural_key)} and the tracked columns {list(spec.tracked)}."
        )
    return frame.reset_index(drop=True)


def write_canonical(conn: sa.Connection, spec: DimensionSpec, table: sa.Table, frame: pd.DataFrame,
                    columns: Sequence[str], row_numbers: bool = False) -> int:
    """Write `frame`'s `columns` (absent ones as NULL), canonically typed, into `table` with the bulk writer."""
    import pyarrow as pa

    n = len(frame)
    if n == 0:
        return 0
    numbers = list(range(1, n + 1))
    arrays, names = [], []
    for col in columns:
        type_ = spec.table.c[col].type
        kind = column_kind(type_)
        if col in frame.columns:
            values = canonical_column(spec.name, col, kind, frame[col], numbers)
        else:
            values = [None] * n
        target = arrow_type(type_)
        if kind == "num" and conn.dialect.name == "sqlite":  # SQLite keeps numbers as its own numbers
            values, target = [None if v is None else float(v) for v in values], pa.float64()
        arrays.append(pa.array(values, type=target))
        names.append(col)
    if row_numbers:
        arrays.append(pa.array(numbers, type=pa.int64()))
        names.append(ROW_NUMBER)
    return write_arrow(conn, table.name, pa.RecordBatch.from_arrays(arrays, names=names))


# --------------------------------------------------------------------------- the batch, in SQL


@dataclass
class StagedBatch:
    """Where the batch's rows are (`source`, clean of rejected rows), and what was rejected."""

    source: sa.FromClause
    rows_in: int
    errors: list[dict] = field(default_factory=list)
    skipped: int = 0

    @property
    def observed(self) -> int:
        return self.rows_in - len(self.errors)


def _from_query(spec: DimensionSpec, query: sa.Select) -> sa.Subquery:
    sub = query.subquery("batch_query")
    needed = list(spec.natural_key) + list(spec.tracked)
    missing = [c for c in needed if c not in sub.c]
    if missing:
        raise Scd2Error(f"{spec.name}: the batch query lacks column(s) {missing}; it must select the natural key "
                        f"{list(spec.natural_key)} and the tracked columns {list(spec.tracked)}.")
    columns = [
        sub.c[c].label(c) if c in sub.c else sa.cast(sa.null(), spec.table.c[c].type).label(c)
        for c in list(spec.natural_key) + list(spec.attributes)
    ]
    return sa.select(*columns).subquery("batch_rows")


def _key_text(values: Sequence) -> str:
    return "|".join("" if v is None else str(v) for v in values)


def stage_batch(conn: sa.Connection, spec: DimensionSpec, temps: _Temps, rows, key_unique: bool = False) -> StagedBatch:
    """Make the batch readable by SQL and set its rejected rows apart (`temps.skip`: duplicated keys).

    `key_unique`: the query cannot return a key twice or a missing key (a unique index and NOT NULL
    on it, as on a staging table), so the search for them is skipped."""
    keys = list(spec.natural_key)
    if isinstance(rows, sa.Select):
        src = _from_query(spec, rows)
        numbered = False
        if key_unique:
            return StagedBatch(source=src, rows_in=int(conn.execute(sa.select(sa.func.count()).select_from(src)).scalar()))
        no_key = sa.or_(*[src.c[k].is_(None) for k in keys])
        rows_in, null_keys = conn.execute(sa.select(sa.func.count(), sa.func.sum(sa.case((no_key, 1), else_=0)))).one()
    else:
        frame = _as_frame(spec, rows)
        rows_in = write_canonical(conn, spec, temps.input, frame, keys + list(spec.attributes), row_numbers=True)
        src, numbered = temps.input, True
        _analyze(conn, temps.input)
        null_keys = conn.execute(
            sa.select(sa.func.count()).where(sa.or_(*[src.c[k].is_(None) for k in keys]))
        ).scalar() if rows_in else 0
    batch = StagedBatch(source=src, rows_in=int(rows_in or 0))
    if not batch.rows_in:
        return batch
    number = src.c[ROW_NUMBER] if numbered else sa.null()
    if null_keys:
        for (n,) in conn.execute(sa.select(number).where(sa.or_(*[src.c[k].is_(None) for k in keys])).order_by(number)):
            where = f"row {n}" if n is not None else "a row"
            batch.errors.append(dict(
                row_number=n, record_key=None, field=",".join(keys), value=None, rule="natural_key_not_null",
                message=f"{spec.name}: {where} has no {'/'.join(keys)}; fill in the natural key or drop the row.",
            ))
    dup = (
        sa.select(*[src.c[k] for k in keys])
        .where(*[src.c[k].is_not(None) for k in keys])
        .group_by(*[src.c[k] for k in keys])
        .having(sa.func.count() > 1)
    )
    batch.skipped = conn.execute(temps.skip.insert().from_select(keys, dup)).rowcount or 0
    if batch.skipped:
        _analyze(conn, temps.skip)
        s = temps.skip
        found = conn.execute(
            sa.select(*[src.c[k] for k in keys], number)
            .select_from(src.join(s, sa.and_(*[s.c[k] == src.c[k] for k in keys])))
            .order_by(*[src.c[k] for k in keys], number)
        ).all()
        groups: dict[str, list] = {}
        for r in found:
            groups.setdefault(_key_text(r[:-1]), []).append(r[-1])
        for key_text in sorted(groups):
            numbers = groups[key_text]
            where = f"rows {', '.join(map(str, numbers))}" if numbered else "the batch query"
            for n in numbers:
                batch.errors.append(dict(
                    row_number=n, record_key=key_text, field=",".join(keys), value=key_text,
                    rule="duplicate_natural_key",
                    message=f"{spec.name}: natural key {'/'.join(keys)}={key_text} appears {len(numbers)} "
                    f"times in the batch ({where}); none of them was loaded. "
                    "Keep one row per key in the source and load it again.",
                ))
    if batch.errors:
        s = temps.skip
        batch.source = (
            sa.select(*[src.c[c] for c in keys + list(spec.attributes)])
            .where(*[src.c[k].is_not(None) for k in keys],
                   ~sa.exists().where(*[s.c[k] == src.c[k] for k in keys]))
            .subquery("clean_batch")
        )
    return batch
