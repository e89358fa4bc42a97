"""Writing demo column batches: ADBC bulk ingest for a fresh source, the warehouse bulk writer inside an advance.

A fresh SQLite or PostgreSQL source is written through ADBC from Arrow tables built straight from
the numpy columns (COPY BINARY on PostgreSQL, a prepared insert on SQLite): no Python object per
value. An advance writes in the same transaction as its deletes, through
`ows_pipeline.warehouse.bulk.write_arrow` (COPY, executemany, or SQLAlchemy Core on Oracle).
Timestamps are UTC: timestamptz on PostgreSQL, SQLAlchemy's text on SQLite.
"""

from __future__ import annotations

import functools
import queue
import threading

import numpy as np
import sqlalchemy as sa

from ows_pipeline.demo.batches import Batch
from ows_pipeline.warehouse.bulk import write_arrow

DAY = 86_400
ADBC_DIALECTS = ("sqlite", "postgresql")
"""Databases a fresh source is written to by ADBC bulk ingest; others take the bulk writer."""


@functools.lru_cache(maxsize=1)
def _times_of_day() -> np.ndarray:
    """'HH:MM:SS' of every second of a day, as bytes rows."""
    return np.array([f"{x // 3600:02d}:{x // 60 % 60:02d}:{x % 60:02d}" for x in range(DAY)], dtype="S8").view(
        np.uint8
    ).reshape(-1, 8)


def timestamp_text(seconds: np.ndarray, suffix: str) -> np.ndarray:
    """'YYYY-MM-DD HH:MM:SS<suffix>' of seconds since the epoch, as a fixed-width bytes array."""
    seconds = np.asarray(seconds, dtype=np.int64)
    width = 19 + len(suffix)
    if not len(seconds):
        return np.zeros(0, dtype=f"S{width}")
    days = seconds // DAY
    first = int(days.min())
    dates = np.datetime_as_string(np.arange(first, int(days.max()) + 1).astype("datetime64[D]")).astype("S10")
    out = np.empty((len(seconds), width), dtype=np.uint8)
    out[:, :10] = dates.view(np.uint8).reshape(-1, 10)[days - first]
    out[:, 10] = ord(" ")
    out[:, 11:19] = _times_of_day()[seconds - days * DAY]
    out[:, 19:] = np.frombuffer(suffix.encode(), dtype=np.uint8)
    return out.view(f"S{width}").ravel()


def insert_batch(conn: sa.Connection, batch: Batch) -> int:
    """Insert a batch inside the caller's SQLAlchemy transaction."""
    return write_arrow(conn, batch.table, arrow_table(batch))


def arrow_table(batch: Batch, sqlite_text: bool = False):
    """The batch as an Arrow table with the column types of the OWS tables; with `sqlite_text`,
    timestamps and dates as SQLAlchemy's SQLite text (what ADBC's SQLite ingest must be given)."""
    import pyarrow as pa

    arrays = {}
    for name, column in batch.columns.items():
        null = column.null if column.null is not None and column.null.any() else None
        if column.kind == "int":
            wide = isinstance(batch.table.c[name].type, sa.BigInteger)
            arrays[name] = pa.array(column.values, type=pa.int64() if wide else pa.int32(), mask=null)
        elif column.kind == "ts" and not sqlite_text:
            arrays[name] = pa.array(column.values, type=pa.timestamp("s", tz="UTC"), mask=null)
        elif column.kind == "ts":
            arrays[name] = _fixed_width_strings(timestamp_text(column.values, ".000000"), null)
        elif column.kind == "date" and not sqlite_text:
            arrays[name] = pa.array(column.values.astype(np.int32), type=pa.date32())
        elif column.kind == "date":
            arrays[name] = pa.array(np.datetime_as_string(column.values.astype("datetime64[D]")), type=pa.string())
        else:
            arrays[name] = pa.array(column.values, type=pa.string())
    return pa.table(arrays)


def _fixed_width_strings(text: np.ndarray, null: np.ndarray | None):
    """An Arrow string array over the bytes of a fixed-width bytes array, without a copy per value."""
    import pyarrow as pa

    width, n = text.dtype.itemsize, len(text)
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    validity = None if null is None else pa.py_buffer(np.packbits(~null, bitorder="little"))
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(text).view(np.uint8)),
                                       validity, null_count=-1 if null is None else int(null.sum()))


class _Ingest:
    """An ADBC connection to the source database, one transaction at a time."""

    def __init__(self, engine: sa.Engine, schema: str | None):
        url = engine.url
        self.dialect, self.schema = engine.dialect.name, schema
        if self.dialect == "postgresql":
            import adbc_driver_postgresql.dbapi as adbc

            self.conn = adbc.connect(url.set(drivername="postgresql").render_as_string(hide_password=False))
        else:
            import adbc_driver_sqlite.dbapi as adbc

            self.conn = adbc.connect(url.database)

    def write(self, batch: Batch) -> int:
        with self.conn.cursor() as cursor:
            options = {"db_schema_name": self.schema} if self.schema else {}
            data = arrow_table(batch, sqlite_text=self.dialect == "sqlite")
            cursor.adbc_ingest(batch.table.name, data, mode="append", **options)
        return len(batch)

    def commit(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()  # rolls back an unfinished transaction


class _Core:
    """A SQLAlchemy connection, one transaction at a time (databases without ADBC ingest here)."""

    def __init__(self, engine: sa.Engine):
        self.conn = engine.connect()
        self.conn.begin()

    def write(self, batch: Batch) -> int:
        return insert_batch(self.conn, batch)

    def commit(self) -> None:
        self.conn.commit()
        self.conn.begin()

    def close(self) -> None:
        self.conn.close()


def _bulk_connection(engine: sa.Engine, schema: str | None):
    if engine.dialect.name in ADBC_DIALECTS:
        try:
            return _Ingest(engine, schema)
        except ImportError:  # the ADBC drivers are declared dependencies; without them, the slower path
            pass
    return _Core(engine)


_COMMIT = object()


class BackgroundWriter:
    """Bulk writes on a thread of their own; `commit()` ends a transaction; errors surface in the caller.

    The queue holds a few batches only, so memory stays flat however large a day is.
    """

    def __init__(self, engine: sa.Engine, schema: str | None, written: dict):
        self.engine, self.schema = engine, schema
        self.written = written
        self.runs_submitted = 0
        self.error: BaseException | None = None
        self.queue: queue.Queue = queue.Queue(maxsize=2)
        self.thread = threading.Thread(target=self._work, name="ows-demo-writer", daemon=True)

    def __enter__(self) -> "BackgroundWriter":
        self.thread.start()
        return self

    def submit(self, batch: Batch) -> None:
        if self.error is not None:
            raise self.error
        if batch.table.name == "ows_workflow_run":
            self.runs_submitted += len(batch)
        self.queue.put(batch)

    def commit(self) -> None:
        self.queue.put(_COMMIT)

    def _work(self) -> None:
        target = None
        try:
            while (job := self.queue.get()) is not None:
                if self.error is not None:
                    continue
                try:
                    if target is None:
                        target = _bulk_connection(self.engine, self.schema)
                    if job is _COMMIT:
                        target.commit()
                    else:
                        self.written[job.table.name] += target.write(job)
                except BaseException as exc:  # noqa: BLE001 - handed to the submitting thread
                    self.error = exc
        finally:
            if target is not None:
                target.close()

    def __exit__(self, *exc_info) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None and exc_info[0] is None:
            raise self.error
