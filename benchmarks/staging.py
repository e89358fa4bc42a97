"""A first staging load of every table on a demo source: wall time and peak memory by chunk size.

    .venv/bin/python benchmarks/staging.py prepare --runs-per-day 1340     # about 100k runs (12 weeks)
    .venv/bin/python benchmarks/staging.py run --chunk-rows 250000 --chunk-rows 100000000
    git archive <commit> | tar -x -C /tmp/before    # an older checkout, measured in the same run:
    .venv/bin/python benchmarks/staging.py run --chunk-rows 250000 --baseline /tmp/before --runs 3

`prepare` writes a demo OWS source into a fresh PostgreSQL database and extracts it into a
PostgreSQL warehouse database kept as a template (`raw_ows_*` loaded, nothing staged). `run`
copies the template for each measurement and stages the eight tables in dependency order in a
fresh process (`stage_from_raw`, no Great Expectations), then reports that process's wall time
and peak RSS (`resource.getrusage`, the figure `/usr/bin/time -v` reports as maximum resident
set size). A chunk size larger than the biggest table is the one-frame path: every table read,
cleaned, validated and written at once. `--baseline DIR` also measures the code of another
checkout (e.g. before staging streamed), alternating with this one, as the ratios' reference.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, os.environ.get("OWS_BENCH_CODE") or str(ROOT))  # the code measured (a child's choice)

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


def _measure(chunk_rows: int, code: str | None = None) -> dict:
    database = f"ows_bench_staging_{chunk_rows}"
    _admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    _admin(f'CREATE DATABASE "{database}" TEMPLATE "{TEMPLATE}"')
    env = {k: v for k, v in os.environ.items() if k != "OWS_BENCH_CODE"}
    if code:
        env["OWS_BENCH_CODE"] = code
    try:
        out = subprocess.run([sys.executable, __file__, "_child", _url(database), str(chunk_rows)],
                             capture_output=True, text=True, env=env)
        if out.returncode:
            raise SystemExit(f"staging with chunks of {chunk_rows:,} rows failed:\n{out.stderr[-3000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def run(chunk_sizes: list[int], runs: int, baseline: str | None) -> None:
    variants = [(f"chunks of {size:,}", size, None) for size in chunk_sizes]
    if baseline:
        variants.append((f"baseline {baseline}", max(chunk_sizes), baseline))
    results = {name: [] for name, _, _ in variants}
    for _ in range(runs):
        for name, size, code in variants:  # alternating, so load on the shared machine hits every variant alike
            results[name].append(_measure(size, code))
    reference = variants[-1][0]
    base_s = statistics.median(r["seconds"] for r in results[reference])
    base_m = statistics.median(r["peak_mib"] for r in results[reference])
    counts = results[reference][0]["counts"]
    print(f"rows (in, loaded, rejected) per table: {json.dumps(counts)}")
    print(f"| code | seconds (median of {runs}) | vs reference | peak RSS MiB (median) | vs reference | same counts |")
    print("|---|---:|---:|---:|---:|---|")
    for name, _, _ in variants:
        seconds = statistics.median(r["seconds"] for r in results[name])
        peak = statistics.median(r["peak_mib"] for r in results[name])
        same = all(r["counts"] == counts for r in results[name])
        print(f"| {name} | {seconds:.1f} | {seconds / base_s:.2f}x | {peak:,.0f} | {peak / base_m:.2f}x | "
              f"{'yes' if same else 'NO'} |")


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
    r.add_argument("--baseline", help="a checkout of other code to measure too (the ratios' reference)")
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.runs_per_day, args.weeks)
    else:
        run(args.chunk_rows or [250_000], args.runs, args.baseline)


if __name__ == "__main__":
    main()
