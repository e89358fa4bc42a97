"""`ows-pipeline demo`: its weekly runs belong to the ows_pipeline code location."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ows_pipeline.demo.pipeline import JOB, LOCATION, REPOSITORY, run_demo

ROOT = Path(__file__).resolve().parents[1]

JOB_RUNS = """
query JobRuns($selector: PipelineSelector!) {
  pipelineOrError(params: $selector) {
    __typename
    ... on Pipeline { runs { runId status tags { key value } } }
  }
}
"""

ALL_RUNS = """
query AllRuns {
  runsOrError {
    ... on Runs { results { runId pipelineName repositoryOrigin { repositoryLocationName repositoryName } } }
  }
}
"""


def test_location_name_is_the_workspace_one():
    location = yaml.safe_load((ROOT / "workspace.yaml").read_text())["load_from"][0]["python_module"]
    assert location["location_name"] == LOCATION
    assert (location["module_name"], location["attribute"]) == ("ows_pipeline.definitions", "defs")


@pytest.mark.slow
def test_demo_runs_are_listed_on_the_job_page_of_the_location(ows_home, tmp_path, monkeypatch):
    """Runs made by `execute_in_process` carry no origin: the UI showed them under no code location,
    neither on the job's page nor on the timeline. The demo's runs must be the location's."""
    from dagster import DagsterInstance
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget
    from dagster_graphql.test.utils import execute_dagster_graphql

    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    monkeypatch.chdir(ROOT)
    run_demo(weeks=1, history_weeks=1, log=lambda *_: None, log_level="ERROR",
             projects=2, feeds_per_project=3, workflows_per_project=2, runs_per_day=15)

    with DagsterInstance.get() as instance:
        runs = instance.get_runs()
        assert len(runs) == 1 and runs[0].job_name == JOB
        run = runs[0]
        assert run.remote_job_origin.location_name == LOCATION
        assert run.remote_job_origin.repository_origin.repository_name == REPOSITORY
        with WorkspaceProcessContext(instance, WorkspaceFileTarget([str(ROOT / "workspace.yaml")])) as workspace:
            context = workspace.create_request_context()
            selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "pipelineName": JOB}
            page = execute_dagster_graphql(context, JOB_RUNS, {"selector": selector}).data["pipelineOrError"]
            listed = execute_dagster_graphql(context, ALL_RUNS).data["runsOrError"]["results"]
    assert page["__typename"] == "Pipeline", page
    assert [r["runId"] for r in page["runs"]] == [run.run_id]
    assert page["runs"][0]["status"] == "SUCCESS"
    assert {"key": "dagster/partition", "value": run.tags["dagster/partition"]} in page["runs"][0]["tags"]
    assert [(r["runId"], r["repositoryOrigin"]) for r in listed] == [
        (run.run_id, {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY})
    ]
