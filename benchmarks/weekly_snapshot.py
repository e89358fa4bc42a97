"""Benchmark: build one week of `fct_workflow_run_weekly` from the demo OWS history.

Ours (`build_week`: one set-based INSERT ... SELECT, status of open runs from step history, the
point-in-time dimension joins) against a baseline measured in the same run on the same data: the
ad-hoc way, `pandas.read_sql` of the run and step-history tables and the same state-as-of-the-week's-
end logic in pandas (no dimensions, no write). The two must agree on every run's status. Medians
of --repeats builds.

    .venv/bin/python benchmarks/weekly_snapshot.py                               # quick: SQLite
    .venv/bin/python benchmarks/weekly_snapshot.py --runs-per-day 8000 --weeks 12 --backend sqlite,postgresql
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ows_pipeline.facts.weekly_snapshot import build_week, week_for_key  # noqa: E402
from ows_pipeline.resources import make_engine  # noqa: E402
from ows_pipeline.demo.source import generate_demo  # noqa: E402
from ows_pipeline.source.schema import SOURCE_TABLES  # noqa: E402
from ows_pipeline.warehouse.schema.staging import STAGING_TABLES  # noqa: E402
from ows_pipeline.warehouse.bulk import insert_rows  # noqa: E402
from ows_pipeline.warehouse.schema import create_warehouse_tables  # noqa: E402

ADMIN_URL = os.environ.get("OWS_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
UTC = dt.timezone.utc
AS_OF = dt.datetime(2025, 11, 26, 12, 0, tzinfo=UTC)  # a Wednesday: the week before is complete
WEEK = "2025-11-16"


def copy_to_staging(source: sa.Engine, warehouse: sa.Engine) -> dict[str, int]:
    """Load the whole source into the staging tables, as a full pipeline run would."""
    create_warehouse_tables(warehouse)
    counts = {}
    with source.connect() as src, warehouse.begin() as dst:
        for table in SOURCE_TABLES:
            stg = STAGING_TABLES[table.name]
            names = [c.name for c in table.table.columns]
            flag = names.index("active_flag") if "active_flag" in names else None
            rows = []
            for row in src.execute(sa.select(table.table)):
                row = list(row)
                if flag is not None:
                    row[flag] = row[flag] == "Y"
                rows.append((*row, "bench"))
            dst.execute(sa.delete(stg))
            counts[table.name] = insert_rows(dst, stg, [*names, "_batch_id"], rows)
    if warehouse.dialect.name == "postgresql":
        with warehouse.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(sa.text("ANALYZE"))
    return counts


def pandas_week(warehouse: sa.Engine, week) -> dict[int, str]:
    """Baseline: the same states with pandas from full table reads."""
    import pandas as pd

    runs = pd.read_sql("SELECT run_id, status, begin_date, end_date FROM stg_ows_workflow_run", warehouse)
    hist = pd.read_sql("SELECT hist_id, run_id, to_status, changed_at FROM stg_ows_run_step_history", warehouse)
    for frame, columns in ((runs, ("begin_date", "end_date")), (hist, ("changed_at",))):
        for column in columns:
            frame[column] = pd.to_datetime(frame[column], utc=True, format="mixed")
    start, end = pd.Timestamp(week.start_utc), pd.Timestamp(week.end_utc)
    runs = runs[(runs.begin_date < end) & (runs.end_date.isna() | (runs.end_date >= start))]
    ended = runs.end_date.notna() & (runs.end_date < end)
    hist = hist[(hist.changed_at < end) & hist.run_id.isin(runs.run_id[~ended])]
    last = hist.sort_values("hist_id").groupby("run_id").to_status.last()
    open_status = runs.run_id.map(last).eq("SUSPEND").map({True: "SUSPEND", False: "ACTIVE"})
    status = runs.status.where(ended, open_status)
    return dict(zip(runs.run_id.tolist(), status.tolist()))


def ours_states(warehouse: sa.Engine, week) -> dict[int, str]:
    with warehouse.connect() as conn:
        return dict(conn.execute(sa.text("SELECT run_id, status FROM fct_workflow_run_weekly WHERE week_start = :w"),
                                 {"w": week.start}).all())


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-per-day", type=int, default=1000)
    parser.add_argument("--weeks", type=int, default=4)
    parser.add_argument("--backend", default="sqlite", help="sqlite, postgresql or both, comma separated")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ows_bench_week_"))
    try:
        run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args, work: Path) -> None:
    source_url = f"sqlite:///{work / 'ows.db'}"
    started = time.perf_counter()
    summary = generate_demo(source_url, runs_per_day=args.runs_per_day, weeks=args.weeks, as_of=AS_OF)
    print(f"demo source: {summary.rows['ows_workflow_run']:,} runs, {summary.rows['ows_run_step_history']:,} "
          f"history rows ({time.perf_counter() - started:.1f} s)")
    source = make_engine(source_url)
    week = week_for_key(WEEK, "Europe/London")

    print(f"\n{'backend':<11} {'runs in week':>12} {'ours s':>8} {'pandas s':>9} {'ratio':>6} {'agree':>6}")
    for backend in args.backend.split(","):
        database = None
        if backend == "postgresql":
            database = f"ows_bench_week_{uuid.uuid4().hex[:8]}"
            admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
            url = sa.make_url(ADMIN_URL).set(database=database).render_as_string(hide_password=False)
        else:
            url = f"sqlite:///{work / 'warehouse.db'}"
        try:
            warehouse = make_engine(url, role="warehouse")
            copy_to_staging(source, warehouse)
            ours_s, built = timed(lambda: build_week(warehouse, week), args.repeats)
            pandas_s, expected = timed(lambda: pandas_week(warehouse, week), args.repeats)
            agree = ours_states(warehouse, week) == expected
            print(f"{backend:<11} {built.rows:>12,} {ours_s:>8.2f} {pandas_s:>9.2f} {ours_s / pandas_s:>6.2f} {str(agree):>6}")
            warehouse.dispose()
        finally:
            if database:
                from ows_pipeline.resources import _engine

                _engine.cache_clear()
                with admin.connect() as conn:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
