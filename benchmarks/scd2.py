"""Benchmark: the SCD2 merge engine against a dbt snapshot, end to end, on the same data, in the same run.

A dimension of N keys is loaded from a source table in the warehouse; then the source becomes a
full extract with 4% of keys changed, 1% deleted and 1% new (the delta batch); then the same
extract is merged again at a later as-of (nothing changed). Both systems read the same
`bench_source` table on the same PostgreSQL: ours as `merge_scd2(engine, spec, select(bench_source))`
in a fresh Python process (interpreter start, imports and reading the staged rows included),
the baseline as `dbt snapshot` (check strategy on the same tracked columns,
`hard_deletes: new_record`) from the virtualenv .venv-dbt. The two alternate step by step;
wall times are medians of the runs, peak RSS is each process's own (wait4).

    .venv/bin/python benchmarks/scd2.py                      # 100k keys, 3 runs
    .venv/bin/python benchmarks/scd2.py --keys 1000000       # the full size
    .venv/bin/python benchmarks/scd2.py --no-dbt --sqlite    # ours on SQLite as well

Reports wall times (medians), ours/dbt ratios against the targets, peak RSS, and whether the two
histories agree on every key's sequence of versions.
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
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ows_pipeline.scd2 import declare_dimension, merge_scd2, scd2_batches  # noqa: E402
from ows_pipeline.warehouse.bulk import write_arrow  # noqa: E402
from ows_pipeline.warehouse.schema import data_errors, etl_batches  # noqa: E402
from scratch_db import create_database, drop_database  # noqa: E402

DBT = ROOT / ".venv-dbt" / "bin" / "dbt"
DBT_PROJECT = ROOT / "benchmarks" / "dbt_scd2"
TRACKED = ("code", "name", "category", "amount", "active")
T0 = dt.datetime(2026, 1, 4, tzinfo=dt.timezone.utc)
T1 = T0 + dt.timedelta(days=7)
T2 = T1 + dt.timedelta(days=7)

bench_metadata = sa.MetaData()
SPEC = declare_dimension(
    name="dim_bench",
    sk="bench_sk",
    key_columns=[sa.Column("entity_id", sa.Integer)],
    attribute_columns=[
        sa.Column("code", sa.String(30)),
        sa.Column("name", sa.String(200)),
        sa.Column("category", sa.String(20)),
        sa.Column("amount", sa.Integer),
        sa.Column("active", sa.Boolean),
        sa.Column("updated_at", sa.TIMESTAMP(timezone=True)),
    ],
    tracked=TRACKED,
    metadata=bench_metadata,
)
source_table = sa.Table(
    "bench_source",
    bench_metadata,
    sa.Column("entity_id", sa.Integer, primary_key=True),
    *[sa.Column(c.name, c.type) for c in SPEC.table.columns if c.name in TRACKED + ("updated_at",)],
)


# ------------------------------------------------------------------ data


def initial_batch(n: int, seed: int = 7) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    ids = np.arange(1, n + 1)
    return pd.DataFrame(
        {
            "entity_id": ids,
            "code": pd.Series(ids).map("E{:08d}".format).astype(object),
            "name": pd.Series(rng.integers(0, 10**9, n)).map("name {}".format).astype(object),
            "category": pd.Series(rng.choice(["A", "B", "C", "D"], n)).astype(object),
            "amount": rng.integers(0, 10_000, n),
            "active": rng.random(n) < 0.9,
            "updated_at": pd.Series([T0 - dt.timedelta(days=1)] * n, dtype="datetime64[us, UTC]"),
        }
    )


def delta_batch(base: pd.DataFrame, seed: int = 11) -> tuple[pd.DataFrame, dict]:
    """4% changed, 1% deleted, 1% new keys."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = len(base)
    order = rng.permutation(n)
    changed = order[: n * 4 // 100]
    deleted = order[n * 4 // 100 : n * 5 // 100]
    out = base.copy()
    out.loc[changed, "name"] = out.loc[changed, "name"].map(lambda s: s + " v2")
    out.loc[changed, "updated_at"] = pd.Timestamp(T1 - dt.timedelta(hours=1))
    out = out.drop(index=deleted)
    new = initial_batch(n // 100, seed=13)
    new["entity_id"] = new["entity_id"] + n
    new["code"] = new["entity_id"].map("E{:08d}".format).astype(object)
    new["updated_at"] = pd.Timestamp(T1 - dt.timedelta(hours=2))
    out = pd.concat([out, new], ignore_index=True)
    return out, {"changed": len(changed), "deleted": len(deleted), "new": len(new)}


# ------------------------------------------------------------------ ours


def fresh_tables(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for t in (SPEC.table, SPEC.seen_table, source_table):
            t.drop(conn, checkfirst=True)
        for t in (scd2_batches, etl_batches, data_errors):
            t.create(conn, checkfirst=True)
        conn.execute(scd2_batches.delete().where(scd2_batches.c.dimension == SPEC.name))
        for t in (SPEC.table, SPEC.seen_table, source_table):
            t.create(conn)


def write_source(engine: sa.Engine, frame: pd.DataFrame) -> None:
    """The batch as a table in the warehouse (what a staging table is), written with the bulk writer."""
    with engine.begin() as conn:
        conn.execute(source_table.delete())
        write_arrow(conn, source_table, frame[[c.name for c in source_table.columns]])
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE bench_source")


def merge_step(url: str, as_of: str, batch_id: str) -> None:
    """One merge of `bench_source` into `dim_bench`, as the child process the benchmark times."""
    engine = sa.create_engine(url)
    stats = merge_scd2(engine, SPEC, sa.select(source_table), dt.datetime.fromisoformat(as_of), batch_id=batch_id,
                       key_unique=True)  # bench_source's primary key, as a staging table's unique index
    print(json.dumps(stats.as_metadata()))


def timed_process(cmd: list[str], env: dict | None = None, cwd=None) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB of that process, stdout) of one child process."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read()
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd[:3]} failed:\n{stdout}\n{err.read()}")
    return wall, usage.ru_maxrss / 1024, stdout


def run_ours(url: str, step: str) -> dict:
    as_of = {"initial": T0, "delta": T1, "rerun": T2, "late": T0 + dt.timedelta(days=3)}[step]
    cmd = [sys.executable, str(Path(__file__).resolve()), "--merge-step", url, as_of.isoformat(),
           f"{step[0]}-{uuid.uuid4().hex[:8]}"]
    wall, rss, out = timed_process(cmd)
    return {"wall": wall, "rss_mib": rss, "stats": json.loads(out.strip().splitlines()[-1])}


# ------------------------------------------------------------------ dbt


def dbt_available() -> str | None:
    if not DBT.exists():
        return (
            f"dbt baseline skipped: {DBT} not found. Create it with: python3 -m venv .venv-dbt && "
            ".venv-dbt/bin/pip install 'dbt-core>=1.11,<1.12' 'dbt-postgres>=1.9,<1.11'"
        )
    return None


def dbt_snapshot(url: sa.URL, workdir: Path) -> dict:
    """Run `dbt snapshot`: wall seconds, peak RSS, and dbt's own execution seconds of the snapshot."""
    profiles = workdir / "profiles.yml"
    profiles.write_text(
        json.dumps(
            {
                "scd2_bench": {
                    "target": "bench",
                    "outputs": {
                        "bench": {
                            "type": "postgres",
                            "host": url.host or "127.0.0.1",
                            "port": url.port or 5432,
                            "user": url.username or "postgres",
                            "password": url.password or "",
                            "dbname": url.database,
                            "schema": "public",
                            "threads": 1,
                        }
                    },
                }
            }
        )
    )
    env = dict(os.environ, DBT_SEND_ANONYMOUS_USAGE_STATS="false", DO_NOT_TRACK="1")
    cmd = [
        str(DBT), "snapshot", "--project-dir", str(DBT_PROJECT), "--profiles-dir", str(workdir),
        "--target-path", str(workdir / "target"), "--log-path", str(workdir / "logs"), "--quiet",
    ]
    wall, rss, _ = timed_process(cmd, env=env, cwd=workdir)
    results = json.loads((workdir / "target" / "run_results.json").read_text())
    return {"wall": wall, "rss_mib": rss, "exec": sum(r.get("execution_time", 0.0) for r in results["results"])}


def histories_agree(engine: sa.Engine) -> tuple[int, int]:
    """(keys compared, keys whose sequence of versions differs) between dim_bench and bench_snapshot."""
    cols = ", ".join(TRACKED)
    sql = f"""
    WITH ours AS (
      SELECT entity_id, string_agg(md5(concat_ws('|', {cols}, is_deleted::text)), ',' ORDER BY valid_from) AS seq
      FROM dim_bench GROUP BY entity_id),
    theirs AS (
      SELECT entity_id, string_agg(md5(concat_ws('|', {cols},
             (coalesce(dbt_is_deleted, 'False') = 'True')::text)), ',' ORDER BY dbt_valid_from) AS seq
      FROM bench_snapshot GROUP BY entity_id)
    SELECT count(*), count(*) FILTER (WHERE ours.seq IS DISTINCT FROM theirs.seq)
    FROM ours FULL OUTER JOIN theirs ON ours.entity_id = theirs.entity_id
    """
    with engine.connect() as conn:
        total, differ = conn.exec_driver_sql(sql).one()
    return int(total), int(differ)


# ------------------------------------------------------------------ main


def median(values):
    return statistics.median(values) if values else float("nan")


def one_run(engine: sa.Engine, url: str, batches: dict, dbt_dir: Path | None) -> dict:
    """initial, delta, no-change: ours then dbt on the same source table, step by step."""
    fresh_tables(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS bench_snapshot")
    out: dict = {"ours": {}, "dbt": {}}
    for step in ("initial", "delta", "rerun"):
        if step != "rerun":
            write_source(engine, batches[step])
        out["ours"][step] = run_ours(url, step)
        if dbt_dir is not None:
            out["dbt"][step] = dbt_snapshot(engine.url, dbt_dir)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=100_000, help="keys in the dimension (full size: 1000000)")
    parser.add_argument("--runs", type=int, default=3, help="runs per system; medians are reported")
    parser.add_argument("--no-dbt", action="store_true", help="skip the dbt baseline")
    parser.add_argument("--sqlite", action="store_true", help="also run ours on SQLite (no baseline there)")
    parser.add_argument("--late", action="store_true", help="also time a late (out-of-order) full extract, once")
    parser.add_argument("--merge-step", nargs=3, metavar=("URL", "AS_OF", "BATCH_ID"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.merge_step:
        merge_step(*args.merge_step)
        return 0

    initial = initial_batch(args.keys)
    delta, mix = delta_batch(initial)
    batches = {"initial": initial, "delta": delta}
    late = delta_batch(initial, seed=99)[0] if args.late else None
    print(f"keys {args.keys:,}; delta batch {len(delta):,} rows: {mix}; runs {args.runs}", flush=True)
    problem = "dbt baseline skipped (--no-dbt)" if args.no_dbt else dbt_available()
    if problem:
        print(problem, flush=True)
    results: dict = {"ours (PostgreSQL)": [], "dbt snapshot (PostgreSQL)": []}
    agreement = None
    url = create_database("ows_bench_scd2")
    try:
        engine = sa.create_engine(url)
        with tempfile.TemporaryDirectory(prefix="dbt_scd2_") as tmp:
            for i in range(args.runs):
                run = one_run(engine, url, batches, None if problem else Path(tmp))
                results["ours (PostgreSQL)"].append(run["ours"])
                if run["dbt"]:
                    results["dbt snapshot (PostgreSQL)"].append(run["dbt"])
                print(f"run {i + 1}:", {k: {s: round(v["wall"], 2) for s, v in r.items()} for k, r in run.items() if r},
                      flush=True)
        print("  stats:", {s: v["stats"] for s, v in results["ours (PostgreSQL)"][-1].items()}, flush=True)
        if not problem:
            agreement = histories_agree(engine)
        if late is not None:  # an old full extract arriving late, slotted between the first two
            write_source(engine, late)
            results["ours (PostgreSQL)"][-1]["late"] = run_ours(url, "late")
            print("  late:", results["ours (PostgreSQL)"][-1]["late"], flush=True)
        engine.dispose()
    finally:
        drop_database(url)
    if args.sqlite:
        with tempfile.TemporaryDirectory(prefix="scd2_bench_") as tmp:
            sqlite_url = f"sqlite:///{tmp}/bench.db"
            engine = sa.create_engine(sqlite_url)
            results["ours (SQLite)"] = [one_run(engine, sqlite_url, batches, None)["ours"] for _ in range(args.runs)]
            engine.dispose()

    print()
    print("| system | initial load (s) | delta batch (s) | no-change re-run (s) | delta rows/s | peak RSS (MiB) | late full extract (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, runs in results.items():
        if not runs:
            continue
        walls = {s: median([r[s]["wall"] for r in runs]) for s in ("initial", "delta", "rerun")}
        lates = [r["late"]["wall"] for r in runs if "late" in r]
        rss = max(v["rss_mib"] for r in runs for v in r.values())
        print(f"| {name} | {walls['initial']:.2f} | {walls['delta']:.2f} | {walls['rerun']:.2f} | "
              f"{len(delta) / walls['delta']:,.0f} | {rss:,.0f} | {f'{median(lates):.2f}' if lates else 'n/a'} |")
    theirs = results["dbt snapshot (PostgreSQL)"]
    if theirs:
        ours = results["ours (PostgreSQL)"]
        print()
        for step, label, target in (("initial", "initial load", 1.0), ("delta", "delta batch", 0.5),
                                    ("rerun", "no-change re-run", 0.33)):
            o, t = median([r[step]["wall"] for r in ours]), median([r[step]["wall"] for r in theirs])
            te = median([r[step]["exec"] for r in theirs])
            verdict = "met" if o / t <= target else "MISSED"
            print(f"ours/dbt, {label}: {o / t:.2f}x (target <= {target}x: {verdict}; ours {o:.2f} s, dbt wall {t:.2f} s, "
                  f"of which snapshot SQL {te:.2f} s)")
    if agreement is not None:
        total, differ = agreement
        print(f"histories: {total:,} keys compared, {differ:,} with a different sequence of versions"
              f" -> {'AGREE' if differ == 0 else 'DISAGREE'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
