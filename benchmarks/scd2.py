"""Benchmark: the SCD2 merge engine against a dbt snapshot, on the same data, in the same run.

A dimension of N keys is loaded; then a full extract with 4% of keys changed, 1% deleted and
1% new (the delta batch); then the same extract again at a later as-of (nothing changed).
Ours runs on PostgreSQL and SQLite; the baseline is `dbt snapshot` (check strategy on the same
tracked columns, `hard_deletes: new_record`) on PostgreSQL, from the virtualenv .venv-dbt.

    .venv/bin/python benchmarks/scd2.py                      # 100k keys, 3 runs
    .venv/bin/python benchmarks/scd2.py --keys 1000000       # the full size
    .venv/bin/python benchmarks/scd2.py --no-dbt --no-sqlite

Reports wall times (medians), ours/dbt ratios, source rows/s, and whether the two histories
agree on every key's sequence of versions.
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

import numpy as np
import pandas as pd
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ows_pipeline.scd2 import declare_dimension, merge_scd2, scd2_batches  # noqa: E402
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


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_ours(engine: sa.Engine, initial: pd.DataFrame, delta: pd.DataFrame, late: pd.DataFrame | None = None) -> dict:
    fresh_tables(engine)
    times = {"initial": timed(lambda: merge_scd2(engine, SPEC, initial, T0, batch_id=f"i-{uuid.uuid4().hex[:8]}"))}
    stats = {}

    def delta_run():
        stats["delta"] = merge_scd2(engine, SPEC, delta, T1, batch_id=f"d-{uuid.uuid4().hex[:8]}")

    def rerun():
        stats["rerun"] = merge_scd2(engine, SPEC, delta, T2, batch_id=f"r-{uuid.uuid4().hex[:8]}")

    times["delta"] = timed(delta_run)
    times["rerun"] = timed(rerun)
    if late is not None:  # an old full extract arriving late, slotted between the first two

        def late_run():
            stats["late"] = merge_scd2(engine, SPEC, late, T0 + dt.timedelta(days=3), batch_id=f"l-{uuid.uuid4().hex[:8]}")

        times["late"] = timed(late_run)
    times["stats"] = {k: v.as_metadata() for k, v in stats.items()}
    return times


# ------------------------------------------------------------------ dbt


def dbt_available() -> str | None:
    if not DBT.exists():
        return (
            f"dbt baseline skipped: {DBT} not found. Create it with: python3 -m venv .venv-dbt && "
            ".venv-dbt/bin/pip install 'dbt-core>=1.11,<1.12' 'dbt-postgres>=1.9,<1.11'"
        )
    return None


def write_source(engine: sa.Engine, frame: pd.DataFrame) -> None:
    from ows_pipeline.scd2.batch import _copy_frame

    with engine.begin() as conn:
        conn.execute(source_table.delete())
        cols = [c.name for c in source_table.columns]
        _copy_frame(conn, source_table, cols, frame[cols])
        conn.exec_driver_sql("ANALYZE bench_source")


def dbt_snapshot(url: sa.URL, workdir: Path) -> tuple[float, float]:
    """Run `dbt snapshot`; returns (wall seconds, dbt's own execution seconds of the snapshot)."""
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
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=workdir)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"dbt snapshot failed:\n{proc.stdout}\n{proc.stderr}")
    results = json.loads((workdir / "target" / "run_results.json").read_text())
    return wall, sum(r.get("execution_time", 0.0) for r in results["results"])


def run_dbt(engine: sa.Engine, initial: pd.DataFrame, delta: pd.DataFrame) -> dict:
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS bench_snapshot")
    with tempfile.TemporaryDirectory(prefix="dbt_scd2_") as tmp:
        work = Path(tmp)
        write_source(engine, initial)
        initial_wall, initial_exec = dbt_snapshot(engine.url, work)
        write_source(engine, delta)
        delta_wall, delta_exec = dbt_snapshot(engine.url, work)
        rerun_wall, rerun_exec = dbt_snapshot(engine.url, work)
    return {
        "initial": initial_wall,
        "delta": delta_wall,
        "rerun": rerun_wall,
        "delta_exec": delta_exec,
        "rerun_exec": rerun_exec,
        "initial_exec": initial_exec,
    }


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=100_000, help="keys in the dimension (full size: 1000000)")
    parser.add_argument("--runs", type=int, default=3, help="runs per system; medians are reported")
    parser.add_argument("--no-dbt", action="store_true", help="skip the dbt baseline")
    parser.add_argument("--no-sqlite", action="store_true", help="skip ours on SQLite")
    parser.add_argument("--no-postgres", action="store_true", help="skip PostgreSQL (and dbt)")
    parser.add_argument("--no-late", action="store_true", help="skip the late (out-of-order) full extract (timed once)")
    args = parser.parse_args(argv)

    initial = initial_batch(args.keys)
    delta, mix = delta_batch(initial)
    late = None if args.no_late else delta_batch(initial, seed=99)[0]
    print(f"keys {args.keys:,}; delta batch {len(delta):,} rows: {mix}; runs {args.runs}", flush=True)
    results: dict = {}
    agreement = None
    if not args.no_postgres:
        url = create_database("ows_bench_scd2")
        try:
            engine = sa.create_engine(url)
            ours = [run_ours(engine, initial, delta, late if i == 0 else None) for i in range(args.runs)]
            results["ours (PostgreSQL)"] = ours
            print("ours on PostgreSQL:", [(round(r["delta"], 2), round(r["rerun"], 2)) for r in ours], flush=True)
            print("  stats:", ours[-1]["stats"], flush=True)
            problem = None if not args.no_dbt else "dbt baseline skipped (--no-dbt)"
            problem = problem or dbt_available()
            if problem:
                print(problem, flush=True)
            else:
                theirs = [run_dbt(engine, initial, delta) for _ in range(args.runs)]
                results["dbt snapshot (PostgreSQL)"] = theirs
                print("dbt:", [(round(r["delta"], 2), round(r["rerun"], 2)) for r in theirs], flush=True)
                # histories of the last runs of both, on the same data
                run_ours(engine, initial, delta)
                agreement = histories_agree(engine)
            engine.dispose()
        finally:
            drop_database(url)
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory(prefix="scd2_bench_") as tmp:
            engine = sa.create_engine(f"sqlite:///{tmp}/bench.db")

            @sa.event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn, _record):
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode = WAL")
                cur.execute("PRAGMA synchronous = NORMAL")
                cur.close()

            results["ours (SQLite)"] = [run_ours(engine, initial, delta, late if i == 0 else None) for i in range(args.runs)]
            print("ours on SQLite:", [(round(r["delta"], 2), round(r["rerun"], 2)) for r in results["ours (SQLite)"]])
            engine.dispose()

    rows = len(delta)
    print()
    print("| system | initial load (s) | delta batch (s) | no-change re-run (s) | delta rows/s | late full extract (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, runs in results.items():
        d = median([r["delta"] for r in runs])
        lates = [r["late"] for r in runs if "late" in r]
        print(
            f"| {name} | {median([r['initial'] for r in runs]):.2f} | {d:.2f} | "
            f"{median([r['rerun'] for r in runs]):.2f} | {rows / d:,.0f} | "
            f"{f'{median(lates):.2f}' if lates else 'n/a'} |"
        )
    if "dbt snapshot (PostgreSQL)" in results:
        ours = results["ours (PostgreSQL)"]
        theirs = results["dbt snapshot (PostgreSQL)"]
        od, orr = median([r["delta"] for r in ours]), median([r["rerun"] for r in ours])
        td, tr = median([r["delta"] for r in theirs]), median([r["rerun"] for r in theirs])
        tde, tre = median([r["delta_exec"] for r in theirs]), median([r["rerun_exec"] for r in theirs])
        print()
        print(f"ours/dbt, delta batch: {od / td:.2f}x (dbt wall {td:.2f} s, of which snapshot SQL {tde:.2f} s; "
              f"ours/dbt SQL only {od / tde:.2f}x)")
        print(f"ours/dbt, no-change re-run: {orr / tr:.2f}x (dbt wall {tr:.2f} s, snapshot SQL {tre:.2f} s; "
              f"ours/dbt SQL only {orr / tre:.2f}x)")
    if agreement is not None:
        total, differ = agreement
        print(f"histories: {total:,} keys compared, {differ:,} with a different sequence of versions"
              f" -> {'AGREE' if differ == 0 else 'DISAGREE'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
