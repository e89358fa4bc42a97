"""Bulk write of a typed staging frame, column-wise: PostgreSQL COPY text, SQLite executemany.

Values are converted per column with pandas (not per value in Python), which is most of
the cost of loading a million rows. Other databases go through
`ows_pipeline.warehouse.bulk.insert_rows` with Python values.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np
import pandas as pd
import sqlalchemy as sa

from ows_pipeline.warehouse.bulk import insert_rows

_PG_SPECIAL = ("\\", "\t", "\n", "\r")


def _missing(values: pd.Series) -> np.ndarray:
    return values.isna().to_numpy(dtype=bool)


def _with_nulls(values: np.ndarray, missing: np.ndarray, null) -> np.ndarray:
    if missing.any():
        values = values.astype(object, copy=True)
        values[missing] = null
    return values


def _pg_text(values: pd.Series, kind: str) -> np.ndarray:
    """COPY text of one column; `\\N` for null."""
    missing = _missing(values)
    if kind == "timestamp":
        # The plain ISO format takes pandas' fast path; a literal suffix in the format does not.
        stamps = values.dt.tz_convert("UTC").dt.tz_localize(None).dt.strftime("%Y-%m-%d %H:%M:%S.%f")
        text = np.char.add(stamps.to_numpy(dtype=str, na_value=""), "+00:00").astype(object)
    elif kind == "date":
        text = values.dt.strftime("%Y-%m-%d").to_numpy(dtype=object)
    elif kind == "int":
        text = values.to_numpy(dtype="int64", na_value=0).astype(str).astype(object)
    elif kind == "flag":
        text = np.where(values.to_numpy(dtype=bool, na_value=False), "t", "f").astype(object)
    else:
        text = values.to_numpy(dtype=object, na_value=None)
        present = text[~missing]
        joined = "".join(present)
        if any(ch in joined for ch in _PG_SPECIAL):
            text = np.array([_pg_escape(v) if v is not None else None for v in text], dtype=object)
    return _with_nulls(text, missing, "\\N")


def _pg_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _sqlite_values(values: pd.Series, kind: str) -> np.ndarray:
    """SQLite-native values (SQLAlchemy's text formats for dates and timestamps); None for null."""
    missing = _missing(values)
    if kind == "timestamp":
        out = values.dt.tz_convert("UTC").dt.tz_localize(None).dt.strftime("%Y-%m-%d %H:%M:%S.%f").to_numpy(object)
    elif kind == "date":
        out = values.dt.strftime("%Y-%m-%d").to_numpy(dtype=object)
    elif kind == "int":
        out = np.array(values.to_numpy(dtype="int64", na_value=0).tolist(), dtype=object)
    elif kind == "flag":
        out = np.array(values.to_numpy(dtype=bool, na_value=False).astype(int).tolist(), dtype=object)
    else:
        out = values.to_numpy(dtype=object)
    return _with_nulls(out, missing, None)


def _python_values(values: pd.Series, kind: str) -> np.ndarray:
    missing = _missing(values)
    if kind == "timestamp":
        out = np.array(values.dt.to_pydatetime(), dtype=object)
    elif kind == "date":
        out = values.dt.date.to_numpy(dtype=object)
    elif kind == "int":
        out = np.array(values.to_numpy(dtype="int64", na_value=0).tolist(), dtype=object)
    elif kind == "flag":
        out = np.array(values.to_numpy(dtype=bool, na_value=False).tolist(), dtype=object)
    else:
        out = values.to_numpy(dtype=object)
    return _with_nulls(out, missing, None)


def write_frame(
    conn: sa.Connection, table: sa.Table | str, frame: pd.DataFrame, kinds: Mapping[str, str],
    constants: Mapping[str, object] | None = None,
) -> int:
    """Insert the `kinds` columns of `frame` (kind: str, code, int, timestamp, date, flag) plus
    `constants` (one value for every row) into `table`, inside the caller's transaction."""
    if not len(frame):
        return 0
    constants = dict(constants or {})
    names = list(kinds) + list(constants)
    name = table if isinstance(table, str) else table.name
    dialect = conn.dialect.name
    quote = conn.dialect.identifier_preparer.quote
    columns_sql = ", ".join(quote(c) for c in names)
    n = len(frame)
    if dialect == "postgresql":
        arrays = [_pg_text(frame[c], k) for c, k in kinds.items()]
        arrays += [np.full(n, "\\N" if v is None else str(v), dtype=object) for v in constants.values()]
        buffer = io.StringIO()
        buffer.writelines("\t".join(row) + "\n" for row in zip(*arrays))
        buffer.seek(0)
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            cursor.copy_expert(f"COPY {quote(name)} ({columns_sql}) FROM STDIN", buffer)
        finally:
            cursor.close()
    elif dialect == "sqlite":
        arrays = [_sqlite_values(frame[c], k) for c, k in kinds.items()]
        arrays += [np.full(n, v, dtype=object) for v in constants.values()]
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            marks = ", ".join("?" for _ in names)
            cursor.executemany(f"INSERT INTO {quote(name)} ({columns_sql}) VALUES ({marks})", zip(*arrays))
        finally:
            cursor.close()
    else:
        arrays = [_python_values(frame[c], k) for c, k in kinds.items()]
        arrays += [np.full(n, v, dtype=object) for v in constants.values()]
        insert_rows(conn, table, names, list(zip(*arrays)))
    return n
