"""Typing and cleaning of one batch of OWS rows, vectorised with pandas.

Strings are trimmed (empty becomes null), codes upper-cased, numbers made nullable integers,
timestamps UTC, business dates dates, Y/N flags booleans. A value that cannot be typed
becomes null in the clean frame and is reported as a `TypeIssue` (rule `valid_type`), so the
row is quarantined rather than silently altered.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa

from ows_pipeline.source.schema import SOURCE_TABLES_BY_NAME
from ows_pipeline.staging.suites import CODE_COLUMNS, FLAG_COLUMNS

_FLAGS = {"Y": True, "N": False, "TRUE": True, "FALSE": False, "1": True, "0": False}


class MissingColumnsError(ValueError):
    """The input lacks columns of the OWS table."""


@dataclass(frozen=True)
class TypeIssue:
    """Values of one column that could not be typed: positions in the frame and a message."""

    column: str
    positions: np.ndarray
    expected: str


def column_kind(column: sa.Column) -> str:
    """How a source column is typed in staging: str, code, flag, int, timestamp or date."""
    if column.name in FLAG_COLUMNS:
        return "flag"
    if isinstance(column.type, sa.String):
        return "code" if column.name in CODE_COLUMNS else "str"
    if isinstance(column.type, sa.Integer):
        return "int"
    if isinstance(column.type, sa.DateTime):
        return "timestamp"
    if isinstance(column.type, sa.Date):
        return "date"
    raise TypeError(f"no staging type for column {column.name} ({column.type})")


EXPECTED_DTYPES = {"str": "str", "code": "str", "flag": "boolean", "int": "Int64",
                   "timestamp": "datetime64[us, UTC]", "date": "datetime64[us]"}


def _strings(values: pd.Series, upper: bool = False) -> pd.Series:
    if values.dtype == object:
        # Numbers from spreadsheets: 12.0 stands for "12".
        values = values.map(lambda v: str(int(v)) if isinstance(v, float) and v.is_integer() else v)
    if upper:  # codes have few distinct values: clean each once
        return on_distinct(values, lambda u: _strings(u).str.upper())
    out = values.astype("str").str.strip()
    return out.mask(out == "")


def on_distinct(values: pd.Series, transform) -> pd.Series:
    """`transform` applied to the distinct non-null values only, spread back over `values`."""
    codes, uniques = pd.factorize(values)
    done = transform(pd.Series(uniques, dtype=values.dtype if len(uniques) else object)).to_numpy(dtype=object)
    out = np.empty(len(values), dtype=object)
    out[:] = None
    present = codes >= 0
    out[present] = done[codes[present]]
    return pd.Series(out, index=values.index).astype("str")


def _integers(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    if pd.api.types.is_integer_dtype(values.dtype):
        return values.astype("Int64"), np.zeros(len(values), dtype=bool)
    raw = values
    if not pd.api.types.is_numeric_dtype(values.dtype):
        raw = values.astype("str").str.strip().mask(lambda s: s == "")
    numbers = pd.to_numeric(raw, errors="coerce")
    floats = numbers.astype("Float64")
    integral = (floats.round() == floats) & (floats.abs() < 2**31)
    present = values.notna() & (values.astype("str").str.strip() != "")
    bad = (present & ~integral.fillna(False)).to_numpy(dtype=bool, copy=True)
    result = floats.where(~pd.Series(bad, index=values.index)).round().astype("Int64")
    return result, bad


def _timestamps(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        out = values.dt.tz_convert("UTC")
        return out.astype("datetime64[us, UTC]"), np.zeros(len(values), dtype=bool)
    if pd.api.types.is_datetime64_dtype(values.dtype):
        return values.dt.tz_localize("UTC").astype("datetime64[us, UTC]"), np.zeros(len(values), dtype=bool)
    present = values.notna()
    if values.dtype != object or values.map(type).eq(str).all():
        text = values.astype("str").str.strip().mask(lambda s: s == "")
        present = text.notna()
        parsed = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
        retry = parsed.isna() & present
        if retry.any():
            parsed[retry] = pd.to_datetime(text[retry], utc=True, errors="coerce", format="mixed")
    else:  # datetime objects (database drivers, spreadsheets), maybe mixed with text
        blank = values.map(lambda v: isinstance(v, str) and not v.strip()).to_numpy(dtype=bool)
        present = values.notna() & ~blank
        number = values.map(_is_number).to_numpy(dtype=bool)  # not a time: would read as epoch offsets
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "could not infer format": the retry handles it
            parsed = pd.to_datetime(values.where(~(blank | number)), utc=True, errors="coerce")
        retry = (parsed.isna() & present).to_numpy(dtype=bool, copy=True)
        retry &= ~number
        if retry.any():
            parsed[retry] = pd.to_datetime(values[retry].map(_one_timestamp), utc=True, errors="coerce")
    bad = (present & parsed.isna()).to_numpy(dtype=bool)
    return parsed.astype("datetime64[us, UTC]"), bad


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and value == value


def _one_timestamp(value):
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return pd.NaT
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return pd.NaT
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        return pd.NaT
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _dates(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    stamps, bad = _timestamps(values)
    return stamps.dt.tz_localize(None).dt.floor("D").astype("datetime64[us]"), bad


def _flags(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("boolean"), np.zeros(len(values), dtype=bool)
    text = values.astype("str").str.strip().str.upper().mask(lambda s: s == "")
    flags = text.map(_FLAGS, na_action="ignore")
    bad = (text.notna() & flags.isna()).to_numpy(dtype=bool)
    return flags.astype("boolean"), bad


def check_columns(frame: pd.DataFrame, table_name: str) -> None:
    """Raise `MissingColumnsError` naming the table and the columns `frame` lacks."""
    table = SOURCE_TABLES_BY_NAME[table_name].table
    missing = [c.name for c in table.columns if c.name not in frame.columns]
    if missing:
        raise MissingColumnsError(
            f"{table_name}: missing column(s) {', '.join(missing)}; "
            f"expected the columns {', '.join(c.name for c in table.columns)}."
        )


def clean_frame(frame: pd.DataFrame, table_name: str) -> tuple[pd.DataFrame, list[TypeIssue]]:
    """The typed, cleaned columns of OWS table `table_name` and the values that could not be typed.

    The result has a fresh RangeIndex (positions in `frame`) and exactly the source columns.
    """
    table = SOURCE_TABLES_BY_NAME[table_name].table
    check_columns(frame, table_name)
    frame = frame.reset_index(drop=True)
    out: dict[str, pd.Series] = {}
    issues: list[TypeIssue] = []
    for column in table.columns:
        kind = column_kind(column)
        values = frame[column.name]
        bad = None
        if kind in ("str", "code"):
            cleaned = _strings(values, upper=kind == "code")
        elif kind == "int":
            cleaned, bad = _integers(values)
        elif kind == "timestamp":
            cleaned, bad = _timestamps(values)
        elif kind == "date":
            cleaned, bad = _dates(values)
        else:
            cleaned, bad = _flags(values)
        out[column.name] = cleaned.astype(EXPECTED_DTYPES[kind])
        if bad is not None and bad.any():
            issues.append(TypeIssue(column.name, np.flatnonzero(bad), _EXPECTED_TEXT[kind]))
    return pd.DataFrame(out), issues


_EXPECTED_TEXT = {"int": "a whole number", "timestamp": "a timestamp (ISO 8601, UTC)",
                  "date": "a date (YYYY-MM-DD)", "flag": "Y or N"}


def dtype_problems(clean: pd.DataFrame, table_name: str) -> list[str]:
    """Columns whose pandas dtype is not the staging type (pandas 3 aware: `str`, `Int64`, ...)."""
    table = SOURCE_TABLES_BY_NAME[table_name].table
    problems = []
    for column in table.columns:
        expected = EXPECTED_DTYPES[column_kind(column)]
        actual = clean[column.name].dtype
        if str(actual) != expected:
            problems.append(f"{column.name}: {actual}, expected {expected}")
    return problems
