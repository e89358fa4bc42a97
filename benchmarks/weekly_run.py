"""Whole weekly runs, today's checkout against a baseline git ref, on the same source database.

For each contender (the current checkout and, with --baseline-ref, a commit checked out in a temporary
`git worktree` with its own virtualenv) and each repetition: a copy of one demo OWS source (a PostgreSQL
database cloned from a template, or a copy of the SQLite file), an empty warehouse and a fresh Dagster
instance, then the same command in the contender's folder with the contender's own interpreter:

    dagster job execute -m ows_pipeline.definitions -a defs -j ows_weekly_job \\
        --tags '{"dagster/partition": "2026-11-08", ...}'

timed from start to exit under `/usr/bin/time -v` (peak RSS of the largest process) while the RSS of
the whole process tree is sampled from /proc every 0.2 s (peak of the sum), beside the CPU seconds of the
run (user + system) and of the PostgreSQL backends serving its databases: on a shared machine CPU
seconds compare better than wall times. With --steady-state the
copy is then advanced one week and the next week's run is measured the same way. Medians over
--repeat; ratios current / baseline.

    .venv/bin/python benchmarks/weekly_run.py                                  # 10k runs, current only
    .venv/bin/python benchmarks/weekly_run.py --runs 250k --baseline-ref b2b4394 --only baseline
    .venv/bin/python benchmarks/weekly_run.py --runs 1m,4m --repeat 3 --steady-state
    .venv/bin/python benchmarks/weekly_run.py --runs 1m --warehouse sqlite      # the embedded default

Every measurement is appended as one JSON line to --results (default benchmarks/results/weekly_run.jsonl),
so a baseline measured once can be compared with later runs: --compare-with FILE.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scratch_db import clone_database, create_database, drop_database  # noqa: E402

AS_OF = "2026-11-15T02:00:00+00:00"  # Sunday 02:00 London: the week of 8 Nov has just ended
NEXT_AS_OF = "2026-11-22T02:00:00+00:00"
FIRST_WEEK, NEXT_WEEK = "2026-11-08", "2026-11-15"
WEEKS = 12
SIZES = {"10k": 134, "100k": 1340, "250k": 3350, "1m": 13400, "4m": 53600, "10m": 134000}
"""runs per weekday for about 10k ... 10M runs over 12 weeks"""
JOB = "ows_weekly_job"
CHECKOUTS = Path(tempfile.gettempdir()) / "ows_bench_checkouts"
RESULTS = ROOT / "benchmarks" / "results"


@dataclass
class Contender:
    name: str  # "current" or "baseline <ref>"
    folder: Path
    bin: Path  # the virtualenv's bin/
    commit: str


def _git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def current_contender() -> Contender:
    return Contender("current", ROOT, Path(sys.executable).parent, _git("rev-parse", "--short", "HEAD"))


def baseline_contender(ref: str) -> Contender:
    """The commit `ref` in a detached worktree with its own virtualenv (kept for later runs)."""
    commit = _git("rev-parse", "--verify", f"{ref}^{{commit}}")
    folder = CHECKOUTS / f"ows_pipeline-{commit[:10]}"
    ready = folder / ".venv" / ".bench-ready"
    if not ready.exists():
        CHECKOUTS.mkdir(parents=True, exist_ok=True)
        if not (folder / ".git").exists():
            _git("worktree", "add", "--detach", str(folder), commit)
        print(f"baseline {ref}: installing {folder} into its own virtualenv ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(folder / ".venv")], check=True)
        subprocess.run([str(folder / ".venv/bin/pip"), "install", "--quiet", "-e", str(folder)], check=True)
        ready.touch()
    return Contender(f"baseline {ref}", folder, folder / ".venv" / "bin", commit[:7])


# ---------------------------------------------------------------------------------------------
# memory of a process tree


def _tree_rss_kib(root: int, databases: frozenset = frozenset(), server_ticks: dict | None = None) -> int:
    """Resident set size of `root` and all its descendants, from /proc; with `databases`, the CPU
    ticks of every PostgreSQL backend serving one of them go into `server_ticks` (pid: ticks)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            if databases and "(postgres)" in stat:
                words = (entry / "cmdline").read_bytes().decode(errors="replace").split()
                if len(words) > 3 and words[3] in databases:  # "postgres: 15/main: <user> <database> ..."
                    server_ticks[int(entry.name)] = int(fields[11]) + int(fields[12])
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        rss[pid] = int(fields[21]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    total = 0
    for pid in rss:
        p = pid
        while p and p != root:
            p = parents.get(p, 0)
        if p == root:
            total += rss[pid]
    return total


class TreeSampler:
    """Peak of the summed RSS of a process tree, sampled every `interval` seconds on a thread, and the
    CPU seconds of the PostgreSQL backends serving `databases` (the work the client hands the server)."""

    def __init__(self, root: int, databases: frozenset = frozenset(), interval: float = 0.2):
        self.root, self.databases, self.interval, self.peak_kib = root, databases, interval, 0
        self.server_ticks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, _tree_rss_kib(self.root, self.databases, self.server_ticks))
            self._stop.wait(self.interval)

    @property
    def server_cpu_s(self) -> float:
        return sum(self.server_ticks.values()) / os.sysconf("SC_CLK_TCK")

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _time_v(path: Path) -> dict:
    out = {}
    for line in path.read_text(errors="replace").splitlines():
        key, _, value = line.strip().rpartition(": ")
        if key == "Maximum resident set size (kbytes)":
            out["max_rss_kib"] = int(value)
        elif key == "User time (seconds)":
            out["user_s"] = float(value)
        elif key == "System time (seconds)":
            out["sys_s"] = float(value)
        elif key == "Exit status":
            out["exit"] = int(value)
    return out


# ---------------------------------------------------------------------------------------------
# one run


def step_breakdown(dagster_home: Path) -> dict:
    """Seconds inside at least one step, the run's own span and the slowest steps, from the event log."""
    from dagster import DagsterEventType, DagsterInstance

    instance = DagsterInstance.from_config(str(dagster_home))
    try:
        run = instance.get_runs(limit=1)[0]
        records = instance.all_logs(run.run_id)
    finally:
        instance.dispose()
    starts, steps, span = {}, {}, [None, None]
    for record in records:
        event = record.dagster_event
        if event is None:
            continue
        kind = event.event_type
        if kind == DagsterEventType.STEP_START:
            starts[event.step_key] = record.timestamp
        elif kind in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE) and event.step_key in starts:
            steps[event.step_key] = (starts[event.step_key], record.timestamp)
        elif kind == DagsterEventType.RUN_START:
            span[0] = record.timestamp
        elif kind in (DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE):
            span[1] = record.timestamp
    work, end = 0.0, None
    for begin, stop in sorted(steps.values()):
        if end is None or begin > end:
            work, end = work + stop - begin, stop
        elif stop > end:
            work, end = work + stop - end, stop
    slowest = sorted(steps.items(), key=lambda kv: kv[1][0] - kv[1][1])[:5]
    return {
        "status": run.status.value,
        "run_s": (span[1] or 0) - (span[0] or 0),
        "work_s": work,
        "slowest_steps": ", ".join(f"{k} {b - a:.0f} s" for k, (a, b) in slowest),
    }


def _postgres_databases(*urls: str) -> frozenset:
    import sqlalchemy as sa

    return frozenset(sa.make_url(u).database for u in urls if u.startswith("postgresql"))


def timed_job(contender: Contender, week: str, env: dict, dagster_home: Path, log: Path) -> dict:
    """`dagster job execute` for `week` in the contender's folder: wall, CPU, peak RSS, steps."""
    tags = json.dumps({"dagster/partition": week, "ows/trigger": "manual"})
    command = [str(contender.bin / "dagster"), "job", "execute", "-m", "ows_pipeline.definitions", "-a", "defs",
               "-j", JOB, "--tags", tags]
    time_file = log.with_suffix(".time")
    with open(log, "w") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(["/usr/bin/time", "-v", "-o", str(time_file), *command], cwd=contender.folder,
                                env=env, stdout=out, stderr=subprocess.STDOUT)
        databases = _postgres_databases(env["OWS_SOURCE_URL"], env["OWS_WAREHOUSE_URL"])
        with TreeSampler(proc.pid, databases) as tree:
            code = proc.wait()
        wall = time.perf_counter() - started
    measured = _time_v(time_file)
    row = {
        "wall_s": wall, "exit": code, "max_rss_mib": measured.get("max_rss_kib", 0) / 1024,
        "tree_rss_mib": tree.peak_kib / 1024, "cpu_s": measured.get("user_s", 0) + measured.get("sys_s", 0),
        "server_cpu_s": tree.server_cpu_s,
    }
    try:
        row.update(step_breakdown(dagster_home))
    except Exception as exc:  # noqa: BLE001 - a failed run may leave no event log; the exit code says so
        row.update({"status": f"no event log ({exc})", "run_s": 0.0, "work_s": 0.0, "slowest_steps": ""})
    if code != 0:
        kept = RESULTS / f"failed_{log.parent.name}_{log.name}"
        shutil.copy(log, kept)
        row["status"] = f"{row.get('status')} (exit {code}; log {kept})"
    return row


class Source:
    """One generated demo source and throw-away copies of it."""

    def __init__(self, kind: str, runs_per_day: int, base: Path):
        self.kind, self.base = kind, base
        self.url = create_database("ows_bench_src") if kind == "postgresql" else f"sqlite:///{base / 'source.db'}"
        started = time.perf_counter()
        _ows_cli(["demo-source", "--url", self.url, "--runs-per-day", str(runs_per_day), "--weeks", str(WEEKS),
                  "--as-of", AS_OF, "--quiet"])
        self.generate_s = time.perf_counter() - started
        import sqlalchemy as sa

        engine = sa.create_engine(self.url)
        with engine.connect() as conn:
            self.runs = conn.execute(sa.text("SELECT count(*) FROM ows_workflow_run")).scalar_one()
        engine.dispose()

    def copy(self, label: str) -> str:
        if self.kind == "postgresql":
            return clone_database(self.url, "ows_bench_src_copy")
        path = self.base / f"source_{label}.db"
        shutil.copy(self.base / "source.db", path)
        return f"sqlite:///{path}"

    def drop(self, url: str) -> None:
        if self.kind == "postgresql":
            drop_database(url)
        else:
            Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)


def _ows_cli(args: list[str]) -> None:
    subprocess.run([sys.executable, "-m", "ows_pipeline.cli", *args], check=True, cwd=ROOT)


def measure(contender: Contender, source: Source, warehouse: str, steady: bool, base: Path, label: str,
            record) -> list[dict]:
    """First load (and steady state) of one contender on a fresh copy of the source; `record(row)` keeps
    each measurement as soon as it is made."""
    work = base / label.replace(" ", "_")
    dagster_home, ows_home = work / "dagster_home", work / "ows_home"
    dagster_home.mkdir(parents=True)
    ows_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    source_url = source.copy(label.replace(" ", "_"))
    warehouse_url = create_database("ows_bench_wh") if warehouse == "postgresql" else f"sqlite:///{ows_home / 'warehouse.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OWS_", "DAGSTER_", "VIRTUAL_ENV", "PYTHON"))}
    env.update({"PATH": f"{contender.bin}{os.pathsep}{env.get('PATH', '')}", "DAGSTER_HOME": str(dagster_home),
                "OWS_HOME": str(ows_home), "OWS_SOURCE_URL": source_url, "OWS_WAREHOUSE_URL": warehouse_url})
    rows = []
    try:
        common = {"contender": contender.name, "commit": contender.commit, "runs": source.runs,
                  "source": source.kind, "warehouse": warehouse}
        rows.append(record({**common, "run": "first load", "week": FIRST_WEEK,
                            **timed_job(contender, FIRST_WEEK, env, dagster_home, work / "first_load.log")}))
        print(_line(rows[-1]), flush=True)
        if steady and rows[-1]["exit"] == 0:
            _ows_cli(["demo-source", "--url", source_url, "--advance", "--as-of", NEXT_AS_OF, "--quiet"])
            rows.append(record({**common, "run": "steady state", "week": NEXT_WEEK,
                                **timed_job(contender, NEXT_WEEK, env, dagster_home, work / "steady_state.log")}))
            print(_line(rows[-1]), flush=True)
    finally:
        source.drop(source_url)
        if warehouse == "postgresql":
            drop_database(warehouse_url)
    return rows


def _line(r: dict) -> str:
    return (f"  {r['contender']:<18} {r['run']:<13} {r['runs']:>10,} runs  {r['wall_s']:8.1f} s wall  "
            f"{r['cpu_s']:8.1f} s CPU (+{r.get('server_cpu_s', 0):.0f} s server)  peak {r['max_rss_mib']:8.0f} MiB (tree {r['tree_rss_mib']:.0f})  {r['status']}")


def machine() -> dict:
    load = os.getloadavg()
    return {"host": platform.node(), "cores": os.cpu_count(), "load_1m": round(load[0], 2),
            "load_5m": round(load[1], 2), "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def summarise(rows: list[dict]) -> None:
    """Medians per (contender, size, pair, run) and the ratios current / baseline."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["exit"] == 0:
            groups.setdefault((r["runs"], r["source"], r["warehouse"], r["run"], r["contender"]), []).append(r)
    print()
    print(f"{'runs':>10} {'source->warehouse':<24}{'run':<14}{'contender':<18}{'n':>3}{'wall s':>9}{'CPU s':>8}"
          f"{'server s':>9}{'peak MiB':>10}{'tree MiB':>10}{'wall/base':>10}{'CPU/base':>9}{'peak/base':>10}")
    medians = {}
    for key in sorted(groups, key=lambda k: (k[0], k[1], k[2], k[3], k[4] != "current")):
        runs, source, warehouse, run, who = key
        rs = groups[key]
        med = {m: statistics.median(r.get(m, 0.0) for r in rs)
               for m in ("wall_s", "cpu_s", "server_cpu_s", "max_rss_mib", "tree_rss_mib")}
        medians[key] = med
        base = next((medians.get(k) for k in medians if k[:4] == key[:4] and k[4].startswith("baseline")), None)
        if who.startswith("baseline"):
            base = None
        ratio = ""
        if base:
            cpu = (med["cpu_s"] + med["server_cpu_s"]) / (base["cpu_s"] + base["server_cpu_s"])
            ratio = f"{med['wall_s'] / base['wall_s']:>10.2f}{cpu:>9.2f}{med['max_rss_mib'] / base['max_rss_mib']:>10.2f}"
        print(f"{runs:>10,} {source + '->' + warehouse:<24}{run:<14}{who:<18}{len(rs):>3}{med['wall_s']:>9.1f}"
              f"{med['cpu_s']:>8.1f}{med['server_cpu_s']:>9.1f}{med['max_rss_mib']:>10.0f}{med['tree_rss_mib']:>10.0f}{ratio}")
    print("CPU/base: run plus server CPU seconds against the baseline's (not measured for baseline rows without it)")
    print("targets: first load peak at 4M <= 1.2x the peak at 1M and <= 2 GiB; 1M first load wall <= 0.5x baseline; "
          "steady state no worse than baseline")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="10k", help=f"comma-separated source sizes out of {', '.join(SIZES)}")
    parser.add_argument("--warehouse", choices=("postgresql", "sqlite"), default="postgresql",
                        help="source and warehouse backend (sqlite: the embedded default)")
    parser.add_argument("--baseline-ref", help="git ref of the baseline, e.g. b2b4394 (measured on the same source)")
    parser.add_argument("--only", choices=("current", "baseline"), help="measure one contender only")
    parser.add_argument("--repeat", type=int, default=1, help="repetitions of the current code (median)")
    parser.add_argument("--baseline-repeat", type=int, default=1, help="repetitions of the baseline (median)")
    parser.add_argument("--steady-state", action="store_true", help="then advance one week and time that run")
    parser.add_argument("--results", type=Path, default=RESULTS / "weekly_run.jsonl")
    parser.add_argument("--compare-with", type=Path, help="earlier results (JSON lines) to include in the summary")
    args = parser.parse_args(argv)
    sizes = [s.strip().lower() for s in args.runs.split(",")]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"--runs {', '.join(unknown)}: choose from {', '.join(SIZES)}")

    contenders = []
    if args.only != "baseline":
        contenders += [current_contender()] * args.repeat
    if args.baseline_ref and args.only != "current":
        contenders += [baseline_contender(args.baseline_ref)] * args.baseline_repeat
    if not contenders:
        parser.error("nothing to measure: --only baseline needs --baseline-ref")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    before = machine()
    print(f"machine: {before['cores']} cores, load {before['load_1m']} / {before['load_5m']} (1 / 5 min) at {before['at']}")
    rows = []
    base = Path(tempfile.mkdtemp(prefix="ows_bench_weekly_"))
    try:
        for size in sizes:
            (base / size).mkdir()
            source = Source(args.warehouse, SIZES[size], base / size)
            print(f"source {size}: {source.runs:,} runs generated in {source.generate_s:.0f} s ({args.warehouse})",
                  flush=True)
            try:
                # alternate contenders so that a change in the machine's load hits both
                order = sorted(range(len(contenders)), key=lambda i: (contenders[:i + 1].count(contenders[i]), i))
                for n, i in enumerate(order):
                    contender = contenders[i]
                    label = f"{size}_{n}_{contender.name.split()[0]}"

                    def record(row: dict, size=size) -> dict:
                        row.update({"size": size, "machine_after": machine()})
                        with open(args.results, "a") as out:
                            out.write(json.dumps(row) + "\n")
                        return row

                    rows += measure(contender, source, args.warehouse, args.steady_state, base, label, record)
            finally:
                if args.warehouse == "postgresql":
                    drop_database(source.url)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    earlier = []
    if args.compare_with:
        earlier = [json.loads(line) for line in args.compare_with.read_text().splitlines() if line.strip()]
    summarise(earlier + rows)
    after = machine()
    print(f"machine after: load {after['load_1m']} / {after['load_5m']} (1 / 5 min) at {after['at']}")
    return 0 if all(r["exit"] == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
