"""The one shape of a `data_errors` row and its bulk writer, for every stage that rejects or warns.

A record is a `DataError` (or a mapping, or a pandas frame, with the same field names). The full
value is stored (`data_errors.value` is unbounded text); `shorten` cuts a value for display in
metadata, logs and messages. Labels (record key, field, rule, source file) are cut to their
column sizes so that a long key never fails the write.

    write_data_errors(conn, [DataError("unique_key", "ERROR", "duplicate key", field="feed_id",
                                       value="12", row_number=3, record_key="feed_id=12")],
                      batch_id=batch_id, asset_key="dim_feed")
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Optional

import sqlalchemy as sa

from ows_pipeline.warehouse.bulk import insert_rows
from ows_pipeline.warehouse.schema.ledger import data_errors

COLUMNS = ("batch_id", "asset_key", "source_file", "row_number", "record_key", "field", "value",
           "rule", "severity", "message", "created_at")
"""`data_errors` columns in the order the writer uses (the table's `error_id` is generated)."""

DISPLAY_CHARS = 200
"""How much of a value metadata, logs and messages show."""

_LABEL_LIMITS = {c.name: c.type.length for c in data_errors.columns
                 if isinstance(c.type, sa.String) and getattr(c.type, "length", None)}


@dataclass(frozen=True)
class DataError:
    """One rejected or warned value."""

    rule: str
    severity: str  # ERROR (the row was rejected) or WARN (it loaded)
    message: str
    field: Optional[str] = None
    value: Any = None
    row_number: Optional[int] = None
    record_key: Optional[str] = None


def shorten(value: Any, limit: int = DISPLAY_CHARS) -> Optional[str]:
    """`value` as text cut to `limit` characters, saying how long it was; None stays None."""
    if value is None:
        return None
    text = str(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text):,} characters)"


def _missing(value) -> bool:
    if value is None:
        return True
    try:
        return value != value  # NaN, NaT, pd.NA
    except (TypeError, ValueError):
        return False


def _label(name: str, value) -> Optional[str]:
    if _missing(value):
        return None
    text = str(value)
    limit = _LABEL_LIMITS.get(name)
    return text[:limit] if limit and len(text) > limit else text


def _records(errors) -> Iterable[Mapping[str, Any]]:
    if hasattr(errors, "to_dict") and hasattr(errors, "columns"):  # a pandas frame
        return errors.to_dict("records")
    return (asdict(e) if isinstance(e, DataError) else e for e in errors)


def error_rows(
    errors, *, batch_id: str, asset_key: str, source_file: Optional[str] = None,
    created_at: Optional[dt.datetime] = None,
) -> list[tuple]:
    """The records as tuples in `COLUMNS` order, ready for the bulk writer.

    A record's own `batch_id`, `asset_key`, `source_file` or `created_at` wins over the arguments.
    """
    created_at = created_at or dt.datetime.now(dt.timezone.utc)
    where = {"batch_id": batch_id, "asset_key": asset_key, "source_file": source_file, "created_at": created_at}
    rows = []
    for record in _records(errors):
        get = lambda name: record.get(name) if not _missing(record.get(name)) else where.get(name)  # noqa: E731
        number = record.get("row_number")
        value = record.get("value")
        rows.append((
            _label("batch_id", get("batch_id")), _label("asset_key", get("asset_key")),
            _label("source_file", get("source_file")), None if _missing(number) else int(number),
            _label("record_key", record.get("record_key")), _label("field", record.get("field")),
            None if _missing(value) else str(value), _label("rule", record["rule"]),
            _label("severity", record["severity"]), None if _missing(record.get("message")) else str(record["message"]),
            get("created_at"),
        ))
    return rows


def write_data_errors(
    conn: sa.Connection, errors, *, batch_id: str, asset_key: str, source_file: Optional[str] = None,
    created_at: Optional[dt.datetime] = None,
) -> int:
    """Write `errors` (DataErrors, mappings or a frame) to `data_errors` in the caller's transaction."""
    rows = error_rows(errors, batch_id=batch_id, asset_key=asset_key, source_file=source_file,
                      created_at=created_at)
    return insert_rows(conn, data_errors, COLUMNS, rows)
