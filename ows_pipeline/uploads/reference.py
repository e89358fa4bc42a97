"""Loading a reference list (feed SLAs, project metadata) as the new full content of its table.

Each upload is the whole list: keys absent from the file are removed, changed rows replaced,
unchanged rows left as they are (their bookkeeping names the upload that last changed them).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import asdict, dataclass

import sqlalchemy as sa

from ows_pipeline.uploads.schema import Kind, ValidatedRows
from ows_pipeline.warehouse.bulk import insert_rows


@dataclass(frozen=True)
class KeyCounts:
    """What an upload did to the keys of its target: the NEW vs UPDATE view users expect."""

    new: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return f"{self.new} new, {self.changed} changed, {self.unchanged} unchanged, {self.removed} removed"


def row_hash(values) -> str:
    """md5 hex of the tracked values, with a separator no value can hold and a marker for null."""
    text = "\x1f".join("\x00" if v is None else str(v) for v in values)
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def lock_table(conn: sa.Connection, table: sa.Table) -> None:
    """Serialise writers of a reference table (PostgreSQL); SQLite transactions are already exclusive."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text(f'LOCK TABLE "{table.name}" IN SHARE ROW EXCLUSIVE MODE'))


def load_reference(
    conn: sa.Connection,
    table: sa.Table,
    kind: Kind,
    rows: ValidatedRows,
    *,
    batch_id: str,
    source_file: str,
    loaded_at: dt.datetime,
) -> KeyCounts:
    """Replace the content of `table` by `rows` inside the caller's transaction; count the key changes."""
    lock_table(conn, table)
    key = kind.key
    assert len(key) == 1, "reference lists have a single-column key"
    key_name = key[0]
    names = kind.column_names
    tracked = [n for n in names if n != key_name]
    existing = {k: h for k, h in conn.execute(sa.select(table.c[key_name], table.c._row_hash))}
    incoming: dict = {}
    for record in rows.records():
        incoming[record[key_name]] = (record, row_hash(record[n] for n in tracked))
    new = [k for k in incoming if k not in existing]
    changed = [k for k in incoming if k in existing and existing[k] != incoming[k][1]]
    removed = [k for k in existing if k not in incoming]
    unchanged = len(incoming) - len(new) - len(changed)
    gone = removed + changed
    for start in range(0, len(gone), 500):
        conn.execute(sa.delete(table).where(table.c[key_name].in_(gone[start : start + 500])))
    columns = names + ["_row_hash", "_batch_id", "_source_file", "_loaded_at"]
    insert_rows(
        conn,
        table,
        columns,
        [
            [incoming[k][0][n] for n in names] + [incoming[k][1], batch_id, source_file, loaded_at]
            for k in new + changed
        ],
    )
    return KeyCounts(new=len(new), changed=len(changed), unchanged=unchanged, removed=len(removed))
