"""A first staging load of every table on a demo source: wall time and peak memory by chunk size.

    .venv/bin/python benchmarks/staging.py prepare --runs-per-day 1340     # about 100k runs (12 weeks)
    .venv/bin/python benchmarks/staging.py run --chunk-rows 250000 --chunk-rows 100000000

`prepare` writes a demo OWS source into a fresh PostgreSQL database and extracts it into a
PostgreSQL warehouse database kept as a template (`raw_ows_*` loaded, nothing staged). `run`
copies the template for each measurement and stages the eight tables in dependency order in a
fresh process (`stage_from_raw`, no Great Expectations), then reports that process's wall time
and peak RSS (`resource.getrusage`, the figure `/usr/bin/time -v` reports as maximum resident
set size). A chunk size larger than the biggest table is the one-frame baseline: every table
read, cleaned, validated and written at once, as staging did before it streamed.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from scratch_db import ADMIN_URL  # noqa: E402

TEMPLATE = "ows_bench_staging_template"
SOURCE = "ows_bench_staging_source"
AS_OF = "2026-11-15T02:00:00+00:00"
ORDER = ("ows_project", "ows_feed", "ows_match_process", "ows_workflow", "ows_workflow_step",
         "ows_workflow_run", "ows_run_step_status", "ows_run_step_history")


def _url(database: str) -> str:
    import sqlalchemy as sa

    return sa.make_url(ADMIN_URL).set(database=database).render_as_string(hide_password=False)


def _admin(sql: str) -> None:
    import sqlalchemy as sa

    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(sql)
    admin.dispose()


def prepare(runs_per_day: int, weeks: int) -> None:
    import sqlalchemy as sa

    from ows_pipeline.demo.source import generate_demo
    from ows_pipeline.extract.extraction import extract_table
    from ows_pipeline.source.schema import SOURCE_TABLES
    from ows_pipeline.warehouse.schema import create_warehouse_tables

    for name in (TEMPLATE, SOURCE):
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        _admin(f'CREATE DATABASE "{name}"')
    generate_demo(_url(SOURCE), runs_per_day=runs_per_day, weeks=weeks, as_of=AS_OF)
    source, warehouse = sa.create_engine(_url(SOURCE)), sa.create_engine(_url(TEMPLATE))
    create_warehouse_tables(warehouse)
    for table in SOURCE_TABLES:
        result = extract_table(source, warehouse, table)
        print(f"{table.name}: {result.rows_in:,} raw rows")
    source.dispose()
    warehouse.dispose()


def _stage_all(url: str, chunk_rows: int) -> dict:
    """Child process: stage every table once; returns wall seconds, peak RSS and counts."""
    import inspect

    import sqlalchemy as sa

    from ows_pipeline.staging.from_raw import stage_from_raw
    from ows_pipeline.warehouse.batches import new_batch_id

    engine = sa.create_engine(url)
    chunked = "chunk_rows" in inspect.signature(stage_from_raw).parameters
    started = time.perf_counter()
    counts = {}
    for name in ORDER:
        extra = {"chunk_rows": chunk_rows} if chunked else {}
        result = stage_from_raw(engine, name, batch_id=new_batch_id(), **extra)
        counts[name] = (result.rows_in, result.loaded, result.rejected)
        del result
    seconds = time.perf_counter() - started
    engine.dispose()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "peak_mib": peak_mib, "counts": counts, "chunked": chunked}


def _measure(chunk_rows: int) -> dict:
    database = f"ows_bench_staging_{chunk_rows}"
    _admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    _admin(f'CREATE DATABASE "{database}" TEMPLATE "{TEMPLATE}"')
    try:
        out = subprocess.run([sys.executable, __file__, "_child", _url(database), str(chunk_rows)],
                             capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(f"staging with chunks of {chunk_rows:,} rows failed:\n{out.stderr[-3000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def run(chunk_sizes: list[int], runs: int) -> None:
    results = {size: [] for size in chunk_sizes}
    for _ in range(runs):
        for size in chunk_sizes:  # alternating, so load on the shared machine hits every size alike
            results[size].append(_measure(size))
    baseline = max(chunk_sizes)
    base_s = statistics.median(r["seconds"] for r in results[baseline])
    base_m = statistics.median(r["peak_mib"] for r in results[baseline])
    counts = {size: rows[0]["counts"] for size, rows in results.items()}
    print(f"rows (in, loaded, rejected) per table: {json.dumps(counts[baseline])}")
    print("| chunk rows | seconds (median) | vs one frame | peak RSS MiB (median) | vs one frame | same counts |")
    print("|---:|---:|---:|---:|---:|---|")
    for size in chunk_sizes:
        seconds = statistics.median(r["seconds"] for r in results[size])
        peak = statistics.median(r["peak_mib"] for r in results[size])
        print(f"| {size:,} | {seconds:.1f} | {seconds / base_s:.2f}x | {peak:,.0f} | {peak / base_m:.2f}x | "
              f"{'yes' if counts[size] == counts[baseline] else 'NO'} |")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        print(json.dumps(_stage_all(sys.argv[2], int(sys.argv[3]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="demo source and extracted template warehouse")
    p.add_argument("--runs-per-day", type=int, default=134)
    p.add_argument("--weeks", type=int, default=12)
    r = sub.add_parser("run", help="stage every table from a copy of the template")
    r.add_argument("--chunk-rows", type=int, action="append", help="chunk sizes (repeat); the largest is the baseline")
    r.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.runs_per_day, args.weeks)
    else:
        run(args.chunk_rows or [250_000, 100_000_000], args.runs)


if __name__ == "__main__":
    main()
