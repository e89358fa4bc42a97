"""Change detection: `row_hash`, the md5 of a canonical text of a row's tracked columns.

The text is built in the warehouse's SQL from the stored, typed columns (`row_hash_sql`), the
same on SQLite and PostgreSQL; `row_hashes` computes the identical hash in Python. Per value,
by the column's declared kind (`values.column_kind`):

- missing: `\\N`; text: `<length>:<text>` (so NULL differs from `''` and no value can fake a separator);
- integers: decimal digits; booleans: `t` / `f`;
- timestamps: the instant in UTC, `YYYY-MM-DDTHH:MM:SS.ffffff` (the session time zone is never used);
- dates: `YYYY-MM-DD`; numbers: the exact decimal value, no exponent, no trailing zeros (`1.50` = `1.5`).

Values are joined with the unit separator (0x1f) in the tracked columns' declared order.
For text, integer, boolean, timestamp and date columns this is the text hashed before the hash
moved into SQL, so stored hashes stay valid; `HASH_VERSION` names the definition.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Optional

import sqlalchemy as sa

from ows_pipeline.scd2.values import canonical_column, column_kind
from ows_pipeline.warehouse.bulk import as_utc

if TYPE_CHECKING:
    import pandas as pd

HASH_VERSION = 2
NULL_TOKEN = "\\N"
SEPARATOR = "\x1f"
_TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"


# --------------------------------------------------------------------------- the text, in Python


def number_text(value) -> str:
    """The exact decimal value: no exponent, no trailing zeros, `-0` is `0`."""
    if not isinstance(value, decimal.Decimal):
        value = decimal.Decimal(repr(value) if isinstance(value, float) else value)
    if not value.is_finite():
        return "NaN" if value.is_nan() else ("Infinity" if value > 0 else "-Infinity")
    if value.is_zero():
        return "0"
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def value_text(kind: str, v) -> str:
    """The canonical text of one canonically typed value."""
    if v is None:
        return NULL_TOKEN
    if kind == "str":
        return f"{len(v)}:{v}"
    if kind == "bool":
        return "t" if v else "f"
    if kind == "int":
        return str(v)
    if kind == "ts":
        return as_utc(v).strftime(_TS_FORMAT)
    if kind == "date":
        return v.isoformat()
    return number_text(v)


def _inferred_kind(s: pd.Series) -> str:
    """The kind of a column of a frame without declared types."""
    import pandas as pd

    kind = s.dtype.kind
    if kind == "b" or isinstance(s.dtype, pd.BooleanDtype):
        return "bool"
    if kind in "iu":
        return "int"
    if kind == "M":
        return "ts"
    if kind == "f":
        return "num"
    sample = s.dropna()
    inferred = pd.api.types.infer_dtype(sample, skipna=True) if len(sample) else "empty"
    return {"integer": "int", "boolean": "bool", "floating": "num", "decimal": "num", "mixed-integer-float": "num",
            "datetime": "ts", "datetime64": "ts", "date": "date"}.get(inferred, "str")


def row_hashes(frame: pd.DataFrame, tracked: Sequence[str], table: Optional[sa.Table] = None) -> list[str]:
    """md5 hex per row of `frame` over `tracked`, equal to the warehouse's `row_hash` of the same values.

    `table`: the dimension table whose declared column types give each column's kind (without it,
    kinds are inferred from the frame)."""
    if len(frame) == 0:
        return []
    rows = list(range(1, len(frame) + 1))
    columns = []
    for col in tracked:
        kind = column_kind(table.c[col].type) if table is not None else _inferred_kind(frame[col])
        values = canonical_column("row_hashes", col, kind, frame[col].reset_index(drop=True), rows)
        columns.append([value_text(kind, v) for v in values])
    md5 = hashlib.md5
    return [md5(SEPARATOR.join(parts).encode()).hexdigest() for parts in zip(*columns)]


# --------------------------------------------------------------------------- SQLite functions


def _md5(text):
    return None if text is None else hashlib.md5(text.encode()).hexdigest()


def _utc_text(value):
    """A stored SQLite timestamp (text, any ISO form) as canonical UTC text."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value, dt.timezone.utc).strftime(_TS_FORMAT)
    return as_utc(dt.datetime.fromisoformat(str(value).strip())).strftime(_TS_FORMAT)


def _number_text(value):
    return None if value is None else number_text(value)


def register_sqlite_functions(conn: sa.Connection) -> None:
    """md5 and the two canonical texts SQLite lacks, as deterministic functions of this connection."""
    raw = conn.connection.dbapi_connection
    raw.create_function("md5", 1, _md5, deterministic=True)
    raw.create_function("ows_utc_text", 1, _utc_text, deterministic=True)
    raw.create_function("ows_number_text", 1, _number_text, deterministic=True)


# --------------------------------------------------------------------------- the text, in SQL


def _piece(kind: str, type_: sa.types.TypeEngine, c, dialect: str):
    null = sa.literal(NULL_TOKEN, sa.Text)
    if kind == "str":
        text = sa.cast(c, sa.Text)
        return sa.case((c.is_(None), null), else_=sa.cast(sa.func.length(text), sa.Text) + sa.literal(":", sa.Text) + text)
    if kind == "bool":
        return sa.case((c.is_(None), null), (c, sa.literal("t", sa.Text)), else_=sa.literal("f", sa.Text))
    if kind == "int":
        text = sa.cast(c, sa.Text)
    elif dialect == "postgresql":
        if kind == "ts":
            utc = sa.func.timezone("UTC", c) if getattr(type_, "timezone", False) else c
            text = sa.func.to_char(utc, 'YYYY-MM-DD"T"HH24:MI:SS.US')
        elif kind == "date":
            text = sa.func.to_char(c, "YYYY-MM-DD")
        else:
            number = c if not isinstance(type_, sa.Float) else sa.cast(sa.cast(c, sa.Text), sa.Numeric)
            text = sa.cast(sa.func.trim_scale(number), sa.Text)
    elif kind == "ts":
        text = sa.func.ows_utc_text(c)
    elif kind == "date":
        text = sa.func.substr(sa.cast(c, sa.Text), 1, 10)
    else:
        text = sa.func.ows_number_text(c)
    return sa.func.coalesce(text, null)


def row_hash_sql(table: sa.Table, source, tracked: Sequence[str], dialect: str):
    """The SQL expression of `row_hash` over `source`'s columns (named like `table`'s)."""
    pieces = []
    for col in tracked:
        type_ = table.c[col].type
        pieces.append(_piece(column_kind(type_), type_, source.c[col], dialect))
    text = pieces[0]
    for p in pieces[1:]:
        text = text + sa.literal(SEPARATOR, sa.Text) + p
    return sa.func.md5(text)
