"""Fast bulk writes into a warehouse table: PostgreSQL COPY, SQLite executemany, Core elsewhere.

Timestamps are written as UTC: aware on PostgreSQL, naive on SQLite (SQLAlchemy's format).
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterable, Sequence

import sqlalchemy as sa

_UTC = dt.timezone.utc


def as_utc(value: dt.datetime) -> dt.datetime:
    """An aware UTC datetime; naive values are taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=_UTC)
    return value.astimezone(_UTC)


def _pg_text(value) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, str):
        if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
            value = value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
        return value
    if isinstance(value, dt.datetime):
        return as_utc(value).isoformat()
    if isinstance(value, bool):
        return "t" if value else "f"
    return str(value)


def _sqlite_value(value):
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(_UTC).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def insert_rows(conn: sa.Connection, table: sa.Table | str, columns: Sequence[str], rows: Iterable[Sequence]) -> int:
    """Insert `rows` (tuples in `columns` order) into `table` inside the caller's transaction.

    Returns the number of rows written. `table` may be the name of a temporary table.
    """
    name = table if isinstance(table, str) else table.name
    dialect = conn.dialect.name
    rows = rows if isinstance(rows, list) else list(rows)
    if not rows:
        return 0
    quoted = ", ".join(conn.dialect.identifier_preparer.quote(c) for c in columns)
    qname = conn.dialect.identifier_preparer.quote(name)
    if dialect == "postgresql":
        buf = io.StringIO()
        write = buf.write
        for row in rows:
            write("\t".join(map(_pg_text, row)))
            write("\n")
        buf.seek(0)
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            cursor.copy_expert(f"COPY {qname} ({quoted}) FROM STDIN", buf)
        finally:
            cursor.close()
    elif dialect == "sqlite":
        marks = ", ".join("?" for _ in columns)
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            cursor.executemany(
                f"INSERT INTO {qname} ({quoted}) VALUES ({marks})",
                [tuple(_sqlite_value(v) for v in row) for row in rows],
            )
        finally:
            cursor.close()
    else:
        target = table if isinstance(table, sa.Table) else sa.table(name, *(sa.column(c) for c in columns))
        conn.execute(sa.insert(target), [dict(zip(columns, row)) for row in rows])
    return len(rows)
