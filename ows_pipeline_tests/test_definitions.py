"""The code location: loads, validates, stays cheap to import, and runs the raw extracts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from ows_pipeline.source.schema import SOURCE_TABLES
from ows_pipeline_tests.small_source import build_small_source

ROOT = Path(__file__).resolve().parents[1]

IMPORT_PROBE = """
import sqlalchemy.pool, sys
connections = []
sqlalchemy.event.listen(sqlalchemy.pool.Pool, "connect", lambda *a: connections.append(a))
import ows_pipeline.definitions as d
assert d.defs is not None
heavy = [m for m in ("great_expectations", "openpyxl", "xlsxwriter", "pandas", "numpy", "pyarrow", "psycopg2",
                     "oracledb") if m in sys.modules]
print("heavy:", heavy)
print("connections:", len(connections))
"""


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OWS_")}
    env.update(extra)
    return env


def test_importing_definitions_is_cheap_and_connects_to_nothing(tmp_path):
    env = _clean_env(
        OWS_HOME=str(tmp_path),
        # unreachable databases: an import that connected would hang or fail
        OWS_SOURCE_URL="postgresql+psycopg2://nobody@127.0.0.1:9/nowhere",
        OWS_WAREHOUSE_URL="postgresql+psycopg2://nobody@127.0.0.1:9/nowhere",
    )
    out = subprocess.run([sys.executable, "-c", IMPORT_PROBE], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "heavy: []" in out.stdout
    assert "connections: 0" in out.stdout
    assert not any(tmp_path.iterdir()), "importing the definitions wrote files"


@pytest.mark.parametrize(
    "command, success",
    [
        (["dagster", "definitions", "validate", "-w", "workspace.yaml"], "Validation successful"),
        (["dg", "check", "defs"], "All definitions loaded successfully"),
    ],
    ids=["dagster", "dg"],
)
def test_both_clis_load_the_code_location(command, success, tmp_path):
    executable = Path(sys.executable).with_name(command[0])
    out = subprocess.run(
        [str(executable), *command[1:]],
        env=_clean_env(OWS_HOME=str(tmp_path), DAGSTER_HOME=str(tmp_path), PATH=f"{executable.parent}:{os.environ['PATH']}"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert success in out.stdout + out.stderr


def test_raw_assets_materialize_on_the_embedded_default(ows_home):
    from ows_pipeline.definitions import defs
    from ows_pipeline.defs.extract.assets import raw_ows_tables
    from ows_pipeline.resources import resources_from_env

    build_small_source(f"sqlite:///{ows_home / 'ows_source.db'}", runs=12)
    result = dg.materialize([raw_ows_tables], resources=resources_from_env())
    assert result.success
    materialized = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert materialized == {f"raw_{t.name}" for t in SOURCE_TABLES}
    metadata = {
        e.asset_key.path[-1]: e.materialization.metadata for e in result.get_asset_materialization_events()
    }
    assert metadata["raw_ows_workflow_run"]["dagster/row_count"].value == 12
    assert "run_key" in metadata["raw_ows_workflow_run"]["preview"].value
    engine = sa.create_engine(f"sqlite:///{ows_home / 'warehouse.db'}")
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from raw_ows_run_step_history")).scalar_one() == 24
    assert defs.resolve_asset_graph().get(dg.AssetKey("raw_ows_feed")).group_name == "ows_raw"
    # an incremental run that brings nothing new still reports the table's size, not zero
    again = dg.materialize([raw_ows_tables], resources=resources_from_env(), selection=["raw_ows_workflow_run"])
    (event,) = again.get_asset_materialization_events()
    assert event.materialization.metadata["dagster/row_count"].value == 12
    assert event.materialization.metadata["rows_loaded"].value == 0


def test_a_subset_extracts_only_the_selected_tables(ows_home):
    from ows_pipeline.defs.extract.assets import raw_ows_tables
    from ows_pipeline.resources import resources_from_env

    build_small_source(f"sqlite:///{ows_home / 'ows_source.db'}", runs=3)
    result = dg.materialize([raw_ows_tables], resources=resources_from_env(), selection=["raw_ows_project"])
    assert [e.asset_key.path[-1] for e in result.get_asset_materialization_events()] == ["raw_ows_project"]
