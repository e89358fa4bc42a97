"""Benchmark: the weekly workbook for a large weekly snapshot, against `DataFrame.to_excel`.

    .venv/bin/python benchmarks/report.py                      # 20,000 rows, 3 runs each
    .venv/bin/python benchmarks/report.py --rows 200000 --before /path/to/older/checkout
    .venv/bin/python benchmarks/report.py --rows 1000000 --repeat 1 --engines xlsxwriter

The warehouse (SQLite by default, `--warehouse-url` for PostgreSQL) gets one week of
`fct_workflow_run_weekly` with `--rows` runs of distinct workflows, so the Latest snapshot
sheet has `--rows` rows. Each measurement runs in a fresh process; peak RSS is that
process's maximum resident set size (os.wait4).

- ows_weekly_report: `build_weekly_report`, the whole workbook (all five sheets, charts,
  tables), reading from the warehouse; the time includes the queries.
- baseline: the same Latest snapshot rows already in a DataFrame, then
  `df.to_excel(path, index=False)` with each engine of `--engines` (pandas' default is
  XlsxWriter when it is installed, else openpyxl); the time counts `to_excel` only, the peak
  RSS the whole process.
- before (with `--before PATH`): `build_weekly_report` from another checkout (an older
  commit), measured in the same run on the same warehouse.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WEEK = "2026-11-15"
TIMEZONE = "Europe/London"


def fill(url: str, rows: int) -> None:
    """One week of `rows` runs, each of its own workflow, plus 11 small earlier weeks for the trend."""
    import sqlalchemy as sa

    from ows_pipeline.resources import WarehouseResource
    from ows_pipeline.warehouse.bulk import insert_rows

    engine = WarehouseResource(url=url).get_engine()
    table = sa.Table("fct_workflow_run_weekly", sa.MetaData(), autoload_with=engine)
    with engine.begin() as conn:
        conn.execute(sa.delete(table))
    utc = dt.timezone.utc
    start = dt.date.fromisoformat(WEEK)
    statuses = [("COMPLETE", "MATCHED", True, False, False), ("COMPLETE", "BREAKS", True, False, True),
                ("ERROR", "#EXCEPTION", True, True, False), ("ACTIVE", None, False, False, False),
                ("COMPLETE", "PARTIAL", True, False, False), ("COMPLETE", "MATCHED", True, False, False)]
    names = [c.name for c in table.columns]

    def make(week_start: dt.date, n: int):
        week_end = dt.datetime.combine(week_start + dt.timedelta(days=7), dt.time(), utc)
        for i in range(n):
            status, result, reached, failed, brk = statuses[i % len(statuses)]
            begin = dt.datetime.combine(week_start, dt.time(), utc) + dt.timedelta(minutes=i % 9000)
            values = dict(
                week_start=week_start, week_end=week_end, run_id=i, run_key=f"R{i:08d}", parent_run_id=None,
                workflow_id=i, workflow_code=f"WF{i:07d}", workflow_version=1 + i % 3,
                workflow_name=f"Daily reconciliation {i % 5000}", project_id=i % 40,
                project_code=f"PRJ{i % 40:02d}", project_name=f"Project {i % 40}", feed_id=i % 4000,
                feed_code=f"FEED{i % 4000:04d}", feed_name=f"Feed {i % 4000}", match_process_id=i % 2000,
                process_code=f"MP{i % 2000:04d}", process_name=f"Match {i % 2000}",
                business_date=week_start + dt.timedelta(days=1 + i % 5), status=status, result_code=result,
                reached_end_state=reached, is_failed=failed, is_break=brk, records_loaded=1000 + i % 777,
                matched_cnt=900 + i % 50, suggested_cnt=i % 7, unmatched_cnt=i % 60, begin_date=begin,
                end_date=begin + dt.timedelta(minutes=30 + i % 90) if reached else None,
                duration_minutes=30.0 + i % 90 if reached else None, sla_minutes=120,
                sla_breached=(i % 97 == 0), project_sk=i % 40, feed_sk=i % 4000, match_process_sk=i % 2000,
                workflow_sk=i, batch_id="bench",
            )
            yield tuple(values.get(c) for c in names)

    batches = [(start, rows)] + [(start - dt.timedelta(days=7 * k), 1000) for k in range(1, 12)]
    for week_start, n in batches:
        chunk = []
        for row in make(week_start, n):
            chunk.append(row)
            if len(chunk) == 50_000:
                with engine.begin() as conn:
                    insert_rows(conn, table, names, chunk)
                chunk = []
        if chunk:
            with engine.begin() as conn:
                insert_rows(conn, table, names, chunk)


def child(mode: str, url: str, out: str) -> None:
    """Runs in its own process: writes one workbook and prints the seconds it took.

    `mode` is "ours", "before" (the same from the checkout first on sys.path) or "to_excel:<engine>".
    """
    import sqlalchemy as sa

    from ows_pipeline.reports import queries
    from ows_pipeline.reports.weekly_report import ReportWeek, build_weekly_report

    engine = sa.create_engine(url)
    week = ReportWeek.from_key(WEEK, TIMEZONE)
    if mode in ("ours", "before"):
        started, cpu = time.perf_counter(), time.process_time()
        result = build_weekly_report(engine, week, Path(out))
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        rows = sum(n for name, n in result.sheet_rows.items() if name.startswith("Latest snapshot"))
    else:
        import pandas as pd
        from zoneinfo import ZoneInfo

        tz = ZoneInfo(TIMEZONE)
        with engine.connect() as conn:
            fct = queries.fact_table(conn)
            data = list(queries.latest_snapshot(conn, fct, dt.date.fromisoformat(WEEK)))  # also an older checkout
        columns = [h for h, _, _ in queries.SNAPSHOT_COLUMNS] + [queries.FLAG_COLUMN]
        frame = pd.DataFrame(data, columns=columns)
        del data
        for name, _, kind in queries.SNAPSHOT_COLUMNS:  # Excel cannot hold tz-aware values: to_excel would raise
            if kind == "datetime":
                frame[name] = pd.to_datetime(frame[name], utc=True).dt.tz_convert(tz).dt.tz_localize(None)
        started, cpu = time.perf_counter(), time.process_time()
        frame.to_excel(out, sheet_name="Latest snapshot", index=False, engine=mode.split(":", 1)[1])
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        rows = len(frame)
    print(json.dumps({"seconds": seconds, "cpu": cpu, "rows": rows, "size": os.path.getsize(out)}))


def measure(mode: str, url: str, folder: Path, before: Optional[Path]) -> dict:
    out = folder / f"{mode.replace(':', '_')}.xlsx"
    command = [sys.executable, __file__, "--child", mode, "--warehouse-url", url, "--out", str(out)]
    if mode == "before":
        command += ["--code", str(before)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} run failed with exit code {proc.returncode}")
    result = json.loads(output.strip().splitlines()[-1])
    result["peak_rss_mib"] = usage.ru_maxrss / 1024  # kilobytes on Linux
    out.unlink(missing_ok=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000, help="runs in the week (issue: 1,000,000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each writer; the median is shown")
    parser.add_argument("--warehouse-url", default=None, help="default: a SQLite file in a temporary folder")
    parser.add_argument("--engines", default="xlsxwriter,openpyxl",
                        help="to_excel engines to compare with (comma-separated; default both)")
    parser.add_argument("--before", type=Path, help="another checkout whose build_weekly_report is measured too")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--code", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.code:  # the measured package comes from that checkout
        sys.path.insert(0, args.code)
        import ows_pipeline

        if not ows_pipeline.__file__.startswith(str(Path(args.code).resolve())):
            raise SystemExit(f"ows_pipeline was imported from {ows_pipeline.__file__}, not from {args.code}")
    if args.child == "fill":
        fill(args.warehouse_url, args.rows)
        return
    if args.child:
        child(args.child, args.warehouse_url, args.out)
        return

    with tempfile.TemporaryDirectory(prefix="ows_bench_report_") as tmp:
        folder = Path(tmp)
        url = args.warehouse_url or f"sqlite:///{folder / 'warehouse.db'}"
        started = time.perf_counter()
        # In its own process: a forked child starts with the parent's resident pages, which would
        # count in its peak RSS.
        subprocess.run([sys.executable, __file__, "--child", "fill", "--rows", str(args.rows), "--warehouse-url", url],
                       check=True, cwd=ROOT)
        print(f"warehouse filled with {args.rows:,} snapshot rows in {time.perf_counter() - started:.1f} s")
        baselines = [f"to_excel:{e.strip()}" for e in args.engines.split(",") if e.strip()]
        modes = baselines + (["before"] if args.before else []) + ["ours"]
        runs: dict[str, list[dict]] = {mode: [] for mode in modes}
        for _ in range(args.repeat):
            for mode in modes:  # interleaved, so noise hits all alike
                runs[mode].append(measure(mode, url, folder, args.before))
                r = runs[mode][-1]
                print(f"  {mode:<20} {r['seconds']:8.1f} s  cpu {r['cpu']:7.1f} s  {r['peak_rss_mib']:8.0f} MiB  "
                      f"{r['size'] / 2**20:7.1f} MiB file", flush=True)

    def median(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[mode])

    labels = {"ours": "ows_weekly_report, all sheets", "before": f"ows_weekly_report from {args.before}"}
    print()
    print(f"rows: {args.rows:,}   runs: {args.repeat} (median)   machine: {os.cpu_count()} cores")
    header = f"{'writer':<48} {'time s':>8} {'cpu s':>7} {'peak MiB':>9}" + "".join(f" {'x ' + b[9:]:>19}" for b in baselines)
    print(header)
    for mode in modes:
        s, c, m = median(mode, "seconds"), median(mode, "cpu"), median(mode, "peak_rss_mib")
        label = labels.get(mode, f"DataFrame.to_excel ({mode[9:]}), snapshot only")
        ratios = "".join(f" {s / median(b, 'seconds'):5.2f}/{c / median(b, 'cpu'):5.2f}/{m / median(b, 'peak_rss_mib'):5.2f}"
                         for b in baselines)
        print(f"{label:<48} {s:8.1f} {c:7.1f} {m:9.0f}{ratios}")
    print("(x <engine>: time / cpu time / peak RSS, each as a ratio to that to_excel's)")
    for b in baselines:
        ours_s = median("ours", "seconds") / median(b, "seconds")
        ours_m = median("ours", "peak_rss_mib") / median(b, "peak_rss_mib")
        ours_c = median("ours", "cpu") / median(b, "cpu")
        print(f"targets against to_excel ({b[9:]}): time <= 1.00x ({'met' if ours_s <= 1 else 'MISSED'}: {ours_s:.2f}x, "
              f"cpu {ours_c:.2f}x), "
              f"peak RSS <= 0.25x ({'met' if ours_m <= 0.25 else 'MISSED'}: {ours_m:.2f}x)")


if __name__ == "__main__":
    main()
