"""Credentials never show: a scan of everything the deployment stored and served after the other
end-to-end tests ran (or after one extraction run when run alone). The stack's warehouse and SMTP
passwords come from environment variables and are used by every run."""

from __future__ import annotations

import pytest
from dagster._serdes import serialize_value

from ows_pipeline_tests.e2e.conftest import SECRETS
from ows_pipeline_tests.e2e.queries import RUN, all_run_events
from ows_pipeline_tests.e2e.stack import ASSET_JOB, LOCATION, REPOSITORY

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

RESOURCE = """
query Resource($selector: ResourceSelector!) {
  topLevelResourceDetailsOrError(resourceSelector: $selector) {
    __typename
    ... on ResourceDetails { name configuredValues { key value type } }
  }
}
"""


def _assert_clean(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a password appears in {where}"


def test_no_password_in_events_configs_logs_or_ui(dagster_stack):
    instance = dagster_stack.instance()
    try:
        runs = instance.get_runs()
        if not runs:
            run_id = dagster_stack.client().submit_job_execution(
                ASSET_JOB, repository_location_name=LOCATION, repository_name=REPOSITORY,
                asset_selection=["raw_ows_project"],
            )
            assert dagster_stack.wait_for_run(run_id) == "SUCCESS"
            runs = instance.get_runs()
        for run in runs:
            _assert_clean(f"the stored run {run.run_id}", serialize_value(run))
            events = "\n".join(serialize_value(record) for record in instance.all_logs(run.run_id))
            assert events, run.run_id
            _assert_clean(f"the event log of run {run.run_id}", events)
    finally:
        instance.dispose()

    for run in runs:
        _assert_clean(f"the UI's run page of {run.run_id}", repr(dagster_stack.graphql(RUN, {"runId": run.run_id})))
        _assert_clean(f"the UI's event log of {run.run_id}", repr(all_run_events(dagster_stack, run.run_id)))

    for name in ("warehouse", "smtp"):
        data = dagster_stack.graphql(
            RESOURCE,
            {"selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "resourceName": name}},
        )["topLevelResourceDetailsOrError"]
        assert data["__typename"] == "ResourceDetails", data
        values = {v["key"]: v for v in data["configuredValues"]}
        assert values["password"]["type"] == "ENV_VAR", values
        _assert_clean(f"the UI's resource page of {name}", repr(data))

    scanned = 0
    for path in dagster_stack.dagster_home.rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            _assert_clean(f"the file {path}", path.read_bytes().decode("utf-8", errors="replace"))
            scanned += 1
    assert scanned, "no compute log or instance file was scanned"
    for path in dagster_stack.log_dir.glob("*.log"):
        _assert_clean(f"the process log {path.name}", path.read_text(errors="replace"))
    for message in dagster_stack.inbox.messages:
        _assert_clean("an email sent by the pipeline", message.content.decode(errors="replace"))
