"""Upload benchmark: one sensor tick over a large archive, and loading a large OWS export.

1. Sensor tick: a landing folder holding N already-processed files (archived in `processed/`
   and registered in `upload_registry`) plus 10 new ones. Baselines in the same run: the same
   tick with an empty archive, and a naive scan that walks and hashes the whole folder.
2. Loading an `ows_export` file of R rows (`ows_project`, CSV and XLSX) end to end (parse,
   staging suite, staging table, SCD2 merge into `dim_project`, registry), each in a fresh
   process: rows/s and peak RSS. Baseline: reading the same file with pandas / openpyxl only.

Small sizes by default; `--full` runs the sizes of the target (10,000 files, 500,000 rows).

    .venv/bin/python benchmarks/uploads.py            # about a minute
    .venv/bin/python benchmarks/uploads.py --full     # several minutes
    .venv/bin/python benchmarks/uploads.py --full --pg postgresql+psycopg2://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HEADER = "project_id,project_code,project_name,business_unit,owner,active_flag,created_at,updated_at"
UNITS = ["Treasury", "Markets", "Finance", "Payments", "Retail", "Securities Services", "Lending", "Operations"]


def _warehouse(url_base: str | None, folder: Path) -> tuple[str, callable]:
    """A fresh warehouse URL (SQLite file, or a new PostgreSQL database) and its clean-up."""
    if not url_base:
        return f"sqlite:///{folder / 'warehouse.db'}", lambda: None
    import sqlalchemy as sa

    name = f"ows_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url_base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def drop():
        from ows_pipeline.resources import _engine

        _engine.cache_clear()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    return sa.make_url(url_base).set(database=name).render_as_string(hide_password=False), drop


# --- 1. sensor tick ---------------------------------------------------------------------------


def _fill_archive(engine, landing, archived: int) -> None:
    """`archived` small processed files on disk and in the registry."""
    import sqlalchemy as sa

    from ows_pipeline.warehouse.schema.uploads import upload_registry

    kinds = ["feed_sla", "project_metadata", "ows_export"]
    now = dt.datetime.now(dt.timezone.utc)
    rows = []
    for i in range(archived):
        kind = kinds[i % 3]
        name = f"archived_{i:06d}.csv"
        content = f"feed_code,expected_arrival_time,sla_minutes,owner_team\nF{i},07:00,30,Ops\n".encode()
        (landing.root / "processed" / kind / name).write_bytes(content)
        rows.append(
            dict(file_name=name, kind=kind, sha256=hashlib.sha256(content).hexdigest(), size_bytes=len(content),
                 received_at=now, status="LOADED", current_path=f"processed/{kind}/{name}")
        )
    with engine.begin() as conn:
        for start in range(0, len(rows), 5000):
            conn.execute(sa.insert(upload_registry), rows[start : start + 5000])


def _drop_new(landing, round_: int, count: int = 10) -> list[Path]:
    paths = []
    for i in range(count):
        path = landing.root / "feed_sla" / f"new_{round_}_{i}.csv"
        path.write_text(f"feed_code,expected_arrival_time,sla_minutes,owner_team\nN{round_}_{i},07:00,30,Ops\n")
        paths.append(path)
    return paths


def _naive_scan(root: Path) -> int:
    """What a simple sensor does: walk everything and hash every file."""
    count = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            with open(os.path.join(folder, name), "rb") as handle:
                hashlib.sha256(handle.read()).hexdigest()
            count += 1
    return count


def bench_tick(archived: int, repeats: int, pg: str | None) -> list[tuple]:
    from ows_pipeline.resources import make_engine
    from ows_pipeline.uploads.landing import LandingFolder
    from ows_pipeline.uploads.limits import UploadLimits
    from ows_pipeline.uploads.sensing import sensor_tick
    from ows_pipeline.warehouse.schema import create_warehouse_tables

    limits = UploadLimits(settle_seconds=0)
    results = []
    for label, size in (("empty archive (baseline)", 0), (f"{archived:,} archived files", archived)):
        folder = Path(tempfile.mkdtemp(prefix="ows_bench_tick_"))
        url, drop = _warehouse(pg, folder)
        try:
            engine = make_engine(url, role="warehouse")
            create_warehouse_tables(engine)
            landing = LandingFolder(folder / "landing")
            landing.ensure()
            _fill_archive(engine, landing, size)
            cursor = None
            times = []
            for round_ in range(repeats):
                new = _drop_new(landing, round_)
                started = time.perf_counter()
                tick = sensor_tick(engine, landing, cursor, limits, now=time.time() + 60)
                times.append(time.perf_counter() - started)
                assert len(tick.requests) == 10, tick.log
                cursor = tick.cursor
                for path in new:  # what the runs do: archive the files
                    landing.move(path, landing.archive_target("processed", "feed_sla", path.name))
            naive = []
            for _ in range(repeats):
                started = time.perf_counter()
                _naive_scan(landing.root)
                naive.append(time.perf_counter() - started)
            results.append((label, statistics.median(times), max(times), statistics.median(naive)))
            engine.dispose()
        finally:
            drop()
            shutil.rmtree(folder, ignore_errors=True)
    return results


# --- 2. loading a large export ----------------------------------------------------------------


def write_export_csv(path: Path, rows: int) -> None:
    base = dt.datetime(2025, 1, 1)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(HEADER + "\n")
        for i in range(1, rows + 1):
            created = base + dt.timedelta(minutes=i)
            handle.write(
                f"{i},PRJ_{i:07d},Project number {i},{UNITS[i % len(UNITS)]},owner.{i % 997},"
                f"{'Y' if i % 17 else 'N'},{created:%Y-%m-%d %H:%M:%S},{created + dt.timedelta(days=30):%Y-%m-%d %H:%M:%S}\n"
            )


def write_export_xlsx(path: Path, rows: int) -> None:
    import openpyxl

    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet("ows_project")
    sheet.append(HEADER.split(","))
    base = dt.datetime(2025, 1, 1)
    for i in range(1, rows + 1):
        created = base + dt.timedelta(minutes=i)
        sheet.append([i, f"PRJ_{i:07d}", f"Project number {i}", UNITS[i % len(UNITS)], f"owner.{i % 997}",
                      "Y" if i % 17 else "N", created, created + dt.timedelta(days=30)])
    workbook.save(path)


def child_load(file: str, url: str, max_rows: int) -> dict:
    """In a fresh process: register and process one export file; report time, rows and peak RSS."""
    import resource

    os.environ["OWS_UPLOAD_MAX_ROWS"] = str(max_rows)
    os.environ["OWS_UPLOAD_MAX_BYTES"] = str(2 * 1024**3)
    from ows_pipeline.resources import make_engine
    from ows_pipeline.uploads.landing import LandingFolder
    from ows_pipeline.uploads.limits import UploadLimits
    from ows_pipeline.uploads.processing import process_upload
    from ows_pipeline.uploads.sensing import sensor_tick
    from ows_pipeline.warehouse.schema import create_warehouse_tables

    import pandas  # noqa: F401 - part of the process's fixed cost, not of the load
    import openpyxl  # noqa: F401

    import ows_pipeline.staging.quarantine  # noqa: F401
    import ows_pipeline.scd2  # noqa: F401

    engine = make_engine(url, role="warehouse")
    create_warehouse_tables(engine)
    folder = Path(tempfile.mkdtemp(prefix="ows_bench_load_"))
    landing = LandingFolder(folder / "landing")
    landing.ensure()
    target = landing.root / "ows_export" / Path(file).name
    shutil.copy(file, target)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    limits = UploadLimits.from_env()
    started = time.perf_counter()
    tick = sensor_tick(engine, landing, None, limits, now=time.time() + 60)
    (request,) = tick.requests
    outcome = process_upload(engine, landing, request.upload_id, limits=limits)
    seconds = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    shutil.rmtree(folder, ignore_errors=True)
    return {"status": outcome.status, "summary": outcome.summary[:300], "rows": outcome.rows, "seconds": seconds,
            "peak_rss_mb": rss / 1024, "rss_before_mb": rss_before / 1024}


def child_read(file: str) -> dict:
    """Baseline: only read the file (pandas for CSV, openpyxl read-only for XLSX)."""
    import resource

    import openpyxl
    import pandas as pd

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    if file.endswith(".csv"):
        rows = len(pd.read_csv(file, dtype=str, keep_default_na=False))
    else:
        workbook = openpyxl.load_workbook(file, read_only=True)
        rows = sum(1 for _ in workbook.worksheets[0].iter_rows(values_only=True)) - 1
        workbook.close()
    seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_before_mb": rss_before / 1024}


def _child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_load(rows: int, repeats: int, pg: str | None, formats: list[str]) -> list[tuple]:
    folder = Path(tempfile.mkdtemp(prefix="ows_bench_files_"))
    results = []
    try:
        for fmt in formats:
            path = folder / f"ows_project_2026-11-01.{fmt}"
            started = time.perf_counter()
            (write_export_csv if fmt == "csv" else write_export_xlsx)(path, rows)
            written = time.perf_counter() - started
            size_mb = path.stat().st_size / 1024**2
            reads = [_child(["--child-read", str(path)]) for _ in range(repeats)]
            loads = []
            for _ in range(repeats):
                url, drop = _warehouse(pg, folder)
                try:
                    loads.append(_child(["--child-load", str(path), "--url", url, "--max-rows", str(rows + 1)]))
                finally:
                    drop()
                    for leftover in folder.glob("warehouse.db*"):
                        leftover.unlink()
            assert all(r["status"] == "LOADED" for r in loads), loads
            read_s = statistics.median(r["seconds"] for r in reads)
            load_s = statistics.median(r["seconds"] for r in loads)
            results.append(
                (fmt, rows, size_mb, written, read_s, max(r["peak_rss_mb"] for r in reads), load_s,
                 rows / load_s, max(r["peak_rss_mb"] for r in loads), min(r["rss_before_mb"] for r in loads))
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="10,000 archived files and 500,000-row exports")
    parser.add_argument("--archived", type=int, help="archived files for the tick (default 1,000; --full 10,000)")
    parser.add_argument("--rows", type=int, help="rows of the export (default 20,000; --full 500,000)")
    parser.add_argument("--repeats", type=int, help="runs per measurement (median; default 5 ticks, 3 loads)")
    parser.add_argument("--formats", default="csv,xlsx", help="export formats to load (csv,xlsx)")
    parser.add_argument("--pg", help="PostgreSQL admin URL: run against fresh PostgreSQL databases")
    parser.add_argument("--skip-tick", action="store_true")
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--child-load", help=argparse.SUPPRESS)
    parser.add_argument("--child-read", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--max-rows", type=int, default=1_000_000, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_load:
        print(json.dumps(child_load(args.child_load, args.url, args.max_rows)))
        return
    if args.child_read:
        print(json.dumps(child_read(args.child_read)))
        return
    archived = args.archived or (10_000 if args.full else 1_000)
    rows = args.rows or (500_000 if args.full else 20_000)
    warehouse = "PostgreSQL" if args.pg else "SQLite"
    print(f"# uploads benchmark: warehouse {warehouse}, {os.cpu_count()} cores")
    if not args.skip_tick:
        repeats = args.repeats or 5
        print(f"\n## One sensor tick, 10 new files (median of {repeats}; target < 2 s)\n")
        print("| archive | tick median (s) | tick max (s) | naive walk+hash (s) | tick vs baseline |")
        print("|---|---:|---:|---:|---:|")
        ticks = bench_tick(archived, repeats, args.pg)
        base = ticks[0][1]
        for label, median, worst, naive in ticks:
            print(f"| {label} | {median:.3f} | {worst:.3f} | {naive:.3f} | {median / base:.2f}x |")
    if not args.skip_load:
        repeats = args.repeats or (1 if args.full else 3)
        formats = [f.strip() for f in args.formats.split(",") if f.strip()]
        print(f"\n## Loading an ows_project export end to end (median of {repeats}, fresh process each)\n")
        print("| format | rows | file MB | read only (s) | read peak RSS MB | load (s) | rows/s | load peak RSS MB "
              "| RSS before load MB | load vs read |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for fmt, n, size_mb, _written, read_s, read_rss, load_s, rate, rss, before in bench_load(
            rows, repeats, args.pg, formats
        ):
            print(f"| {fmt} | {n:,} | {size_mb:.1f} | {read_s:.2f} | {read_rss:.0f} | {load_s:.2f} | {rate:,.0f} "
                  f"| {rss:.0f} | {before:.0f} | {load_s / read_s:.1f}x |")


if __name__ == "__main__":
    main()
