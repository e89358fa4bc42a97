"""Benchmark: extract workflow runs and their step rows, for every source/warehouse pair.

Ours (`extract_table`: Arrow batches, COPY or executemany, set-based merge, ledger) against two
references measured in the same run on the same rows:

- baseline: chunked pandas, `read_sql(chunksize=50_000)` + `to_sql` (a competent user's script);
- raw COPY: `COPY (SELECT ...) TO STDOUT` piped into `COPY ... FROM STDIN` of the same
  `raw_ows_*` tables (with their unique key index) in a PostgreSQL warehouse, nothing else
  (no ledger, no watermark): the ceiling of any load that ends in PostgreSQL.

Pairs: PostgreSQL -> PostgreSQL, SQLite -> PostgreSQL, PostgreSQL -> SQLite. Each measurement
runs in a fresh process so its peak RSS (ru_maxrss) is its own; medians of --repeats runs.

    .venv/bin/python benchmarks/extract.py                       # quick: 100k runs
    .venv/bin/python benchmarks/extract.py --runs 1000000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import sqlalchemy as sa
from scratch_db import create_database, drop_database

TABLES = ("ows_workflow_run", "ows_run_step_status")

FILL_RUNS = """
INSERT INTO ows_workflow_run
SELECT g, 1000 + g % 500, 'RK' || g, CASE WHEN g % 20 = 0 THEN g - 1 END,
       date '2025-01-01' + (g % 600),
       (ARRAY['COMPLETE','COMPLETE','COMPLETE','ERROR','ACTIVE','SUSPEND'])[1 + g % 6],
       (ARRAY['MATCHED','BREAKS','PARTIAL','#FORCE','#EXCEPTION','#TIMEOUT'])[1 + g % 6],
       g % 100000, g % 90000, g % 5000, g % 5000,
       timestamptz '2025-01-01 00:00:00+00' + g * interval '7 seconds',
       CASE WHEN g % 6 = 4 THEN NULL ELSE timestamptz '2025-01-01 00:10:00+00' + g * interval '7 seconds' END,
       timestamptz '2025-01-01 00:20:00+00' + g * interval '7 seconds'
FROM generate_series(1, :n) AS g
"""

FILL_STEPS = """
INSERT INTO ows_run_step_status
SELECT r, 10 * (r % 500) + s,
       (ARRAY['COMPLETE','ACTIVE','WAITING','ERROR'])[1 + (r + s) % 4],
       CASE WHEN s = 2 THEN 'MATCHED' ELSE 'OK' END,
       'user' || (r % 37), CASE WHEN (r + s) % 4 = 3 THEN 'WFENG_ERR' END,
       CASE WHEN (r + s) % 4 = 3 THEN 'Step failed: feed file missing for business date' END,
       timestamptz '2025-01-01 00:00:00+00' + r * interval '7 seconds',
       timestamptz '2025-01-01 00:05:00+00' + r * interval '7 seconds',
       timestamptz '2025-01-01 00:20:00+00' + r * interval '7 seconds'
FROM generate_series(1, :n) AS r CROSS JOIN generate_series(1, :steps) AS s
"""


def build_source(runs: int, steps: int) -> str:
    from ows_pipeline.source.schema import metadata

    url = create_database("ows_bench_src")
    engine = sa.create_engine(url)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.text(FILL_RUNS), {"n": runs})
        conn.execute(sa.text(FILL_STEPS), {"n": runs, "steps": steps})
        conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    return url


def copy_to_sqlite(pg_url: str, path: str) -> str:
    """The same rows in a SQLite source, written by sqlite3 itself (SQLAlchemy's text forms)."""
    import sqlite3

    from ows_pipeline.source.schema import metadata

    url = f"sqlite:///{path}"
    engine = sa.create_engine(url)
    metadata.create_all(engine)
    engine.dispose()
    pg = sa.create_engine(pg_url)
    target = sqlite3.connect(path)
    with pg.connect() as conn:
        conn.exec_driver_sql("SET TIME ZONE 'UTC'")
        for table in TABLES:
            columns = [c for c in metadata.tables[table].columns]
            select = ", ".join(
                f"to_char({c.name}, 'YYYY-MM-DD HH24:MI:SS.US')" if isinstance(c.type, sa.DateTime)
                else f"{c.name}::text" if isinstance(c.type, sa.Date) else c.name
                for c in columns
            )
            result = conn.execution_options(stream_results=True).exec_driver_sql(f"SELECT {select} FROM {table}")
            marks = ", ".join("?" for _ in columns)
            for part in result.partitions(100_000):
                target.executemany(f"INSERT INTO {table} VALUES ({marks})", [tuple(r) for r in part])
    target.commit()
    target.close()
    pg.dispose()
    return url


def _pg_copy_pipe(source_url: str, warehouse_url: str, table: str, target: str) -> int:
    src = sa.create_engine(source_url).raw_connection()
    dst = sa.create_engine(warehouse_url).raw_connection()
    read_fd, write_fd = os.pipe()

    def produce():
        with os.fdopen(write_fd, "wb") as out:
            select = f"SELECT *, 'bench', now() FROM {table}"  # plus _batch_id, _extracted_at
            src.cursor().copy_expert(f"COPY ({select}) TO STDOUT", out, size=1 << 20)

    producer = threading.Thread(target=produce)
    producer.start()
    cursor = dst.cursor()
    with os.fdopen(read_fd, "rb") as inp:
        cursor.copy_expert(f"COPY {target} FROM STDIN", inp, size=1 << 20)
    producer.join()
    rows = cursor.rowcount
    dst.commit()
    return rows


def worker(kind: str, source_url: str, warehouse_url: str) -> None:
    """Runs in its own process; prints seconds, rows and peak RSS as JSON."""
    rows = 0
    if kind == "ours":
        from ows_pipeline.extract.extraction import ExtractOptions, extract_table
        from ows_pipeline.resources import make_engine
        from ows_pipeline.source.schema import SOURCE_TABLES_BY_NAME
        from ows_pipeline.warehouse.schema import create_warehouse_tables

        source = make_engine(source_url)
        warehouse = make_engine(warehouse_url, role="warehouse")
        create_warehouse_tables(warehouse)
        start = time.perf_counter()
        for table in TABLES:
            rows += extract_table(source, warehouse, SOURCE_TABLES_BY_NAME[table], ExtractOptions()).rows_loaded
    elif kind == "raw_copy":
        from ows_pipeline.warehouse.schema import create_warehouse_tables

        engine = sa.create_engine(warehouse_url)
        create_warehouse_tables(engine)  # the same raw tables, with their unique key index
        engine.dispose()
        start = time.perf_counter()
        for table in TABLES:
            rows += _pg_copy_pipe(source_url, warehouse_url, table, f"raw_{table}")
    else:
        import pandas as pd

        source = sa.create_engine(source_url)
        warehouse = sa.create_engine(warehouse_url)
        start = time.perf_counter()
        for table in TABLES:
            for frame in pd.read_sql(f"SELECT * FROM {table}", source, chunksize=50_000):
                frame.to_sql(f"raw_{table}", warehouse, if_exists="append", index=False)
                rows += len(frame)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "rows": rows, "peak_mb": peak_mb}))


def measure(kind: str, source_url: str, warehouse: str) -> dict:
    if warehouse == "postgresql":
        warehouse_url = create_database("ows_bench_wh")
    else:
        handle, path = tempfile.mkstemp(suffix=".db", prefix="ows_bench_wh_")
        os.close(handle)
        os.unlink(path)
        warehouse_url = f"sqlite:///{path}"
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--worker", kind, "--source", source_url, "--warehouse", warehouse_url],
            capture_output=True, text=True,
        )
        if out.returncode:
            raise SystemExit(f"{kind} {source_url} -> {warehouse_url} failed:\n{out.stderr}")
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        if warehouse == "postgresql":
            drop_database(warehouse_url)
        else:
            os.unlink(sa.make_url(warehouse_url).database)


def median_of(results: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in results) for k in results[0]}


PAIRS = (
    ("postgresql", "postgresql", ("ours", "raw_copy")),
    ("sqlite", "postgresql", ("ours", "baseline", "raw_copy")),
    ("postgresql", "sqlite", ("ours", "baseline")),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="100000", help="comma-separated source sizes (workflow runs)")
    parser.add_argument("--steps-per-run", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pairs", default="all", help="comma-separated SOURCE-WAREHOUSE, e.g. sqlite-postgresql")
    parser.add_argument("--baseline-max-runs", type=int, default=1_000_000, help="skip the slow baseline above this")
    parser.add_argument("--worker", choices=["ours", "baseline", "raw_copy"], help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    parser.add_argument("--warehouse", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.source, args.warehouse)
        return
    pairs = [p for p in PAIRS if args.pairs == "all" or f"{p[0]}-{p[1]}" in args.pairs.split(",")]

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f}; medians of {args.repeats}")
    print(f"{'runs':>9} {'pair':>22} {'impl':>9} {'rows':>10} {'seconds':>8} {'rows/s':>10} {'peak MB':>8} "
          f"{'x base':>7} {'of COPY':>8}")
    for runs in (int(x) for x in args.runs.split(",")):
        pg_source = build_source(runs, args.steps_per_run)
        sqlite_dir = tempfile.mkdtemp(prefix="ows_bench_src_")
        sources = {"postgresql": pg_source, "sqlite": copy_to_sqlite(pg_source, os.path.join(sqlite_dir, "source.db"))}
        raw_copy = None
        try:
            for source, warehouse, kinds in pairs:
                results = {}
                for kind in kinds:
                    if kind == "baseline" and runs > args.baseline_max_runs:
                        continue
                    if kind == "raw_copy" and raw_copy is not None:
                        results[kind] = raw_copy
                        continue
                    source_url = pg_source if kind == "raw_copy" else sources[source]
                    results[kind] = median_of([measure(kind, source_url, warehouse) for _ in range(args.repeats)])
                    if kind == "raw_copy":
                        raw_copy = results[kind]
                base, copy = results.get("baseline"), results.get("raw_copy")
                for kind, r in results.items():
                    speed = r["rows"] / r["seconds"]
                    x_base = f"{speed / (base['rows'] / base['seconds']):.2f}" if base else "n/a"
                    of_copy = f"{speed / (copy['rows'] / copy['seconds']):.0%}" if copy else "n/a"
                    print(f"{runs:>9,} {source + ' -> ' + warehouse:>22} {kind:>9} {int(r['rows']):>10,} "
                          f"{r['seconds']:>8.1f} {speed:>10,.0f} {r['peak_mb']:>8.0f} {x_base:>7} {of_copy:>8}",
                          flush=True)
        finally:
            drop_database(pg_source)
            os.unlink(sa.make_url(sources["sqlite"]).database)
            os.rmdir(sqlite_dir)


if __name__ == "__main__":
    main()
