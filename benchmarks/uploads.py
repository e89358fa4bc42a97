"""Upload benchmark: one sensor tick over a large archive, and loading a large OWS export.

1. Sensor tick: a landing folder holding N already-processed files (archived in `processed/`
   and registered in `upload_registry`) plus 10 new ones. Baselines in the same run: the same
   tick with an empty archive, and a naive scan that walks and hashes the whole folder.
2. Loading an `ows_export` file of R rows (`ows_project`, CSV and XLSX) end to end (parse,
   staging suite, staging table, SCD2 merge into `dim_project`, registry), each in a fresh
   process: rows/s and peak RSS. Baseline: reading the same file with pandas / openpyxl only.

3. Hostile files (an expansion bomb, deep nesting, millions of tiny values, a million-digit
   number, a never-closed quote): time to refusal and peak RSS, each in a fresh process.
   Baseline: the library's own plain parse of the same bytes (`yaml.safe_load`, `json.loads`,
   `csv.reader`) in a fresh process, which holds the whole document (or fails) without any
   of the checks.

A file is settled after two observations, so each tick measured is the second sight of its
new files (the first-sight tick is measured too).

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
            times, sights = [], []
            for round_ in range(repeats):
                new = _drop_new(landing, round_)
                started = time.perf_counter()
                first = sensor_tick(engine, landing, cursor, limits, now=time.time() + 60)
                sights.append(time.perf_counter() - started)
                assert len(first.waiting) == 10, first.log
                started = time.perf_counter()
                tick = sensor_tick(engine, landing, first.cursor, limits, now=time.time() + 61)
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
            results.append((label, statistics.median(times), max(times), statistics.median(naive),
                            statistics.median(sights)))
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
    os.environ["OWS_UPLOAD_SETTLE_SECONDS"] = "0"  # the two observations follow each other
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
    first = sensor_tick(engine, landing, None, limits, now=time.time() + 60)
    tick = sensor_tick(engine, landing, first.cursor, limits, now=time.time() + 61)
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


# --- 3. hostile files ----------------------------------------------------------------------------


def _bomb() -> bytes:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        previous, name = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{name}: &{name} [{', '.join(['*' + previous] * 9)}]")
    bomb = ("\n".join(lines) + "\nj: [*i]\n").encode()
    return b"# " + b"x" * (619 - len(bomb) - 3) + b"\n" + bomb


# The hostile documents, each built only when measured (the bomb: the 619-byte file with 73 aliases).
HOSTILE = {
    "bomb.yaml": _bomb,
    "deep.json": lambda: b"[" * 500_000 + b"]" * 500_000,
    "tiny_values.json": lambda: b"[" + b"{}," * 2_999_999 + b"{}]",
    "digits.json": lambda: b'[{"feed_code": "A", "expected_arrival_time": "07:30", "owner_team": "Ops", '
                           b'"sla_minutes": ' + b"7" * 1_000_000 + b"}]",
    "open_quote.csv": lambda: (
        "feed_code,expected_arrival_time,sla_minutes,owner_team\n" + 'A,07:30,30,"' + "x" * 20_000_000 + "\n"
    ).encode(),
}


def _peak_rss_mb() -> float:
    """The peak RSS since the last reset (Linux VmHWM), in MiB."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak_rss() -> float:
    """Reset the peak to the current RSS (Linux: `5` to /proc/self/clear_refs); returns the current RSS."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child_hostile(name: str, baseline: bool) -> dict:
    """In a fresh process: refuse one hostile file (or, as the baseline, parse it with the library)."""
    import csv
    import io

    import yaml  # noqa: F401 - imported by both sides before measuring

    from ows_pipeline.uploads.limits import UploadLimits
    from ows_pipeline.uploads.processing import prepare
    from ows_pipeline.uploads.problems import FileRejected

    data = HOSTILE[name]()
    rss_before = _reset_peak_rss()  # the file's own bytes are held by both sides
    started = time.perf_counter()
    outcome = ""
    try:
        if not baseline:
            prepare("feed_sla", name, data, UploadLimits())
            outcome = "accepted"
        elif name.endswith(".yaml"):
            yaml.safe_load(data)
            outcome = "parsed"
        elif name.endswith(".json"):
            json.loads(data)
            outcome = "parsed"
        else:
            outcome = f"parsed {sum(1 for _ in csv.reader(io.StringIO(data.decode())))} records"
    except FileRejected as exc:
        outcome = exc.problems[0].rule
    except Exception as exc:  # noqa: BLE001 - the baseline's own failure is its outcome
        outcome = type(exc).__name__
    seconds = time.perf_counter() - started
    return {"outcome": outcome, "seconds": seconds, "peak_rss_mb": _peak_rss_mb(), "rss_before_mb": rss_before,
            "size": len(data)}


def bench_hostile(repeats: int) -> list[tuple]:
    results = []
    for name in HOSTILE:
        ours = [_child(["--child-hostile", name]) for _ in range(repeats)]
        base = [_child(["--child-hostile", name, "--baseline"]) for _ in range(repeats)]
        results.append((name, ours[0]["size"], ours[0]["outcome"], statistics.median(r["seconds"] for r in ours),
                        max(r["peak_rss_mb"] for r in ours), base[0]["outcome"],
                        statistics.median(r["seconds"] for r in base), max(r["peak_rss_mb"] for r in base),
                        min(r["rss_before_mb"] for r in ours + base)))
    return results


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
    parser.add_argument("--skip-hostile", action="store_true")
    parser.add_argument("--child-hostile", help=argparse.SUPPRESS)
    parser.add_argument("--baseline", action="store_true", help=argparse.SUPPRESS)
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
    if args.child_hostile:
        print(json.dumps(child_hostile(args.child_hostile, args.baseline)))
        return
    archived = args.archived or (10_000 if args.full else 1_000)
    rows = args.rows or (500_000 if args.full else 20_000)
    warehouse = "PostgreSQL" if args.pg else "SQLite"
    print(f"# uploads benchmark: warehouse {warehouse}, {os.cpu_count()} cores")
    if not args.skip_tick:
        repeats = args.repeats or 5
        print(f"\n## One sensor tick, 10 new files (median of {repeats}; target < 2 s)\n")
        print("| archive | first-sight tick (s) | tick median (s) | tick max (s) | naive walk+hash (s) "
              "| tick vs baseline |")
        print("|---|---:|---:|---:|---:|---:|")
        ticks = bench_tick(archived, repeats, args.pg)
        base = ticks[0][1]
        for label, median, worst, naive, sight in ticks:
            print(f"| {label} | {sight:.3f} | {median:.3f} | {worst:.3f} | {naive:.3f} | {median / base:.2f}x |")
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

    if not args.skip_hostile:
        repeats = args.repeats or 3
        print(f"\n## Hostile files: refusal vs the library's plain parse (median of {repeats}, fresh process each)\n")
        print("| file | bytes | refused as | time (s) | peak RSS MB | baseline outcome | baseline time (s) "
              "| baseline peak RSS MB | RSS at start MB (file included) | time vs baseline |")
        print("|---|---:|---|---:|---:|---|---:|---:|---:|---:|")
        for name, size, rule, secs, rss, b_out, b_secs, b_rss, start in bench_hostile(repeats):
            print(f"| {name} | {size:,} | {rule} | {secs:.3f} | {rss:.0f} | {b_out} | {b_secs:.3f} | {b_rss:.0f} "
                  f"| {start:.0f} | {secs / max(b_secs, 1e-6):.2f}x |")


if __name__ == "__main__":
    main()
