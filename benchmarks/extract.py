"""Benchmark: extract workflow runs and their step rows from PostgreSQL into a PostgreSQL warehouse.

Ours (`extract_table`: streamed chunks, COPY, set-based merge) against a naive baseline measured
in the same run on the same data (`pandas.read_sql` + `DataFrame.to_sql`). Each measurement runs
in a fresh process so its peak RSS is its own; the median of --repeats runs is reported.

    .venv/bin/python benchmarks/extract.py                       # quick: 100k runs
    .venv/bin/python benchmarks/extract.py --runs 1000000,4000000 --baseline-max-runs 1000000
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


def worker(kind: str, source_url: str, warehouse_url: str) -> None:
    """Runs in its own process; prints seconds, rows and peak RSS as JSON."""
    rows = 0
    start = time.perf_counter()
    if kind == "ours":
        from ows_pipeline.extract.extraction import ExtractOptions, extract_table
        from ows_pipeline.resources import make_engine
        from ows_pipeline.source.schema import SOURCE_TABLES_BY_NAME

        source = make_engine(source_url)
        warehouse = make_engine(warehouse_url, role="warehouse")
        from ows_pipeline.warehouse.schema import create_warehouse_tables

        create_warehouse_tables(warehouse)
        start = time.perf_counter()
        for table in TABLES:
            rows += extract_table(source, warehouse, SOURCE_TABLES_BY_NAME[table], ExtractOptions()).rows_loaded
    else:
        import pandas as pd

        source = sa.create_engine(source_url)
        warehouse = sa.create_engine(warehouse_url)
        for table in TABLES:
            frame = pd.read_sql(f"SELECT * FROM {table}", source)
            frame.to_sql(f"raw_{table}", warehouse, if_exists="append", index=False)
            rows += len(frame)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "rows": rows, "peak_mb": peak_mb}))


def measure(kind: str, source_url: str) -> dict:
    warehouse_url = create_database("ows_bench_wh")
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--worker", kind, "--source", source_url, "--warehouse", warehouse_url],
            capture_output=True, text=True, check=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        drop_database(warehouse_url)


def median_of(results: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in results) for k in results[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="100000", help="comma-separated source sizes (workflow runs)")
    parser.add_argument("--steps-per-run", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-max-runs", type=int, default=1_000_000, help="skip the slow baseline above this")
    parser.add_argument("--worker", choices=["ours", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    parser.add_argument("--warehouse", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.source, args.warehouse)
        return

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{'runs':>9} {'rows':>10} {'impl':>8} {'seconds':>8} {'rows/s':>10} {'peak MB':>8} {'ratio':>6}")
    peaks = {}
    for runs in (int(x) for x in args.runs.split(",")):
        source_url = build_source(runs, args.steps_per_run)
        try:
            ours = median_of([measure("ours", source_url) for _ in range(args.repeats)])
            peaks[runs] = ours["peak_mb"]
            base = None
            if runs <= args.baseline_max_runs:
                base = median_of([measure("baseline", source_url) for _ in range(args.repeats)])
            for name, r in (("ours", ours), ("baseline", base)):
                if r is None:
                    continue
                ratio = (r["rows"] / r["seconds"]) / (base["rows"] / base["seconds"]) if base else float("nan")
                print(f"{runs:>9,} {int(r['rows']):>10,} {name:>8} {r['seconds']:>8.1f} "
                      f"{r['rows'] / r['seconds']:>10,.0f} {r['peak_mb']:>8.0f} {ratio:>6.2f}")
        finally:
            drop_database(source_url)
    if len(peaks) > 1:
        small, large = min(peaks), max(peaks)
        print(f"peak RSS ours at {large:,} runs / at {small:,} runs: {peaks[large] / peaks[small]:.2f}x")


if __name__ == "__main__":
    main()
