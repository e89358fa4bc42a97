"""Change detection: `row_hash`, the md5 of a row's tracked columns, typed and NULL-safe."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ows_pipeline.warehouse.bulk import as_utc

if TYPE_CHECKING:
    import pandas as pd


NULL_TOKEN = "\\N"


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
