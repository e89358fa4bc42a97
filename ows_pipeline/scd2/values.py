"""One canonical typing of a batch's values, by the dimension's declared column types.

Every value is brought to one Python type per column kind before it is hashed or written, so
the same value arriving as `object`, `string`, `Int64`, `boolean`, `Float64`, numpy, naive or
aware timestamps, `Decimal('1.50')` or `1.5` is the same value on SQLite and PostgreSQL:

- `str`: `str`; `int`: exact Python `int` (never through a float); `bool`: `bool`;
- `ts`: aware UTC `datetime` cut to microseconds (naive values are UTC);
- `date`: `datetime.date`; `num`: `Decimal` by value;
- missing (`None`, `NaN`, `pd.NA`, `NaT`): `None`.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Sequence
from typing import TYPE_CHECKING

import sqlalchemy as sa

from ows_pipeline.warehouse.bulk import as_utc
from ows_pipeline.warehouse.schema.scd2 import Scd2Error

if TYPE_CHECKING:
    import pandas as pd

EXACT_FLOAT_INTEGER = 2**53


def column_kind(type_: sa.types.TypeEngine) -> str:
    """The canonical kind of a declared column type: str, int, bool, ts, date or num."""
    if isinstance(type_, sa.Boolean):
        return "bool"
    if isinstance(type_, sa.Integer):
        return "int"
    if isinstance(type_, sa.DateTime):
        return "ts"
    if isinstance(type_, sa.Date):
        return "date"
    if isinstance(type_, sa.Numeric):
        return "num"
    return "str"


def _bad(name: str, column: str, row: int, value, fix: str) -> Scd2Error:
    return Scd2Error(f"{name}: row {row}, column {column}: {value!r} {fix}")


def _to_int(v):
    if isinstance(v, bool):
        raise ValueError("is a boolean, not an integer")
    if isinstance(v, int):
        return v
    if hasattr(v, "item") and not isinstance(v, (float, decimal.Decimal)):
        return _to_int(v.item())
    if isinstance(v, float):
        if not v.is_integer():
            raise ValueError("is not a whole number")
        if abs(v) > EXACT_FLOAT_INTEGER:
            raise ValueError(
                "is a floating-point number above 2^53, which cannot hold every integer exactly; "
                "pass the column as Int64 or Python integers"
            )
        return int(v)
    if isinstance(v, decimal.Decimal):
        if v != v.to_integral_value():
            raise ValueError("is not a whole number")
        return int(v)
    if isinstance(v, str):
        return int(v.strip())
    raise ValueError("is not an integer")


def _to_bool(v):
    if isinstance(v, bool):
        return v
    if hasattr(v, "item"):
        return _to_bool(v.item())
    if isinstance(v, (int, float)) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in ("true", "false", "t", "f", "1", "0"):
        return v.strip().lower() in ("true", "t", "1")
    raise ValueError("is not a boolean (true/false)")


def _to_date(v):
    if isinstance(v, dt.datetime):
        return v.date()
    if isinstance(v, dt.date):
        return v
    if isinstance(v, str):
        return dt.date.fromisoformat(v.strip())
    raise ValueError("is not a date")


def _to_decimal(v):
    if isinstance(v, bool):
        raise ValueError("is a boolean, not a number")
    if isinstance(v, decimal.Decimal):
        return v
    if isinstance(v, int):
        return decimal.Decimal(v)
    if hasattr(v, "item"):
        return _to_decimal(v.item())
    if isinstance(v, float):
        return decimal.Decimal(repr(v))
    if isinstance(v, str):
        return decimal.Decimal(v.strip())
    raise ValueError("is not a number")


def _to_str(v):
    return v if isinstance(v, str) else str(v)


_CONVERT = {"int": _to_int, "bool": _to_bool, "date": _to_date, "num": _to_decimal, "str": _to_str}


def canonical_column(name: str, column: str, kind: str, s: pd.Series, row_numbers: Sequence[int]) -> list:
    """The values of one column in their canonical Python type (None for missing)."""
    import pandas as pd

    if kind == "ts":
        try:
            ts = pd.to_datetime(s, utc=True, format="mixed") if s.dtype.kind != "M" or s.dt.tz is None else s
        except (ValueError, TypeError) as exc:
            raise Scd2Error(f"{name}: column {column} holds a value that is not a timestamp ({exc}); "
                            "pass datetimes or ISO 8601 text") from None
        if getattr(ts.dt, "tz", None) is None:
            ts = ts.dt.tz_localize("UTC")
        ts = ts.dt.tz_convert("UTC").dt.floor("us")
        return [None if v is pd.NaT else v.to_pydatetime() for v in ts.tolist()]
    if kind == "int" and s.dtype.kind in "iu" and not s.hasnans:  # numpy or Int64 without a missing value
        return s.tolist()
    if kind == "bool" and s.dtype.kind == "b" and not s.hasnans:
        return s.tolist()
    if kind == "str" and s.dtype.kind == "O" and not s.hasnans:
        values = s.tolist()
        if all(type(v) is str for v in values):
            return values
    missing = s.isna().tolist()
    convert = _CONVERT[kind]
    out = []
    for v, gone, n in zip(s.astype(object).tolist(), missing, row_numbers):
        if gone:
            out.append(None)
            continue
        try:
            out.append(convert(v))
        except (ValueError, TypeError, ArithmeticError) as exc:
            fix = str(exc) if isinstance(exc, ValueError) and str(exc).startswith("is ") else f"is not a valid {kind} value"
            raise _bad(name, column, n, v, fix + ".") from None
    return out


def written_value(kind: str, value, dialect: str):
    """A canonical value as the bulk writer takes it (SQLite stores decimals as its numbers)."""
    if value is None:
        return None
    if kind == "num" and dialect == "sqlite":
        return float(value)
    if kind == "ts":
        return as_utc(value)
    return value
