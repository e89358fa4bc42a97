"""Staging of one batch: its rows as a frame, rejected rows apart, the temporary tables of a merge."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from ows_pipeline.scd2.hashing import NULL_TOKEN
from ows_pipeline.source.schema import TS
from ows_pipeline.warehouse.bulk import _sqlite_value, as_utc, insert_rows
from ows_pipeline.warehouse.schema.scd2 import DimensionSpec, Scd2Error

if TYPE_CHECKING:
    import pandas as pd


class DuplicateKeyError(Scd2Error):
    """The batch holds a natural key more than once and `on_duplicate='fail'`."""


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
