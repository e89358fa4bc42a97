"""The one bulk path between a database and Arrow: columnar batches in, COPY or executemany out.

Every bulk write in the project goes through `write_arrow` (pandas frames through `write_frame`,
Python tuples through `insert_rows`), inside the caller's SQLAlchemy transaction:

- PostgreSQL: `COPY ... FROM STDIN (FORMAT csv)` on the caller's psycopg2 connection, the CSV
  written by pyarrow in C. Every text value is quoted and NULL is the unquoted empty field, so
  no text (`\\N`, `NULL`, '', tabs, newlines, quotes, backslashes) can be mistaken for NULL.
- SQLite: `executemany` on the caller's connection over columns converted by Arrow and numpy.
- Other databases (Oracle is compiled, not run): SQLAlchemy Core `insert` with Python values.

Values are typed once (`arrow_schema`, `conform`): integers as int64 (exact beyond 2^53),
timestamps as UTC instants in microseconds (naive values are taken to be UTC; the session's
time zone is never consulted), dates as dates, NULL as NULL. Batches are streamed one at a
time, so memory stays flat whatever the number of rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Union

import sqlalchemy as sa

if TYPE_CHECKING:  # pyarrow, numpy and pandas load on first use: importing the definitions stays cheap
    import pandas as pd
    import pyarrow as pa

_UTC = dt.timezone.utc
ArrowData = Union["pa.Table", "pa.RecordBatch", Iterable["pa.RecordBatch | pa.Table"], "pd.DataFrame"]


def as_utc(value: dt.datetime) -> dt.datetime:
    """An aware UTC datetime; naive values are taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=_UTC)
    return value.astimezone(_UTC)


def _sqlite_value(value):
    """One Python value as SQLAlchemy stores it on SQLite (UTC text for timestamps)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(_UTC).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


# ---------------------------------------------------------------- typing

def arrow_type(column_type: sa.types.TypeEngine) -> "pa.DataType | None":
    """The canonical Arrow type for a SQLAlchemy column type (None: keep the data's own type)."""
    import pyarrow as pa

    if isinstance(column_type, sa.Boolean):
        return pa.bool_()
    if isinstance(column_type, sa.Integer):
        return pa.int64()
    if isinstance(column_type, sa.DateTime):
        return pa.timestamp("us", tz="UTC" if column_type.timezone else None)
    if isinstance(column_type, sa.Date):
        return pa.date32()
    if isinstance(column_type, sa.Float):
        return pa.float64()
    if isinstance(column_type, sa.Numeric):
        if column_type.precision and column_type.scale is not None and column_type.asdecimal:
            return pa.decimal128(column_type.precision, column_type.scale)
        return None
    if isinstance(column_type, sa.String):
        return pa.string()
    return None


def arrow_schema(columns: sa.Table | Iterable[sa.Column]) -> "pa.Schema":
    """The Arrow schema of a table's columns (columns of an unknown type are left as they come)."""
    import pyarrow as pa

    columns = columns.columns if isinstance(columns, sa.Table) else columns
    return pa.schema([pa.field(c.name, arrow_type(c.type) or pa.null()) for c in columns])


def _cast(array: "pa.Array", target: "pa.DataType | None", name: str) -> "pa.Array":
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if target is None or pa.types.is_null(target):  # no declared type: only timestamps are normalised
        if pa.types.is_timestamp(array.type):
            return _cast(array, pa.timestamp("us", "UTC"), name)
        return array
    if array.type == target:
        return array
    try:
        if pa.types.is_timestamp(target):
            if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
                try:  # text without an offset is UTC; text with one is converted to UTC
                    array = pc.cast(array, pa.timestamp("us"))
                except pa.ArrowInvalid:
                    array = pc.cast(array, pa.timestamp("us", "UTC"))
            elif pa.types.is_date(array.type):
                array = pc.cast(array, pa.timestamp("us"))
            if pa.types.is_timestamp(array.type) and array.type.tz is None and target.tz is not None:
                array = pc.cast(array, pa.timestamp(array.type.unit, target.tz))  # naive means UTC
            if pa.types.is_timestamp(array.type) and array.type.tz is not None and target.tz is None:
                array = pc.cast(array, pa.timestamp(array.type.unit, "UTC")).cast(pa.timestamp(array.type.unit))
            return pc.cast(array, target, safe=False)  # nanoseconds are cut to the microsecond
        if pa.types.is_date(target) and pa.types.is_timestamp(array.type):
            return pc.cast(array, target, safe=False)
        return pc.cast(array, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ValueError(f"column {name!r}: cannot write {array.type} values as {target}: {exc}") from exc


def conform(batch: "pa.RecordBatch | pa.Table", schema: "pa.Schema | None" = None) -> "pa.RecordBatch":
    """`batch` with its columns in `schema`'s order and types (a table is combined into one batch)."""
    import pyarrow as pa

    if isinstance(batch, pa.Table):
        batch = batch.combine_chunks().to_batches()[0] if batch.num_rows else pa.RecordBatch.from_pylist([], batch.schema)
    if schema is None:
        arrays = [_cast(batch.column(i), None, f.name) for i, f in enumerate(batch.schema)]
        return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)
    names = {n.lower(): i for i, n in enumerate(batch.schema.names)}  # Oracle answers in upper case
    arrays = []
    for field in schema:
        index = names.get(field.name.lower())
        if index is None:
            raise ValueError(f"column {field.name!r} is missing from the data (it has {batch.schema.names})")
        arrays.append(_cast(batch.column(index), field.type, field.name))
    return pa.RecordBatch.from_arrays(arrays, names=schema.names)


def _batches(data: ArrowData) -> Iterator["pa.RecordBatch"]:
    import pyarrow as pa

    if isinstance(data, pa.RecordBatch):
        yield data
    elif isinstance(data, pa.Table):
        yield from data.to_batches()
    elif hasattr(data, "columns") and hasattr(data, "dtypes"):  # a pandas frame
        yield from pa.Table.from_pandas(data, preserve_index=False).to_batches()
    else:
        for item in data:
            yield from _batches(item)


def with_constants(batch: "pa.RecordBatch", constants: Mapping[str, object]) -> "pa.RecordBatch":
    """`batch` plus one column per constant, the same value on every row."""
    import pyarrow as pa

    arrays, names = list(batch.columns), list(batch.schema.names)
    for name, value in constants.items():
        if isinstance(value, dt.datetime):
            value = as_utc(value)
        arrays.append(pa.repeat(pa.scalar(value), batch.num_rows) if value is not None else pa.nulls(batch.num_rows))
        names.append(name)
    return pa.RecordBatch.from_arrays(arrays, names=names)


# ---------------------------------------------------------------- writing

def write_arrow(
    conn: sa.Connection,
    table: sa.Table | str,
    data: ArrowData,
    schema: "pa.Schema | None" = None,
    constants: Mapping[str, object] | None = None,
) -> int:
    """Write Arrow data (a table, record batches, an iterable of them, or a pandas frame) into
    `table` inside the caller's transaction; returns the number of rows written.

    The columns written are `schema`'s (default: the columns of `table` when it is a `sa.Table`,
    else the data's own), followed by `constants`; `table` may name a temporary table.
    """
    if schema is None and isinstance(table, sa.Table):
        schema = arrow_schema(table)
        if constants:
            schema = _drop(schema, constants)
    name = table if isinstance(table, str) else table.name
    conformed = (with_constants(conform(b, schema), constants or {}) for b in _batches(data))
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return _copy_csv(conn, name, conformed)
    if dialect == "sqlite":
        return _sqlite_executemany(conn, name, conformed)
    return _core_insert(conn, table, conformed)


def _drop(schema: "pa.Schema", names: Iterable[str]) -> "pa.Schema":
    import pyarrow as pa

    names = set(names)
    return pa.schema([f for f in schema if f.name not in names])


class _CsvStream:
    """A file-like object that psycopg2's `copy_expert` reads: the CSV of one batch at a time."""

    def __init__(self, batches: Iterator["pa.RecordBatch"]):
        import pyarrow.csv as pcsv

        self._batches = batches
        self._options = pcsv.WriteOptions(include_header=False, quoting_style="needed")
        self.columns: list[str] | None = None
        self.rows = 0
        self._buffer = self._next() or memoryview(b"")

    def _next(self) -> "memoryview | None":
        import pyarrow as pa
        import pyarrow.csv as pcsv

        for batch in self._batches:
            self.columns = self.columns or batch.schema.names
            if batch.num_rows:
                sink = pa.BufferOutputStream()
                pcsv.write_csv(_utc_offsets(batch), sink, self._options)
                self.rows += batch.num_rows
                return memoryview(sink.getvalue())
        return None

    def read(self, size: int = -1) -> bytes:
        if not len(self._buffer):
            self._buffer = self._next() or memoryview(b"")
        size = len(self._buffer) if size is None or size < 0 else size
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return bytes(out)


def _utc_offsets(batch: "pa.RecordBatch") -> "pa.RecordBatch":
    """Aware timestamps as text with an explicit '+00' (COPY then needs no session time zone)."""
    import pyarrow as pa

    if not any(pa.types.is_timestamp(t) and t.tz is not None for t in batch.schema.types):
        return batch
    arrays = [
        utc_text(a, "+00") if pa.types.is_timestamp(a.type) and a.type.tz is not None else a for a in batch.columns
    ]
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


def _copy_csv(conn: sa.Connection, name: str, batches: Iterator["pa.RecordBatch"]) -> int:
    stream = _CsvStream(batches)
    if not stream.rows:
        return 0
    quote = conn.dialect.identifier_preparer.quote
    columns = ", ".join(quote(c) for c in stream.columns)
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.copy_expert(f"COPY {quote(name)} ({columns}) FROM STDIN (FORMAT csv)", stream, size=1 << 20)
    finally:
        cursor.close()
    return stream.rows


def utc_text(array: "pa.Array", suffix: str = "") -> "pa.Array":
    """Timestamps as 'YYYY-MM-DD HH:MM:SS.ffffff' text of their UTC wall time, plus `suffix`.

    Arrow formats an aware timestamp through the time zone database, ten times slower than a
    naive one; the values are UTC already, so they are formatted as naive.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if array.type.tz is not None:
        array = pc.cast(array, pa.timestamp("us", "UTC")).view(pa.timestamp("us"))
    text = pc.cast(pc.cast(array, pa.timestamp("us"), safe=False), pa.string())
    return pc.binary_join_element_wise(text, pa.scalar(suffix), "") if suffix else text


def python_columns(batch: "pa.RecordBatch", sqlite: bool = False) -> list[list]:
    """The batch's columns as lists of Python values, converted in C (None for null).

    With `sqlite`, values take SQLAlchemy's SQLite forms: timestamps as UTC text, dates as ISO
    text, booleans as 0/1, decimals as text.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    out = []
    for array in batch.columns:
        kind = array.type
        if sqlite and pa.types.is_timestamp(kind):
            array = utc_text(array)
        elif sqlite and (pa.types.is_date(kind) or pa.types.is_decimal(kind)):
            array = pc.cast(array, pa.string())
        elif sqlite and pa.types.is_boolean(kind):
            array = pc.cast(array, pa.int64())
        kind = array.type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind):
            out.append(array.to_numpy(zero_copy_only=False).tolist())  # nulls come back as None
        elif (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)) and not pa.types.is_timestamp(kind):
            values = array.fill_null(0 if not pa.types.is_boolean(kind) else False).to_numpy(zero_copy_only=False).tolist()
            if array.null_count:
                values = np.array(values, dtype=object)
                values[array.is_null().to_numpy(zero_copy_only=False)] = None
                values = values.tolist()
            out.append(values)
        else:
            out.append(array.to_pylist())
    return out


def _sqlite_executemany(conn: sa.Connection, name: str, batches: Iterator["pa.RecordBatch"]) -> int:
    quote = conn.dialect.identifier_preparer.quote
    cursor = conn.connection.dbapi_connection.cursor()
    rows = 0
    try:
        for batch in batches:
            if not batch.num_rows:
                continue
            columns = ", ".join(quote(c) for c in batch.schema.names)
            marks = ", ".join("?" for _ in batch.schema.names)
            cursor.executemany(f"INSERT INTO {quote(name)} ({columns}) VALUES ({marks})", zip(*python_columns(batch, sqlite=True)))
            rows += batch.num_rows
    finally:
        cursor.close()
    return rows


def _core_insert(conn: sa.Connection, table: sa.Table | str, batches: Iterator["pa.RecordBatch"]) -> int:
    rows = 0
    for batch in batches:
        if not batch.num_rows:
            continue
        names = batch.schema.names
        target = table if isinstance(table, sa.Table) else sa.table(table, *(sa.column(c) for c in names))
        conn.execute(sa.insert(target), [dict(zip(names, r)) for r in zip(*python_columns(batch))])
        rows += batch.num_rows
    return rows


# ---------------------------------------------------------------- the two callers' shapes

def _kind_type(kind: str) -> "pa.DataType":
    import pyarrow as pa

    return {
        "int": pa.int64(), "timestamp": pa.timestamp("us", "UTC"), "date": pa.date32(), "flag": pa.bool_(),
    }.get(kind, pa.string())


def write_frame(
    conn: sa.Connection, table: sa.Table | str, frame: "pd.DataFrame", kinds: Mapping[str, str],
    constants: Mapping[str, object] | None = None,
) -> int:
    """Insert the `kinds` columns of `frame` (kind: str, code, int, timestamp, date, flag) plus
    `constants` (one value for every row) into `table`, inside the caller's transaction."""
    import pyarrow as pa

    if not len(frame):
        return 0
    schema = pa.schema([pa.field(c, _kind_type(k)) for c, k in kinds.items()])
    arrays = []
    for field in schema:
        values = frame[field.name]
        try:
            array = pa.array(values, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            array = pa.array(values.astype(object).where(values.notna(), None).tolist(), type=field.type)
        arrays.append(array)
    batch = pa.RecordBatch.from_arrays(arrays, names=schema.names)
    return write_arrow(conn, table, batch, schema=schema, constants=constants)


def _column_array(values: list, target: "pa.DataType | None", name: str) -> "pa.Array":
    import pyarrow as pa

    if target is not None and not pa.types.is_null(target):
        try:
            return pa.array(values, type=target, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            pass
    try:
        return _cast(pa.array(values, from_pandas=True), target, name)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValueError(f"column {name!r}: values of mixed or unsupported types ({exc})") from exc


def insert_rows(conn: sa.Connection, table: sa.Table | str, columns: Sequence[str], rows: Iterable[Sequence]) -> int:
    """Insert `rows` (tuples in `columns` order) into `table` inside the caller's transaction.

    Returns the number of rows written. `table` may be the name of a temporary table.
    """
    import pyarrow as pa

    rows = rows if isinstance(rows, list) else list(rows)
    if not rows:
        return 0
    if conn.dialect.name not in ("postgresql", "sqlite"):
        name = table if isinstance(table, str) else table.name
        target = table if isinstance(table, sa.Table) else sa.table(name, *(sa.column(c) for c in columns))
        conn.execute(sa.insert(target), [dict(zip(columns, row)) for row in rows])
        return len(rows)
    types = arrow_schema(table) if isinstance(table, sa.Table) else None
    arrays = [
        _column_array(list(values), types.field(c).type if types is not None else None, c)
        for c, values in zip(columns, zip(*rows))
    ]
    batch = pa.RecordBatch.from_arrays(arrays, names=list(columns))
    return write_arrow(conn, table if isinstance(table, str) else table.name, batch)


# ---------------------------------------------------------------- reading

def compiled_sql(conn: sa.Connection, query: sa.Executable) -> tuple[str, dict | tuple]:
    """The SQL text of `query` for `conn`'s driver and its bind values as SQLAlchemy would send
    them (type processing and the connection's schema translation applied)."""
    return compile_for(conn.dialect, query, conn.get_execution_options().get("schema_translate_map"))


def compile_for(dialect: sa.Dialect, query: sa.Executable, schema_translate_map: dict | None = None):
    """`compiled_sql` for a dialect: (SQL text, bind values by name, or in order for positional drivers)."""
    compiled = query.compile(dialect=dialect, schema_translate_map=schema_translate_map)
    sql = str(compiled)
    if schema_translate_map:
        sql = compiled.preparer._render_schema_translates(sql, schema_translate_map)
    processors = compiled._bind_processors
    params = {k: processors[k](v) if k in processors else v for k, v in compiled.construct_params().items()}
    if compiled.positional:
        return sql, tuple(params[k] for k in compiled.positiontup)
    return sql, params


def read_batches(
    conn: sa.Connection, query: sa.Select, schema: "pa.Schema", batch_rows: int = 50_000
) -> Iterator["pa.RecordBatch"]:
    """Stream the rows of `query` as Arrow record batches typed by `schema` (see `conform`).

    Oracle: python-oracledb's `fetch_df_batches`; PostgreSQL: `COPY (query) TO STDOUT` parsed by
    pyarrow's CSV reader; SQLite and others: the DBAPI cursor, converted column by column. Every
    reader's batches go through the same `conform`.
    """
    sql, params = compiled_sql(conn, query)
    return driver_batches(conn.dialect.name, conn.connection.dbapi_connection, sql, params, schema, batch_rows)


def driver_batches(dialect: str, dbapi, sql: str, params, schema: "pa.Schema", batch_rows: int) -> Iterator["pa.RecordBatch"]:
    """`read_batches` on a DBAPI connection, for compiled `sql` and its bind values."""
    if dialect == "oracle" and hasattr(dbapi, "fetch_df_batches"):
        batches = _oracle_batches(dbapi, sql, params, batch_rows)
    elif dialect == "postgresql":
        batches = _postgres_batches(dbapi, sql, params, schema, batch_rows)
    else:
        batches = _cursor_batches(dbapi, sql, params, schema, batch_rows)
    for batch in batches:
        yield conform(batch, schema)


def _oracle_batches(dbapi, sql: str, params, batch_rows: int) -> Iterator["pa.RecordBatch"]:
    import pyarrow as pa

    for frame in dbapi.fetch_df_batches(statement=sql, parameters=params, size=batch_rows):
        yield from pa.table(frame).to_batches()


def _cursor_batches(dbapi, sql: str, params, schema: "pa.Schema", batch_rows: int) -> Iterator["pa.RecordBatch"]:
    import pyarrow as pa

    cursor = dbapi.cursor()
    try:
        cursor.arraysize = batch_rows
        cursor.execute(sql, params)
        names = [d[0] for d in cursor.description]
        types = {f.name.lower(): f.type for f in schema}
        while rows := cursor.fetchmany(batch_rows):
            arrays = [_column_array(list(values), types.get(n.lower()), n) for n, values in zip(names, zip(*rows))]
            yield pa.RecordBatch.from_arrays(arrays, names=names)
    finally:
        cursor.close()


PG_COPY_SESSION = ("SET LOCAL TimeZone = 'UTC'", "SET LOCAL DateStyle = 'ISO, YMD'", "SET LOCAL extra_float_digits = 1")


def postgres_copy_select(cursor, sql: str, params) -> str:
    """`sql` with its bind values inlined by psycopg2, for `COPY (...) TO STDOUT`, in a session whose
    text forms are fixed: UTC offsets, ISO dates, floats that round-trip."""
    for statement in PG_COPY_SESSION:
        cursor.execute(statement)
    return cursor.mogrify(sql, params).decode()


def _postgres_batches(dbapi, sql: str, params, schema: "pa.Schema", batch_rows: int) -> Iterator["pa.RecordBatch"]:
    import os
    import threading

    import pyarrow as pa
    import pyarrow.csv as pcsv

    cursor = dbapi.cursor()
    select = postgres_copy_select(cursor, sql, params)
    names = [d.name for d in _describe(cursor, select)]
    types = {f.name.lower(): f.type for f in schema if not pa.types.is_null(f.type)}
    read_fd, write_fd = os.pipe()
    failure: list[BaseException] = []

    def produce():
        with os.fdopen(write_fd, "wb") as out:
            try:
                cursor.copy_expert(f"COPY ({select}) TO STDOUT (FORMAT csv)", out, size=1 << 20)
            except BaseException as exc:  # surfaced below, once the reader has stopped
                failure.append(exc)

    producer = threading.Thread(target=produce, name="ows-copy-to", daemon=True)
    producer.start()
    inp = os.fdopen(read_fd, "rb")
    try:
        reader = pcsv.open_csv(
            inp,
            read_options=pcsv.ReadOptions(column_names=names, block_size=max(16 << 20, batch_rows * 256)),
            parse_options=pcsv.ParseOptions(newlines_in_values=True),
            convert_options=pcsv.ConvertOptions(
                column_types={n: types[n.lower()] for n in names if n.lower() in types},
                null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=False,
                true_values=["t"], false_values=["f"],
            ),
        )
        for batch in reader:
            yield batch
    except pa.ArrowInvalid:
        if not failure:
            raise
    finally:
        inp.close()  # a reader that stops early breaks the pipe, which ends the COPY
        producer.join(timeout=30)
        if producer.is_alive():
            dbapi.cancel()
            producer.join()
        cursor.close()
    if failure:
        raise failure[0]


def _describe(cursor, select: str):
    """The result columns of a SELECT, without fetching a row."""
    cursor.execute(f"SELECT * FROM ({select}) AS q LIMIT 0")
    return cursor.description
