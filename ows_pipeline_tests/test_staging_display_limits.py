"""Validation that does not amplify: a name too long for its column is cut and kept (a WARN), and rows
rejected only because their parent was are named as such, in one message with the count and an example."""

from __future__ import annotations

import dagster as dg
import pytest
import sqlalchemy as sa

from ows_pipeline.defs.staging.assets import STAGING_ASSETS
from ows_pipeline.resources import WarehouseResource
from ows_pipeline.staging.quarantine import stage_rows
from ows_pipeline.warehouse.schema import create_warehouse_tables
from ows_pipeline_tests.test_staging_assets import load_all_raw
from ows_pipeline_tests.test_staging_rules import AS_OF, STAGING_ORDER, valid_frames

LONG_NAME = ("Daily reconciliation " * 2_000).strip()  # 41,999 characters in a VARCHAR(200) column


def _materialize(url: str, raise_on_error: bool = True, loose: str = ""):
    def config(asset):
        return {"data_docs": False, **({"max_rejection_rate": 0.6} if asset.key.path[0] == loose else {})}

    run_config = {"ops": {a.key.to_python_identifier(): {"config": config(a)} for a in STAGING_ASSETS}}
    return dg.materialize(STAGING_ASSETS, resources={"warehouse": WarehouseResource(url=url)}, run_config=run_config,
                          raise_on_error=raise_on_error)


def _checks(result) -> dict:
    return {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}


def test_an_over_long_workflow_name_is_cut_and_its_runs_stay(sqlite_url, ows_home):
    engine = sa.create_engine(sqlite_url)
    create_warehouse_tables(engine)
    frames = valid_frames()
    frames["ows_workflow"] = frames["ows_workflow"].astype(object)
    frames["ows_workflow"].loc[0, "workflow_name"] = LONG_NAME
    load_all_raw(engine, frames)

    result = _materialize(sqlite_url)
    assert result.success
    checks = _checks(result)
    warning = checks[("stg_ows_workflow", "display_length")]
    assert not warning.passed and warning.severity == dg.AssetCheckSeverity.WARN
    assert warning.metadata["unexpected_count"].value == 1
    (sample,) = warning.metadata["sample_failing_values"].value
    assert sample.startswith("workflow_name=Daily reconciliation") and len(sample) < 300
    assert all(e.passed for k, e in checks.items() if k[1] in ("rejection_rate", "key_integrity", "not_empty"))

    with engine.connect() as conn:
        name = conn.execute(sa.text("SELECT workflow_name FROM stg_ows_workflow WHERE workflow_id = 1000")).scalar()
        runs = conn.execute(sa.text("SELECT count(*) FROM stg_ows_workflow_run WHERE workflow_id = 1000")).scalar()
        errors = conn.execute(sa.text("SELECT asset_key, field, value, rule, severity, message FROM data_errors")).all()
    assert name == LONG_NAME[:200]
    assert runs == (frames["ows_workflow_run"]["workflow_id"] == 1000).sum() == 10
    ((asset, field, value, rule, severity, message),) = errors
    assert (asset, field, rule, severity) == ("stg_ows_workflow", "workflow_name", "display_length", "WARN")
    assert value == LONG_NAME  # the full value is kept in data_errors
    assert "cut to 200 and kept" in message
    engine.dispose()


def _cut_through_stage_rows(engine: sa.Engine) -> None:
    frames = valid_frames()
    for name in STAGING_ORDER[:3]:
        stage_rows(engine, name, frames[name], batch_id=f"p-{name}", as_of=AS_OF)
    workflows = frames["ows_workflow"].astype(object)
    workflows.loc[1, "workflow_name"] = LONG_NAME
    result = stage_rows(engine, "ows_workflow", workflows, batch_id="w", as_of=AS_OF)
    assert (result.rows_in, result.loaded, result.rejected, result.warned) == (2, 2, 0, 1)
    with engine.connect() as conn:
        name = conn.execute(sa.text("SELECT workflow_name FROM stg_ows_workflow WHERE workflow_id = 1001")).scalar()
        value = conn.execute(sa.text("SELECT value FROM data_errors WHERE batch_id = 'w'")).scalar()
    assert name == LONG_NAME[:200] and value == LONG_NAME


@pytest.mark.postgres
def test_an_over_long_name_is_cut_to_fit_the_column_postgres(pg_url):
    engine = sa.create_engine(pg_url)
    create_warehouse_tables(engine)
    try:
        _cut_through_stage_rows(engine)  # PostgreSQL enforces VARCHAR(200): the cut value must fit
    finally:
        engine.dispose()


def test_rows_rejected_with_their_parent_are_named_in_the_blocking_message(sqlite_url, ows_home):
    engine = sa.create_engine(sqlite_url)
    create_warehouse_tables(engine)
    frames = valid_frames()
    frames["ows_workflow"] = frames["ows_workflow"].astype(object)
    frames["ows_workflow"].loc[1, "workflow_code"] = "BAD CODE!"  # workflow 1001 fails its own rule
    load_all_raw(engine, frames)

    result = _materialize(sqlite_url, raise_on_error=False, loose="stg_ows_workflow")  # 1 of 2 rejected
    assert not result.success
    rate = _checks(result)[("stg_ows_workflow_run", "rejection_rate")]
    assert not rate.passed
    assert rate.metadata["rows_rejected_only_because_of_parent"].value == 10
    why = rate.description
    assert why == rate.metadata["why"].value
    assert why.startswith("stg_ows_workflow_run: 10 of 20 rows rejected (50.00%, maximum 5.00%): ")
    assert ("run_workflow_exists 10 rows (e.g. workflow_id=1001; "
            "10 runs of workflow workflow_id=1001, rejected because the workflow was)") in why
    with engine.connect() as conn:
        messages = {r[0] for r in conn.execute(sa.text(
            "SELECT message FROM data_errors WHERE asset_key = 'stg_ows_workflow_run'"))}
    assert messages == {"workflow_id has no match in stg_ows_workflow.workflow_id: rejected because its workflow "
                        "was (it is in raw_ows_workflow; see the data_errors of stg_ows_workflow)"}
    engine.dispose()
