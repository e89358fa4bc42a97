"""Full weekly runs launched through the daemon on a PostgreSQL-backed instance.

Starts dagster-webserver and dagster-daemon (the repository's dagster.yaml on a fresh PostgreSQL
database), a PostgreSQL warehouse and a demo OWS source, then times `ows_weekly_job` for the week just
ended: the first (full) load, and, with --steady-state, the next week after one more week of source
activity. For each run: wall time (submit to success), peak RSS (largest process, and all pipeline
processes together), and the share of the wall time that is Dagster overhead (queueing, process starts,
event writes between steps) versus work (time inside at least one step).

    .venv/bin/python benchmarks/weekly_run.py                       # small: about 10k runs
    .venv/bin/python benchmarks/weekly_run.py --runs 100k
    .venv/bin/python benchmarks/weekly_run.py --runs 1m --steady-state
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ows_pipeline_tests.conftest import create_pg_database, drop_pg_database  # noqa: E402
from ows_pipeline_tests.e2e.stack import (  # noqa: E402
    LOCATION,
    REPOSITORY,
    DagsterStack,
    descendants,
    free_port,
    instance_env,
)

WEEKS = 12
AS_OF = "2026-11-15T02:00:00+00:00"  # Sunday 02:00 London: the week of 8 Nov has just ended
FIRST_WEEK = "2026-11-08"
NEXT_WEEK = "2026-11-15"
SIZES = {"10k": 134, "100k": 1340, "1m": 13400}  # runs per day for about 10k, 100k, 1M runs over 12 weeks
JOB = "ows_weekly_job"


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssSampler:
    """Polls the RSS of every process under the deployment: peak of one process and of all together."""

    def __init__(self, roots: list[int], interval: float = 0.5):
        self.roots, self.interval = roots, interval
        self.peak_one = self.peak_total = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            pids = [p for root in self.roots for p in (root, *descendants(root))]
            sizes = [_rss_kib(p) for p in pids]
            if sizes:
                self.peak_one = max(self.peak_one, max(sizes))
                self.peak_total = max(self.peak_total, sum(sizes))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _union_seconds(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, None
    for start, stop in sorted(intervals):
        if end is None or start > end:
            total += stop - start
            end = stop
        elif stop > end:
            total += stop - end
            end = stop
    return total


step_seconds: dict[str, float] = {}


def work_and_events(stack: DagsterStack, run_id: str) -> tuple[float, float, int, float]:
    """Seconds inside at least one step, run start to end, the number of events written, and the
    seconds spent starting step processes (launch to step start, summed over steps)."""
    from dagster import DagsterEventType

    instance = stack.instance()
    try:
        records = instance.all_logs(run_id)
    finally:
        instance.dispose()
    starts, intervals, run_start, run_end = {}, [], None, None
    launches, process_start = {}, 0.0
    step_seconds.clear()
    for record in records:
        event = record.dagster_event
        if event is None:
            continue
        kind = event.event_type
        if kind == DagsterEventType.ENGINE_EVENT and (event.message or "").startswith("Launching subprocess for"):
            launches[event.message.split('"')[1]] = record.timestamp
        elif kind == DagsterEventType.STEP_START:
            starts[event.step_key] = record.timestamp
            if event.step_key in launches:
                process_start += record.timestamp - launches.pop(event.step_key)
        elif kind in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE, DagsterEventType.STEP_SKIPPED):
            if event.step_key in starts:
                begin = starts.pop(event.step_key)
                intervals.append((begin, record.timestamp))
                step_seconds[event.step_key] = record.timestamp - begin
        elif kind == DagsterEventType.RUN_START:
            run_start = record.timestamp
        elif kind in (DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE):
            run_end = record.timestamp
    return _union_seconds(intervals), (run_end or 0) - (run_start or 0), len(records), process_start


def timed_weekly_run(stack: DagsterStack, week: str, label: str) -> dict:
    roots = [p.pid for p in stack.processes.values()]
    with RssSampler(roots) as rss:
        started = time.time()
        run_id = stack.client().submit_job_execution(
            JOB, repository_location_name=LOCATION, repository_name=REPOSITORY,
            tags={"dagster/partition": week, "ows/week": week, "ows/trigger": "manual"},
        )
        status = stack.wait_for_run(run_id, timeout=6 * 3600)
        wall = time.time() - started
    work, run_span, events, process_start = work_and_events(stack, run_id)
    slowest = sorted(step_seconds.items(), key=lambda kv: -kv[1])[:6]
    return {
        "label": label, "week": week, "status": status, "wall_s": wall, "run_s": run_span, "work_s": work,
        "overhead_pct": 100.0 * (wall - work) / wall if wall else 0.0, "events": events,
        "queue_start_s": wall - run_span, "step_process_start_s": process_start,
        "peak_rss_mib": rss.peak_one / 1024, "peak_total_rss_mib": rss.peak_total / 1024,
        "slowest_steps": ", ".join(f"{k} {v:.1f} s" for k, v in slowest),
    }


def print_table(rows: list[dict], runs: int, target: str) -> None:
    print()
    print(f"weekly_run: ows_weekly_job through dagster-daemon, PostgreSQL instance and warehouse; "
          f"demo source of {runs:,} workflow runs")
    header = (f"{'run':<28}{'status':>9}{'wall s':>9}{'queue+start s':>15}{'run s':>8}{'work s':>8}{'overhead':>10}"
              f"{'step procs s':>14}{'events':>8}{'peak RSS MiB':>14}{'all procs MiB':>15}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['label']:<28}{r['status']:>9}{r['wall_s']:>9.1f}{r['queue_start_s']:>15.1f}{r['run_s']:>8.1f}"
              f"{r['work_s']:>8.1f}{r['overhead_pct']:>9.0f}%{r['step_process_start_s']:>14.1f}{r['events']:>8}{r['peak_rss_mib']:>14.0f}{r['peak_total_rss_mib']:>15.0f}")
    for r in rows:
        print(f"slowest steps, {r['label']}: {r['slowest_steps']}")
    print(f"targets: {target}")
    print("overhead = wall - work, work = time inside at least one step; queue+start = submit to run start; "
          "step procs = launch to start of each step process, summed (CPU spent starting processes)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", choices=sorted(SIZES), default="10k", help="demo source size (default 10k)")
    parser.add_argument("--steady-state", action="store_true", help="then one more week of activity and its run")
    parser.add_argument("--repeat", type=int, default=1, help="repeat the first-load run (median reported)")
    args = parser.parse_args(argv)

    from ows_pipeline.demo.source import advance_demo, generate_demo

    base = Path(tempfile.mkdtemp(prefix="ows_bench_weekly_"))
    instance_url = create_pg_database("ows_bench_instance")
    warehouse_url = create_pg_database("ows_bench_warehouse")
    source_url = create_pg_database("ows_bench_source")
    stack = None
    try:
        t0 = time.perf_counter()
        summary = generate_demo(source_url, runs_per_day=SIZES[args.runs], weeks=WEEKS, as_of=AS_OF)
        runs = summary.rows.get("ows_workflow_run", 0)
        print(f"demo source: {runs:,} runs generated in {time.perf_counter() - t0:.0f} s", flush=True)

        dagster_home, ows_home = base / "dagster_home", base / "ows_home"
        dagster_home.mkdir()
        ows_home.mkdir()
        shutil.copy(ROOT / "deploy" / "dagster.yaml", dagster_home / "dagster.yaml")
        import os

        env = {k: v for k, v in os.environ.items() if not k.startswith(("OWS_", "DAGSTER_"))}
        env.update(instance_env(instance_url))
        env.update({
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "DAGSTER_HOME": str(dagster_home), "OWS_HOME": str(ows_home),
            "OWS_SOURCE_URL": source_url, "OWS_WAREHOUSE_URL": warehouse_url,
        })
        stack = DagsterStack(port=free_port(), dagster_home=dagster_home, ows_home=ows_home,
                             instance_db_url=instance_url, warehouse_url=warehouse_url, env=env,
                             log_dir=base / "logs")
        t0 = time.perf_counter()
        stack.start()
        print(f"webserver + daemon up in {time.perf_counter() - t0:.0f} s", flush=True)

        rows = []
        for i in range(args.repeat):
            rows.append(timed_weekly_run(stack, FIRST_WEEK, f"first load{'' if i == 0 else ' (again)'} {FIRST_WEEK}"))
            print(rows[-1], flush=True)
        if args.steady_state:
            t0 = time.perf_counter()
            advance_demo(source_url, as_of=(dt.datetime.fromisoformat(AS_OF) + dt.timedelta(days=7)).isoformat())
            print(f"source advanced one week in {time.perf_counter() - t0:.0f} s", flush=True)
            rows.append(timed_weekly_run(stack, NEXT_WEEK, f"steady state {NEXT_WEEK}"))
            print(rows[-1], flush=True)
        print_table(rows, runs, "first load 100k < 60 s, 1M < 6 min; steady state < 60 s; overhead < 20%")
        return 0 if all(r["status"] == "SUCCESS" for r in rows) else 1
    finally:
        if stack is not None:
            stack.stop()
        for url in (instance_url, warehouse_url, source_url):
            drop_pg_database(url)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
