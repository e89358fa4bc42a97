"""Demo OWS source: a realistic, deterministic OWS database on any SQLAlchemy URL.

`generate_demo(url, ...)` writes the eight OWS tables as of a time; `advance_demo(url, as_of)`
moves an existing demo forward, writing only what happened in between (new runs, updates of
runs that were open, new history rows, reference-data changes). The source as of T is a pure
function of (seed, sizes, history start, T): advancing T1 -> T2 gives the same rows as
generating directly as of T2 with the same history start.

The parameters and the as-of time are kept in `ows_demo_state` (not part of the OWS contract).
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import queue
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import sqlalchemy as sa

from ows_pipeline.source import schema as source_schema
from ows_pipeline.demo.reference import DAY, WEEK, build_reference
from ows_pipeline.demo.runs import DayRuns, project_runs, project_steps, simulate_day, STATUSES, RESULT_CODES
from ows_pipeline.warehouse.bulk import insert_rows

UTC = dt.timezone.utc
GENERATOR_VERSION = "1"

DEFAULTS = {"seed": 42, "projects": 8, "feeds_per_project": 7, "workflows_per_project": 5, "runs_per_day": 400, "weeks": 12}

FAST_DIALECTS = ("sqlite", "postgresql")  # take pre-formatted strings; others get datetime objects

state_metadata = sa.MetaData()
ows_demo_state = sa.Table(
    "ows_demo_state",
    state_metadata,
    sa.Column("generator_version", sa.String(10), nullable=False),
    sa.Column("seed", sa.Integer, nullable=False),
    sa.Column("projects", sa.Integer, nullable=False),
    sa.Column("feeds_per_project", sa.Integer, nullable=False),
    sa.Column("workflows_per_project", sa.Integer, nullable=False),
    sa.Column("runs_per_day", sa.Integer, nullable=False),
    sa.Column("history_start", source_schema.TS, nullable=False),
    sa.Column("as_of", source_schema.TS, nullable=False),
)

_RUN_COLUMNS = [c.name for c in source_schema.ows_workflow_run.columns]
_STEP_COLUMNS = [c.name for c in source_schema.ows_run_step_status.columns]
_HISTORY_COLUMNS = [c.name for c in source_schema.ows_run_step_history.columns]


class DemoSourceError(ValueError):
    """A demo source request that cannot be done, with the fix in its message."""


@dataclass(frozen=True)
class DemoParams:
    """What the demo source is a function of (besides the as-of time)."""

    seed: int
    projects: int
    feeds_per_project: int
    workflows_per_project: int
    runs_per_day: int
    history_start: int  # seconds since the epoch, a Monday 00:00 UTC

    def check(self) -> None:
        for name in ("projects", "feeds_per_project", "workflows_per_project"):
            if getattr(self, name) < 1:
                raise DemoSourceError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.runs_per_day < 0:
            raise DemoSourceError(f"runs_per_day must be 0 or more, got {self.runs_per_day}")
        if self.feeds_per_project < 3:
            raise DemoSourceError(
                f"feeds_per_project must be at least 3 (a SOURCE/TARGET pair and an ad hoc feed), got {self.feeds_per_project}"
            )


@dataclass
class DemoSummary:
    """Rows per OWS table after a generation or an advance."""

    url: str
    as_of: dt.datetime
    rows: dict[str, int] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def __str__(self) -> str:
        lines = [f"OWS demo source {self.url} as of {self.as_of.isoformat()} ({self.seconds:.1f} s)"]
        width = max(len(n) for n in self.rows) if self.rows else 10
        lines.append(f"  {'table':<{width}} {'rows':>12} {'written':>12}")
        for name, count in self.rows.items():
            lines.append(f"  {name:<{width}} {count:>12,} {self.written.get(name, 0):>12,}")
        return "\n".join(lines)


def history_start_for(as_of: int, weeks: int) -> int:
    """Monday 00:00 UTC of the week holding `as_of`, minus `weeks` weeks."""
    day = as_of // DAY
    monday = day - (day + 3) % 7
    return (monday - 7 * weeks) * DAY


def parse_as_of(value: str | dt.datetime | None) -> dt.datetime:
    """An aware UTC datetime from an ISO string or datetime (naive means UTC); None means now."""
    if value is None:
        return dt.datetime.now(UTC).replace(microsecond=0)
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise DemoSourceError(f"--as-of {value!r} is not an ISO date or time, e.g. 2026-11-20T18:00") from exc
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time())
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0)


def _seconds(value: dt.datetime) -> int:
    return int(value.timestamp())


def _datetime(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, UTC)


def demo_engine(url: str, schema_name: str | None = None) -> sa.Engine:
    """An engine for `url` writing into `schema_name` if given (Oracle schema, PostgreSQL search path).

    SQLite folders are created; Oracle URLs are checked for the SID trap.
    """
    from ows_pipeline.settings import ensure_sqlite_parent

    ensure_sqlite_parent(url)
    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    if backend == "oracle":
        from ows_pipeline.resources import check_oracle_url

        check_oracle_url(parsed)
    if not schema_name:
        return sa.create_engine(parsed)
    if backend == "sqlite":
        raise DemoSourceError(f"--schema {schema_name!r} does not apply to SQLite; drop it or use another database")
    if backend == "postgresql":
        # bulk COPY names tables without a schema: the search path puts them in the schema
        engine = sa.create_engine(parsed, connect_args={"options": f"-csearch_path={schema_name}"})
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema_name}"'))
        return engine
    return sa.create_engine(parsed).execution_options(schema_translate_map={None: schema_name})


def generate_demo(
    url: str,
    *,
    seed: int = DEFAULTS["seed"],
    projects: int = DEFAULTS["projects"],
    feeds_per_project: int = DEFAULTS["feeds_per_project"],
    workflows_per_project: int = DEFAULTS["workflows_per_project"],
    runs_per_day: int = DEFAULTS["runs_per_day"],
    weeks: int = DEFAULTS["weeks"],
    as_of: str | dt.datetime | None = None,
    schema: str | None = None,
    progress: bool = False,
) -> DemoSummary:
    """(Re)create the OWS tables at `url` holding `weeks` weeks of history up to `as_of` (default now).

    History starts on the Monday `weeks` weeks before the week of `as_of`. Refuses to replace OWS
    tables that the demo generator did not create.
    """
    started = time.perf_counter()
    as_of_dt = parse_as_of(as_of)
    if weeks < 0:
        raise DemoSourceError(f"weeks must be 0 or more, got {weeks}")
    params = DemoParams(
        seed, projects, feeds_per_project, workflows_per_project, runs_per_day, history_start_for(_seconds(as_of_dt), weeks)
    )
    params.check()
    engine = demo_engine(url, schema)
    try:
        _recreate_tables(engine, schema)
        # secondary indexes are built once at the end: faster than maintaining them row by row
        indexes = [ix for t in source_schema.metadata.sorted_tables for ix in t.indexes]
        with engine.begin() as conn:
            for index in indexes:
                index.drop(conn)
        written = _write(engine, params, _seconds(as_of_dt), previous=None, progress=progress)
        with engine.begin() as conn:
            for index in indexes:
                index.create(conn)
        with engine.begin() as conn:
            conn.execute(ows_demo_state.delete())
            conn.execute(sa.insert(ows_demo_state), [_state_row(params, as_of_dt)])
        rows = _row_counts(engine)
    finally:
        engine.dispose()
    return DemoSummary(_display(url), as_of_dt, rows, written, time.perf_counter() - started)


def advance_demo(
    url: str, as_of: str | dt.datetime | None = None, *, schema: str | None = None, progress: bool = False
) -> DemoSummary:
    """Move the demo source at `url` forward to `as_of` (default: one week after its current as-of).

    Inserts the runs begun since, updates the runs that were open, appends history with higher
    hist_ids and applies the reference-data changes due in the interval, in one transaction.
    """
    started = time.perf_counter()
    engine = demo_engine(url, schema)
    try:
        params, previous = _read_state(engine, url, schema)
        target = parse_as_of(as_of) if as_of is not None else _datetime(previous + WEEK)
        if _seconds(target) < previous:
            raise DemoSourceError(
                f"the demo source is already as of {_datetime(previous).isoformat()}; it cannot go back to "
                f"{target.isoformat()}: generate it again with --as-of"
            )
        written = _write(engine, params, _seconds(target), previous=previous, progress=progress)
        rows = _row_counts(engine)
    finally:
        engine.dispose()
    return DemoSummary(_display(url), target, rows, written, time.perf_counter() - started)


def _display(url: str) -> str:
    return sa.make_url(url).render_as_string(hide_password=True)


def _inspect_schema(engine: sa.Engine, schema_name: str | None) -> str | None:
    """The schema to inspect: Oracle names it, PostgreSQL finds it on the search path."""
    return schema_name if engine.dialect.name == "oracle" else None


def _recreate_tables(engine: sa.Engine, schema_name: str | None) -> None:
    inspector = sa.inspect(engine)
    existing = set(inspector.get_table_names(schema=_inspect_schema(engine, schema_name)))
    ows_tables = {t.name for t in source_schema.metadata.sorted_tables}
    if existing & ows_tables and ows_demo_state.name not in existing:
        raise DemoSourceError(
            f"{_display(str(engine.url))} already holds OWS tables ({', '.join(sorted(existing & ows_tables))}) "
            "that the demo generator did not create; refusing to replace them. Point --url at another database."
        )
    with engine.begin() as conn:
        source_schema.metadata.drop_all(conn)
        state_metadata.drop_all(conn)
        source_schema.metadata.create_all(conn)
        state_metadata.create_all(conn)


def _state_row(params: DemoParams, as_of: dt.datetime) -> dict:
    return {
        "generator_version": GENERATOR_VERSION,
        "seed": params.seed,
        "projects": params.projects,
        "feeds_per_project": params.feeds_per_project,
        "workflows_per_project": params.workflows_per_project,
        "runs_per_day": params.runs_per_day,
        "history_start": _datetime(params.history_start),
        "as_of": as_of,
    }


def _read_state(engine: sa.Engine, url: str, schema_name: str | None) -> tuple[DemoParams, int]:
    if not sa.inspect(engine).has_table(ows_demo_state.name, schema=_inspect_schema(engine, schema_name)):
        raise DemoSourceError(f"{_display(url)} holds no demo source (no {ows_demo_state.name}); generate one first")
    with engine.connect() as conn:
        rows = conn.execute(sa.select(ows_demo_state)).mappings().all()
    if len(rows) != 1:
        raise DemoSourceError(f"{_display(url)}: {ows_demo_state.name} should hold one row; generate the demo again")
    row = rows[0]
    if row["generator_version"] != GENERATOR_VERSION:
        raise DemoSourceError(
            f"{_display(url)} was generated by demo generator version {row['generator_version']}, "
            f"this is version {GENERATOR_VERSION}: generate it again"
        )
    start = row["history_start"]
    as_of = row["as_of"]
    params = DemoParams(
        row["seed"], row["projects"], row["feeds_per_project"], row["workflows_per_project"], row["runs_per_day"],
        _seconds(start if start.tzinfo else start.replace(tzinfo=UTC)),
    )
    return params, _seconds(as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC))


def _row_counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one() for t in source_schema.metadata.sorted_tables
        }


# ---------------------------------------------------------------------------------------------
# values in the form each database takes fastest


@functools.lru_cache(maxsize=1)
def _times_of_day() -> np.ndarray:
    """'HH:MM:SS' of every second of a day, as bytes rows."""
    return np.array([f"{x // 3600:02d}:{x // 60 % 60:02d}:{x % 60:02d}" for x in range(DAY)], dtype="S8").view(
        np.uint8
    ).reshape(-1, 8)


class _Values:
    """Columns to row values: strings SQLAlchemy would write (SQLite, PostgreSQL), objects elsewhere."""

    def __init__(self, dialect: str):
        self.dialect = dialect
        self.fast = dialect in FAST_DIALECTS
        suffix = ".000000" if dialect == "sqlite" else "+00"
        self._suffix = np.frombuffer(suffix.encode(), dtype=np.uint8)
        self._sep = ord(" ")
        self._times = _times_of_day()
        self._day0 = 0
        self._dates = np.zeros((0, 10), dtype=np.uint8)

    def _date_table(self, first: int, last: int) -> None:
        if self._dates.shape[0] and self._day0 <= first and last < self._day0 + self._dates.shape[0]:
            return
        self._day0 = first - 400
        days = np.arange(self._day0, last + 400).astype("datetime64[D]")
        self._dates = np.datetime_as_string(days).astype("S10").view(np.uint8).reshape(-1, 10)

    def timestamps(self, seconds: np.ndarray, null: np.ndarray | None = None) -> list:
        """Timestamps from seconds since the epoch; `null` marks nulls."""
        seconds = np.asarray(seconds, dtype=np.int64)
        if null is not None and null.any():
            out = np.array(self.timestamps(np.where(null, 0, seconds)), dtype=object)
            out[null] = None
            return out.tolist()
        if not len(seconds):
            return []
        if not self.fast:
            return [dt.datetime.fromtimestamp(s, UTC) for s in seconds.tolist()]
        days = seconds // DAY
        self._date_table(int(days.min()), int(days.max()))
        width = 19 + len(self._suffix)
        out = np.empty((len(seconds), width), dtype=np.uint8)
        out[:, :10] = self._dates[days - self._day0]
        out[:, 10] = self._sep
        out[:, 11:19] = self._times[seconds - days * DAY]
        out[:, 19:] = self._suffix
        return out.view(f"S{width}").ravel().astype(f"U{width}").tolist()

    def date(self, day: int):
        value = dt.date(1970, 1, 1) + dt.timedelta(days=day)
        return value.isoformat() if self.fast else value

    @staticmethod
    def ints(values: np.ndarray, null: np.ndarray | None = None) -> list:
        if null is not None and null.any():
            out = np.asarray(values).astype(object)
            out[null] = None
            return out.tolist()
        return np.asarray(values).tolist()


# ---------------------------------------------------------------------------------------------
# the writer


def _progress_bar(total: int, enabled: bool, description: str):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with dagster
        return _SimpleProgress(total, description)
    return tqdm(total=total, desc=description, unit="day", file=sys.stderr, dynamic_ncols=True)


class _SimpleProgress:
    def __init__(self, total: int, description: str):
        self.total, self.done, self.description = total, 0, description

    def update(self, n: int = 1) -> None:
        self.done += n
        sys.stderr.write(f"\r{self.description}: {self.done}/{self.total} days")
        sys.stderr.flush()

    def set_postfix_str(self, text: str) -> None:
        pass

    def close(self) -> None:
        sys.stderr.write("\n")


class DaySimulator:
    """Simulates the business days of a demo source in order, numbering runs as it goes."""

    def __init__(self, params: DemoParams, until: int):
        self.params = params
        self.ref = build_reference(
            params.seed, params.projects, params.feeds_per_project, params.workflows_per_project,
            params.history_start, until,
        )
        self.versions = self.ref.version_arrays()
        # feed or process code of every step, by step id, for error messages
        self.subjects = np.full(max((sid for v in self.ref.versions for sid in v.step_ids), default=0) + 1, None, object)
        for version in self.ref.versions:
            self.subjects[version.step_ids] = version.subjects
        self.next_run_id = 1

    def day(self, day: int) -> Iterator[tuple[DayRuns, int]]:
        """The runs of business `day` (days since the epoch) in bounded blocks, each with the time before
        which no later block has a transition; days must come in order from the start."""
        ref = self.ref
        for runs, frontier in simulate_day(
            self.params.seed, day, self.params.runs_per_day, self.next_run_id, self.versions, ref.code_names,
            ref.code_weights, ref.code_volume, ref.code_risk, self.subjects, len(ref.users),
        ):
            self.next_run_id += len(runs.run_id)
            yield runs, frontier


def _write(engine: sa.Engine, params: DemoParams, as_of: int, previous: int | None, progress: bool) -> dict[str, int]:
    """Write the source as of `as_of`; with `previous`, only what changed since that as-of.

    A fresh source is written one business day per transaction by a writer thread, so that
    the database works while the next day is simulated; an advance is one transaction.
    """
    simulator = DaySimulator(params, as_of)
    ref = simulator.ref
    values = _Values(engine.dialect.name)
    written = {t.name: 0 for t in source_schema.metadata.sorted_tables}
    first_day = params.history_start // DAY
    last_day = as_of // DAY
    bar = _progress_bar(max(0, last_day - first_day + 1), progress, "OWS demo source")
    history = _HistoryClock()
    try:
        if previous is None:
            with engine.begin() as conn:
                _write_reference(conn, ref, as_of, None, written)
            with _BackgroundWriter(engine, written) as writer:
                for day in range(first_day, last_day + 1):
                    for runs, frontier in simulator.day(day):
                        released = history.add(runs, release_before=frontier)
                        for job in _day_rows(runs, as_of, values, ref.users):
                            writer.submit(job)
                        for job in _history_rows(released, None, as_of, values, ref.users):
                            writer.submit(job)
                    writer.commit()
                    _tick(bar, writer.runs_submitted)
        else:
            with engine.begin() as conn:
                _write_reference(conn, ref, as_of, previous, written)
                conn.execute(ows_demo_state.update().values(as_of=_datetime(as_of)))
                for day in range(first_day, last_day + 1):
                    for runs, frontier in simulator.day(day):
                        released = history.add(runs, release_before=frontier)
                        jobs = _advance_day(conn, runs, previous, as_of, values, ref.users)
                        _insert_all(conn, itertools.chain(jobs, _history_rows(released, previous, as_of, values, ref.users)), written)
                    _tick(bar, written["ows_workflow_run"])
    finally:
        if bar is not None:
            bar.close()
    return written


def _tick(bar, runs: int) -> None:
    if bar is not None:
        bar.update(1)
        bar.set_postfix_str(f"{runs:,} runs")


Job = tuple  # (table, columns, rows)
_COMMIT = object()


def _insert_all(conn, jobs, written: dict) -> None:
    for table, columns, rows in jobs:
        written[table.name] += insert_rows(conn, table, columns, rows)


class _BackgroundWriter:
    """Bulk writes on a thread of their own; `commit()` ends a transaction; errors surface in the caller.

    The queue holds a few chunks only, so memory stays flat however large a day is.
    """

    def __init__(self, engine: sa.Engine, written: dict):
        self.engine = engine
        self.written = written
        self.runs_submitted = 0
        self.error: BaseException | None = None
        self.queue: queue.Queue = queue.Queue(maxsize=2)
        self.thread = threading.Thread(target=self._work, name="ows-demo-writer", daemon=True)

    def __enter__(self) -> "_BackgroundWriter":
        self.thread.start()
        return self

    def submit(self, job: Job) -> None:
        if self.error is not None:
            raise self.error
        if job[0] is source_schema.ows_workflow_run:
            self.runs_submitted += len(job[2])
        self.queue.put(job)

    def commit(self) -> None:
        self.queue.put(_COMMIT)

    def _work(self) -> None:
        conn = None
        try:
            while (job := self.queue.get()) is not None:
                if self.error is not None:
                    continue
                try:
                    if job is _COMMIT:
                        if conn is not None:
                            conn.commit()
                            conn.close()
                            conn = None
                        continue
                    if conn is None:
                        conn = self.engine.connect()
                        conn.begin()
                    _insert_all(conn, [job], self.written)
                except BaseException as exc:  # noqa: BLE001 - handed to the submitting thread
                    self.error = exc
        finally:
            if conn is not None:
                conn.close()  # rolls back an unfinished transaction

    def __exit__(self, *exc_info) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None and exc_info[0] is None:
            raise self.error


def _write_reference(conn, ref, as_of: int, previous: int | None, written: dict) -> None:
    """Reference tables as of `as_of`; with `previous`, delete, update and insert the differences."""
    now = ref.tables_at(as_of)
    before = ref.tables_at(previous) if previous is not None else {name: [] for name in now}
    for table in source_schema.metadata.sorted_tables:
        if table.name not in now:
            continue
        key = table.primary_key.columns.values()[0]
        old = {row[key.name]: row for row in before[table.name]}
        new = {row[key.name]: row for row in now[table.name]}
        gone = [k for k in old if k not in new]
        changed = [k for k in new if k in old and new[k] != old[k]]
        added = [k for k in new if k not in old]
        for chunk in _chunks(gone + changed, 500):
            conn.execute(table.delete().where(key.in_(chunk)))
        rows = [_reference_row(table, new[k]) for k in sorted(changed + added)]
        if rows:
            conn.execute(sa.insert(table), rows)
        written[table.name] += len(rows) + len(gone)


def _reference_row(table: sa.Table, row: dict) -> dict:
    out = {}
    for column in table.columns:
        value = row.get(column.name)
        if isinstance(column.type, sa.TIMESTAMP) and value is not None:
            value = _datetime(value)
        out[column.name] = value
    return out


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _run_rows(runs: DayRuns, view, picks: np.ndarray, values: _Values) -> list[tuple]:
    """ows_workflow_run rows for the positions `picks` of `view`."""
    idx = view.index[picks]
    parent = runs.parent_run_id[idx]
    loaded, matched = view.loaded[picks], view.matched[picks]
    end = view.end[picks]
    business_date = values.date(runs.business_day)
    keys = [runs.run_key[i] for i in idx.tolist()]
    return list(
        zip(
            runs.run_id[idx].tolist(),
            runs.workflow_id[idx].tolist(),
            keys,
            values.ints(parent, parent < 0),
            [business_date] * len(idx),
            view.status[picks].tolist(),
            view.result[picks].tolist(),
            values.ints(loaded, loaded < 0),
            values.ints(matched, matched < 0),
            values.ints(view.suggested[picks], matched < 0),
            values.ints(view.unmatched[picks], matched < 0),
            values.timestamps(runs.begin[idx]),
            values.timestamps(end, end < 0),
            values.timestamps(view.last_update[picks]),
        )
    )


def _step_rows(runs: DayRuns, view, picks: np.ndarray, values: _Values) -> list[tuple]:
    """ows_run_step_status rows for the positions `picks` of `view`."""
    cells = view.cell[picks]
    end = view.end[picks]
    return list(
        zip(
            runs.run_id[runs.cell_run[cells]].tolist(),
            runs.cell_step_id[cells].tolist(),
            view.status[picks].tolist(),
            view.result[picks].tolist(),
            view.assigned_user[picks].tolist(),
            view.error_name[picks].tolist(),
            view.error_message[picks].tolist(),
            values.timestamps(view.begin[picks]),
            values.timestamps(end, end < 0),
            values.timestamps(view.last_update[picks]),
        )
    )


CHUNK_ROWS = 50_000  # rows per bulk write: memory stays flat whatever the day's volume


def _run_and_step_jobs(runs: DayRuns, run_view, run_picks, step_view, step_picks, values) -> Iterator[Job]:
    for i in range(0, len(run_picks), CHUNK_ROWS):
        rows = _run_rows(runs, run_view, run_picks[i : i + CHUNK_ROWS], values)
        yield source_schema.ows_workflow_run, _RUN_COLUMNS, rows
    for i in range(0, len(step_picks), CHUNK_ROWS):
        rows = _step_rows(runs, step_view, step_picks[i : i + CHUNK_ROWS], values)
        yield source_schema.ows_run_step_status, _STEP_COLUMNS, rows


def _day_rows(runs: DayRuns, as_of: int, values: _Values, users: list[str]) -> Iterator[Job]:
    """The run and step status rows of one business day as of `as_of`."""
    run_view = project_runs(runs, as_of)
    step_view = project_steps(runs, as_of, users)
    yield from _run_and_step_jobs(
        runs, run_view, np.arange(len(run_view.index)), step_view, np.arange(len(step_view.cell)), values
    )


def _advance_day(conn, runs: DayRuns, previous: int, as_of: int, values: _Values, users: list[str]) -> Iterator[Job]:
    """Delete the run and step rows of a day that changed in (previous, as_of]; return what to insert."""
    if len(runs.tr_at) == 0 or (runs.tr_at.max() <= previous and runs.begin.max(initial=0) <= previous):
        return []
    n = len(runs.run_id)
    old_runs, new_runs = project_runs(runs, previous), project_runs(runs, as_of)
    old_lud = np.full(n, -1, dtype=np.int64)
    old_lud[old_runs.index] = old_runs.last_update
    existed = old_lud[new_runs.index] >= 0
    changed_run = existed & (old_lud[new_runs.index] != new_runs.last_update)
    run_picks = np.flatnonzero(~existed | changed_run)

    n_cells = len(runs.cell_first)
    old_steps, new_steps = project_steps(runs, previous, users), project_steps(runs, as_of, users)
    old_cell_lud = np.full(n_cells, -1, dtype=np.int64)
    old_cell_lud[old_steps.cell] = old_steps.last_update
    cell_existed = old_cell_lud[new_steps.cell] >= 0
    changed_cell = cell_existed & (old_cell_lud[new_steps.cell] != new_steps.last_update)
    step_picks = np.flatnonzero(~cell_existed | changed_cell)

    run_table, step_table = source_schema.ows_workflow_run, source_schema.ows_run_step_status
    for chunk in _chunks(runs.run_id[new_runs.index[changed_run]].tolist(), 500):
        conn.execute(run_table.delete().where(run_table.c.run_id.in_(chunk)))
    changed_cells = new_steps.cell[changed_cell]
    by_run: dict[int, list[int]] = {}
    for run_id, step_id in zip(runs.run_id[runs.cell_run[changed_cells]].tolist(), runs.cell_step_id[changed_cells].tolist()):
        by_run.setdefault(run_id, []).append(step_id)
    for run_id, step_ids in sorted(by_run.items()):
        conn.execute(step_table.delete().where(step_table.c.run_id == run_id, step_table.c.step_id.in_(step_ids)))
    return list(_run_and_step_jobs(runs, new_runs, run_picks, new_steps, step_picks, values))


class _HistoryClock:
    """Numbers step transitions in time order across business days: hist_id follows changed_at.

    A block's transitions are kept until no later block can add an earlier one (the block's
    frontier), then sorted by (changed_at, run, step, order) and numbered.
    """

    _FIELDS = ("at", "run_id", "cell_order", "step_id", "from_", "to", "result", "user")

    def __init__(self):
        self.next_id = 1
        self.pending = {name: np.zeros(0, dtype=np.int64) for name in self._FIELDS}

    def add(self, runs: DayRuns, release_before: int) -> dict[str, np.ndarray]:
        cells = runs.tr_cell
        fresh = {
            "at": runs.tr_at,
            "run_id": runs.run_id[runs.cell_run[cells]],
            "cell_order": np.arange(len(cells), dtype=np.int64),
            "step_id": runs.cell_step_id[cells],
            "from_": runs.tr_from,
            "to": runs.tr_to,
            "result": runs.tr_result,
            "user": runs.tr_user,
        }
        merged = {name: np.concatenate([self.pending[name], fresh[name].astype(np.int64)]) for name in self._FIELDS}
        ready = merged["at"] < release_before
        out = {name: merged[name][ready] for name in self._FIELDS}
        self.pending = {name: merged[name][~ready] for name in self._FIELDS}
        order = np.lexsort((out["cell_order"], out["run_id"], out["at"]))
        out = {name: values[order] for name, values in out.items()}
        out["hist_id"] = self.next_id + np.arange(len(order), dtype=np.int64)
        self.next_id += len(order)
        return out


def _history_rows(released: dict, previous: int | None, as_of: int, values: _Values, users: list[str]) -> Iterator[Job]:
    """History rows among `released` with changed_at in (previous, as_of]."""
    at = released["at"]
    pick = at <= as_of
    if previous is not None:
        pick &= at > previous
    users_array = np.array(users + ["WFENGINE"], dtype=object)
    picked = {name: array[pick] for name, array in released.items()}
    for i in range(0, len(picked["at"]), CHUNK_ROWS):
        rows = {name: array[i : i + CHUNK_ROWS] for name, array in picked.items()}
        from_ = rows["from_"]
        rows = list(
            zip(
                rows["hist_id"].tolist(),
                rows["run_id"].tolist(),
                rows["step_id"].tolist(),
                np.where(from_ >= 0, STATUSES[np.maximum(from_, 0)], None).tolist(),
                STATUSES[rows["to"]].tolist(),
                RESULT_CODES[rows["result"]].tolist(),
                values.timestamps(rows["at"]),
                users_array[rows["user"]].tolist(),
            )
        )
        yield source_schema.ows_run_step_history, _HISTORY_COLUMNS, rows
