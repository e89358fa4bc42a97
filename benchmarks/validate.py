"""Validate and quarantine a large `stg_ows_workflow_run` batch: the staging fast path vs plain GX.

    .venv/bin/python benchmarks/validate.py                      # 100k rows, SQLite + PostgreSQL
    .venv/bin/python benchmarks/validate.py --rows 1000000       # the full size

About 1% of the rows carry a defect, spread over ten rules (allowed status, result-code format,
negative count, end before begin, business date in the future, unknown workflow, run key too
long or missing, duplicated run id, two open runs with one run key).

Approaches, each measured in its own process (wall time of validate + quarantine + load,
median of --runs; peak RSS of the process):
- baseline: the straightforward Great Expectations way: the cleaned batch as a pandas batch,
  result format COMPLETE with `unexpected_index_column_names`, failing rows taken from the
  unexpected index lists (the cross-row open-run rule in pandas, GX has none), then the same
  writes as staging. great_expectations is imported before the clock starts.
- staging: `stage_rows` (vectorised rules, complete quarantine, same writes).
- staging+docs: `stage_rows`, then the GX reporting run with Data Docs (`gx_runner.run_suite`),
  GX import included.
Every approach's rejected rows are compared with an independent pandas computation.
Also measured: `import ows_pipeline.definitions` against a bare `import dagster`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scratch_db import create_database, drop_database as drop_scratch_database  # noqa: E402

PG_ADMIN_URL = os.environ.get("OWS_BENCH_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
AS_OF = "2026-11-20T06:00:00+00:00"
WORKFLOWS = 200


# ---------------------------------------------------------------- data

def make_batch(rows: int, seed: int = 7):
    """A raw workflow-run batch with about 1% defects; returns (frame, injected failing positions)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    run_id = np.arange(1, rows + 1, dtype=np.int64)
    begin = pd.Timestamp("2026-11-19T06:00:00Z") + pd.to_timedelta(rng.integers(0, 20 * 3600, rows), unit="s")
    end = begin + pd.to_timedelta(rng.integers(60, 4 * 3600, rows), unit="s")
    open_ = rng.random(rows) < 0.02
    frame = pd.DataFrame({
        "run_id": run_id,
        "workflow_id": rng.integers(1, WORKFLOWS + 1, rows),
        "run_key": pd.array([f"RUN-{i:09d}" for i in run_id], dtype="str"),
        "parent_run_id": pd.array([None] * rows, dtype="Int64"),
        "business_date": pd.array(["2026-11-19"] * rows, dtype="str"),
        "status": pd.array(np.where(open_, "ACTIVE", "COMPLETE"), dtype="str"),
        "result_code": pd.array(rng.choice(["MATCHED", "BREAKS", "PARTIAL", "#FORCE"], rows), dtype="str"),
        "records_loaded": rng.integers(0, 10_000, rows),
        "matched_cnt": rng.integers(0, 9_000, rows),
        "suggested_cnt": rng.integers(0, 500, rows),
        "unmatched_cnt": rng.integers(0, 500, rows),
        "begin_date": begin,
        "end_date": pd.Series(end).where(~open_),
        "last_update_date": pd.Series(end).where(~open_, begin),
    })
    per_rule = max(1, rows // 1000)  # ten rules x 0.1% = 1%
    positions = rng.permutation(rows)
    chunks = [positions[i * per_rule:(i + 1) * per_rule] for i in range(10)]
    bad: set[int] = set()
    frame.loc[chunks[0], "status"] = "DONE"
    frame.loc[chunks[1], "result_code"] = "bad code"
    frame.loc[chunks[2], "matched_cnt"] = -1
    frame.loc[chunks[3], "end_date"] = frame.loc[chunks[3], "begin_date"] - pd.Timedelta(minutes=5)
    frame.loc[chunks[4], "business_date"] = "2099-01-01"
    frame.loc[chunks[5], "workflow_id"] = WORKFLOWS + 999
    frame.loc[chunks[6], "run_key"] = "R" * 61
    frame.loc[chunks[7], "run_key"] = None
    dup = chunks[8][: len(chunks[8]) // 2]  # each takes the id of its neighbour: both rows fail
    partner = (dup + 1) % rows
    frame.loc[dup, "run_id"] = frame.loc[partner, "run_id"].to_numpy()
    pair = chunks[9][: len(chunks[9]) // 2 * 2].reshape(-1, 2)
    frame.loc[pair[:, 1], "run_key"] = frame.loc[pair[:, 0], "run_key"].to_numpy()
    frame.loc[pair.ravel(), ["end_date", "status"]] = [pd.NaT, "ACTIVE"]
    for chunk in chunks[:8]:
        bad.update(int(p) for p in chunk)
    bad.update(int(p) for p in dup)
    bad.update(int(p) for p in partner)
    bad.update(int(p) for p in pair.ravel())
    return frame, bad


def expected_failures(frame, workflow_ids) -> set[int]:
    """Independent pandas computation of every row failing an ERROR rule of stg_ows_workflow_run."""
    import numpy as np
    import pandas as pd

    f = frame
    bad = np.zeros(len(f), dtype=bool)
    bad |= ~f["status"].isin(["ACTIVE", "COMPLETE", "ERROR", "SUSPEND"]).to_numpy()
    bad |= ~f["result_code"].str.fullmatch(r"#?[A-Z][A-Z0-9_]*").fillna(True).to_numpy(dtype=bool)
    for c in ("records_loaded", "matched_cnt", "suggested_cnt", "unmatched_cnt"):
        bad |= (f[c] < 0).to_numpy()
    bad |= (f["end_date"] < f["begin_date"]).fillna(False).to_numpy(dtype=bool)
    bad |= (pd.to_datetime(f["business_date"]) > pd.Timestamp("2026-11-21")).to_numpy()
    bad |= ~f["workflow_id"].isin(workflow_ids).to_numpy()
    bad |= f["run_key"].isna().to_numpy()
    bad |= (f["run_key"].str.len() > 60).fillna(False).to_numpy(dtype=bool)
    bad |= f["run_id"].duplicated(keep=False).to_numpy()
    is_open = f["end_date"].isna() & f["run_key"].notna()
    counts = f.loc[is_open, "run_key"].value_counts()
    bad |= (is_open & f["run_key"].isin(counts.index[counts > 1])).to_numpy()
    return set(np.flatnonzero(bad).tolist())


# ---------------------------------------------------------------- warehouse

def make_database(backend: str, workdir: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{workdir / f'bench_{uuid.uuid4().hex[:6]}.db'}"
    return create_database("ows_bench", PG_ADMIN_URL)


def drop_database(url: str) -> None:
    import sqlalchemy as sa

    if url.startswith("sqlite"):
        Path(sa.make_url(url).database).unlink(missing_ok=True)
        return
    drop_scratch_database(url, PG_ADMIN_URL)


def prepare_warehouse(url: str):
    """Tables plus the staged parents (projects, workflows) the run rules look up."""
    import pandas as pd

    from ows_pipeline.resources import make_engine
    from ows_pipeline.staging.quarantine import stage_rows
    from ows_pipeline.warehouse.schema import create_warehouse_tables

    engine = make_engine(url, role="warehouse")
    create_warehouse_tables(engine)
    ts = "2026-01-01T00:00:00Z"
    projects = pd.DataFrame({"project_id": [1], "project_code": ["P1"], "project_name": ["P"], "business_unit": [None],
                             "owner": [None], "active_flag": ["Y"], "created_at": [ts], "updated_at": [ts]})
    workflows = pd.DataFrame({
        "workflow_id": range(1, WORKFLOWS + 1), "project_id": 1,
        "workflow_code": [f"WF{i}" for i in range(1, WORKFLOWS + 1)], "version": 1, "workflow_name": "w",
        "begin_date": ts, "end_date": None, "updated_at": ts,
    })
    stage_rows(engine, "ows_project", projects, batch_id="bench-p", as_of=pd.Timestamp(AS_OF))
    stage_rows(engine, "ows_workflow", workflows, batch_id="bench-w", as_of=pd.Timestamp(AS_OF))
    return engine


def reset(engine) -> None:
    import sqlalchemy as sa

    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM stg_ows_workflow_run"))
        conn.execute(sa.text("DELETE FROM data_errors WHERE asset_key = 'stg_ows_workflow_run'"))
        conn.execute(sa.text("DELETE FROM etl_batches WHERE asset_key = 'stg_ows_workflow_run'"))
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE stg_ows_workflow_run"))


# ---------------------------------------------------------------- approaches

def run_staging(engine, frame, batch_id, docs_dir: Path | None):
    import pandas as pd

    from ows_pipeline.staging.quarantine import stage_rows

    import sqlalchemy as sa

    result = stage_rows(engine, "ows_workflow_run", frame, batch_id=batch_id, as_of=pd.Timestamp(AS_OF),
                        sample_rows=20_000 if docs_dir is not None else 0)
    if docs_dir is not None:
        from ows_pipeline.staging import gx_runner
        from ows_pipeline.staging.suites import SUITES

        gx_runner.run_suite("ows_workflow_run", SUITES["ows_workflow_run"], result.sample, batch_id=batch_id,
                            docs_dir=docs_dir)
    with engine.connect() as conn:  # the rejected rows' positions, from what staging wrote
        rejected = {n - 1 for (n,) in conn.execute(sa.text(
            "SELECT DISTINCT row_number FROM data_errors WHERE batch_id = :b AND severity = 'ERROR'"), {"b": batch_id})}
    return rejected, result.loaded


def run_baseline(engine, frame, batch_id):
    """Plain GX: pandas batch, COMPLETE results with unexpected_index_column_names, then the same writes."""
    import great_expectations as gx
    import great_expectations.expectations as gxe
    import numpy as np
    import pandas as pd
    import sqlalchemy as sa
    from great_expectations.data_context.types.base import ProgressBarsConfig

    from ows_pipeline.staging.clean import clean_frame
    from ows_pipeline.staging.quarantine import ERROR_COLUMNS, error_tuples, load_staging
    from ows_pipeline.warehouse.batches import record_batch, utc_now
    from ows_pipeline.warehouse.bulk import insert_rows
    from ows_pipeline.warehouse.schema import data_errors

    clean, issues = clean_frame(frame, "ows_workflow_run")
    with engine.connect() as conn:
        workflow_ids = [r[0] for r in conn.execute(sa.text("SELECT workflow_id FROM stg_ows_workflow"))]
    data = clean.assign(_row=np.arange(len(clean)))
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = context.data_sources.add_pandas("p").add_dataframe_asset("runs").add_batch_definition_whole_dataframe("b")
    suite = gx.ExpectationSuite(name="stg_ows_workflow_run")
    checks = [
        *(gxe.ExpectColumnValuesToNotBeNull(column=c) for c in
          ("run_id", "workflow_id", "run_key", "business_date", "status", "begin_date", "last_update_date")),
        gxe.ExpectColumnValueLengthsToBeBetween(column="run_key", max_value=60),
        gxe.ExpectColumnValueLengthsToBeBetween(column="status", max_value=10),
        gxe.ExpectColumnValueLengthsToBeBetween(column="result_code", max_value=30),
        gxe.ExpectColumnValuesToBeUnique(column="run_id"),
        gxe.ExpectColumnValuesToBeInSet(column="status", value_set=["ACTIVE", "COMPLETE", "ERROR", "SUSPEND"]),
        gxe.ExpectColumnValuesToMatchRegex(column="result_code", regex=r"^#?[A-Z][A-Z0-9_]*$"),
        *(gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0) for c in
          ("records_loaded", "matched_cnt", "suggested_cnt", "unmatched_cnt")),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="end_date", column_B="begin_date", or_equal=True,
                                                    ignore_row_if="either_value_is_missing"),
        gxe.ExpectColumnValuesToBeBetween(column="business_date", max_value=pd.Timestamp("2026-11-21")),
        gxe.ExpectColumnValuesToBeInSet(column="workflow_id", value_set=workflow_ids),
    ]
    for expectation in checks:
        suite.add_expectation(expectation)
    suite = context.suites.add(suite)
    validation = context.validation_definitions.add(gx.ValidationDefinition(name="v", data=batch, suite=suite))
    result = validation.run(
        batch_parameters={"dataframe": data},
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["_row"]},
    )
    errors = []
    for r in result.results:
        kwargs = r.expectation_config.kwargs
        field = kwargs.get("column") or kwargs.get("column_A")
        for item in r.result.get("unexpected_index_list") or []:
            row = int(item["_row"])
            errors.append((row, field, r.expectation_config.type))
    is_open = clean["end_date"].isna() & clean["run_key"].notna()  # GX has no cross-row rule for this
    counts = clean.loc[is_open, "run_key"].value_counts()
    crowded = np.flatnonzero((is_open & clean["run_key"].isin(counts.index[counts > 1])).to_numpy())
    errors += [(int(p), "run_key", "one_open_run_per_key") for p in crowded]
    for issue in issues:
        errors += [(int(p), issue.column, "valid_type") for p in issue.positions]
    rejected = {e[0] for e in errors}
    now = utc_now()
    rows = pd.DataFrame({
        "batch_id": batch_id, "asset_key": "stg_ows_workflow_run", "source_file": None,
        "row_number": [e[0] + 1 for e in errors], "record_key": [f"run_id={clean.at[e[0], 'run_id']}" for e in errors],
        "field": [e[1] for e in errors], "value": [str(clean.at[e[0], e[1]]) for e in errors],
        "rule": [e[2] for e in errors], "severity": "ERROR", "message": [e[2] for e in errors], "created_at": now,
    }, columns=ERROR_COLUMNS)
    mask = np.ones(len(clean), dtype=bool)
    mask[list(rejected)] = False
    with engine.begin() as conn:
        insert_rows(conn, data_errors, ERROR_COLUMNS, error_tuples(rows))
        loaded = load_staging(conn, "ows_workflow_run", clean.loc[mask], batch_id, "incremental", len(clean))
        record_batch(conn, batch_id=batch_id, asset_key="stg_ows_workflow_run", rows_in=len(clean),
                     rows_loaded=loaded, rows_rejected=len(rejected), status="SUCCESS")
    return rejected, loaded


def child(approach: str, backend: str, rows: int, runs: int) -> dict:
    """Measure one approach in this process; prints JSON."""
    import pandas as pd

    frame, injected = make_batch(rows)
    workdir = Path(tempfile.mkdtemp(prefix="ows_bench_"))
    url = make_database(backend, workdir)
    try:
        engine = prepare_warehouse(url)
        expected = expected_failures(frame, list(range(1, WORKFLOWS + 1)))
        if approach == "baseline":
            import great_expectations  # noqa: F401 - import cost is not part of the measured step
        times, found = [], None
        for i in range(runs):
            reset(engine)
            batch = f"bench-{i}"
            started = time.perf_counter()
            if approach == "baseline":
                found, loaded = run_baseline(engine, frame, batch)
            else:
                docs = workdir / "data_docs" if approach == "staging+docs" else None
                found, loaded = run_staging(engine, frame, batch, docs)
            times.append(time.perf_counter() - started)
            assert loaded == rows - len(found), (loaded, rows, len(found))
        engine.dispose()
        return {
            "approach": approach, "backend": backend, "rows": rows, "seconds": statistics.median(times),
            "all_seconds": times, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "found": len(found), "expected": len(expected), "injected": len(injected),
            "complete": found == expected, "exact": found == expected == injected,
        }
    finally:
        drop_database(url)
        pd.options  # keep pandas imported in the child only


def import_times(repeats: int) -> dict:
    """Import times in fresh processes, alternating the two statements so that load drifts hit both."""
    statements = {"dagster": "import dagster", "definitions": "import ows_pipeline.definitions"}
    samples: dict[str, list[float]] = {k: [] for k in statements}
    for _ in range(repeats):
        for key, statement in statements.items():
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", statement], check=True, cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            samples[key].append(time.perf_counter() - started)
    out = {k: statistics.median(v) for k, v in samples.items()}
    out.update({f"{k}_min": min(v) for k, v in samples.items()})
    out["ratio"] = out["definitions"] / out["dagster"]
    out["ratio_min"] = out["definitions_min"] / out["dagster_min"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3, help="runs per approach (median reported)")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--approaches", default="baseline,staging,staging+docs")
    parser.add_argument("--import-repeats", type=int, default=9)
    parser.add_argument("--child", nargs=2, metavar=("APPROACH", "BACKEND"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.rows, args.runs)))
        return

    results = []
    for backend in args.backends.split(","):
        for approach in args.approaches.split(","):
            out = subprocess.run(
                [sys.executable, __file__, "--rows", str(args.rows), "--runs", str(args.runs),
                 "--child", approach, backend],
                capture_output=True, text=True, cwd=ROOT,
            )
            if out.returncode:
                sys.exit(f"{approach} on {backend} failed:\n{out.stderr[-3000:]}")
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"  measured {approach} on {backend}", file=sys.stderr, flush=True)

    print(f"\nValidate + quarantine + load {args.rows:,} stg_ows_workflow_run rows "
          f"(~1% defective), median of {args.runs} runs\n")
    print(f"{'backend':<11}{'approach':<14}{'seconds':>9}{'ratio':>8}{'peak RSS MB':>13}"
          f"{'rejected':>10}{'expected':>10}  complete")
    for backend in args.backends.split(","):
        base = next((r for r in results if r["backend"] == backend and r["approach"] == "baseline"), None)
        for r in (r for r in results if r["backend"] == backend):
            ratio = r["seconds"] / base["seconds"] if base else float("nan")
            print(f"{backend:<11}{r['approach']:<14}{r['seconds']:>9.2f}{ratio:>7.2f}x{r['peak_rss_mb']:>13.0f}"
                  f"{r['found']:>10,}{r['expected']:>10,}  {'yes' if r['complete'] else 'NO'}")
    imports = import_times(args.import_repeats)
    print(f"\nimport dagster {imports['dagster']:.2f} s, import ows_pipeline.definitions "
          f"{imports['definitions']:.2f} s: ratio {imports['ratio']:.2f}x (target <= 1.3x); "
          f"best of {args.import_repeats}: {imports['dagster_min']:.2f} s vs {imports['definitions_min']:.2f} s, "
          f"{imports['ratio_min']:.2f}x")
    print("targets: staging <= 0.6x baseline, every failing row found")


if __name__ == "__main__":
    main()
