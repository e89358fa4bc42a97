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
import itertools
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import sqlalchemy as sa

from ows_pipeline.demo.batches import HistoryClock, changed_since, day_batches, history_batches
from ows_pipeline.demo.reference import DAY, WEEK, build_reference
from ows_pipeline.demo.runs import DayRuns, simulate_day
from ows_pipeline.demo.writer import BackgroundWriter, insert_batch
from ows_pipeline.source import schema as source_schema

UTC = dt.timezone.utc
GENERATOR_VERSION = "2"  # 2: a day of more than BLOCK_RUNS runs is drawn in blocks

DEFAULTS = {"seed": 42, "projects": 8, "feeds_per_project": 7, "workflows_per_project": 5, "runs_per_day": 400, "weeks": 12}


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
        written = _write(engine, params, _seconds(as_of_dt), previous=None, progress=progress, schema=schema)
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
        written = _write(engine, params, _seconds(target), previous=previous, progress=progress, schema=schema)
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


def _write(
    engine: sa.Engine, params: DemoParams, as_of: int, previous: int | None, progress: bool, schema: str | None = None
) -> dict[str, int]:
    """Write the source as of `as_of`; with `previous`, only what changed since that as-of.

    A fresh source is written one business day per transaction by a writer thread, so that
    the database works while the next block of runs is simulated; an advance is one transaction.
    """
    simulator = DaySimulator(params, as_of)
    ref = simulator.ref
    written = {t.name: 0 for t in source_schema.metadata.sorted_tables}
    first_day = params.history_start // DAY
    last_day = as_of // DAY
    bar = _progress_bar(max(0, last_day - first_day + 1), progress, "OWS demo source")
    history = HistoryClock()
    try:
        if previous is None:
            with engine.begin() as conn:
                _write_reference(conn, ref, as_of, None, written)
            with BackgroundWriter(engine, schema, written) as writer:
                for day in range(first_day, last_day + 1):
                    for runs, frontier in simulator.day(day):
                        released = history.add(runs, release_before=frontier)
                        for batch in itertools.chain(
                            day_batches(runs, as_of, ref.users), history_batches(released, None, as_of, ref.users)
                        ):
                            writer.submit(batch)
                    writer.commit()
                    _tick(bar, writer.runs_submitted)
        else:
            run_table, step_table = source_schema.ows_workflow_run, source_schema.ows_run_step_status
            with engine.begin() as conn:
                _write_reference(conn, ref, as_of, previous, written)
                conn.execute(ows_demo_state.update().values(as_of=_datetime(as_of)))
                for day in range(first_day, last_day + 1):
                    for runs, frontier in simulator.day(day):
                        released = history.add(runs, release_before=frontier)
                        gone_runs, gone_steps, batches = changed_since(runs, previous, as_of, ref.users)
                        for chunk in _chunks(gone_runs, 500):
                            conn.execute(run_table.delete().where(run_table.c.run_id.in_(chunk)))
                        for run_id, step_ids in sorted(gone_steps.items()):
                            conn.execute(
                                step_table.delete().where(step_table.c.run_id == run_id, step_table.c.step_id.in_(step_ids))
                            )
                        for batch in itertools.chain(batches, history_batches(released, previous, as_of, ref.users)):
                            written[batch.table.name] += insert_batch(conn, batch)
                    _tick(bar, written["ows_workflow_run"])
    finally:
        if bar is not None:
            bar.close()
    return written


def _tick(bar, runs: int) -> None:
    if bar is not None:
        bar.update(1)
        bar.set_postfix_str(f"{runs:,} runs")


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
