"""End to end in a real browser: Playwright drives Debian's Chromium through the Dagster UI.

Screenshots land in test-artifacts/browser/ (git-ignored; CI keeps them as artifacts).
"""

from __future__ import annotations

import time

import pytest

from ows_pipeline_tests.e2e.browser import chromium_page, dismiss_welcome, open_launch_dialog, screenshot
from ows_pipeline_tests.e2e.conftest import ARTIFACTS, DEMO_WEEK, require
from ows_pipeline_tests.e2e.queries import ASSET_NODES, run_record
from ows_pipeline_tests.e2e.stack import LOCATION

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.browser]

GROUPS = ("ows_raw", "ows_staging", "ows_dimensions", "ows_facts", "ows_reports", "ows_uploads")
SHOTS = ARTIFACTS / "browser"
WEEKLY_JOB = "ows_weekly_job"


def _asset_nodes(stack) -> list[dict]:
    return stack.graphql(ASSET_NODES)["assetNodes"]


def _job_names(stack) -> set[str]:
    data = stack.graphql(
        """{ repositoriesOrError { ... on RepositoryConnection { nodes { location { name } jobs { name } } } } }"""
    )
    return {j["name"] for n in data["repositoriesOrError"]["nodes"] if n["location"]["name"] == LOCATION for j in n["jobs"]}


def _runs_of_week(stack, week: str) -> list[str]:
    data = stack.graphql(
        """query Runs($tags: [ExecutionTag!]) { runsOrError(filter: {tags: $tags}) {
             ... on Runs { results { runId jobName } } } }""",
        {"tags": [{"key": "dagster/partition", "value": week}]},
    )
    return [r["runId"] for r in data["runsOrError"]["results"] if r["jobName"] == WEEKLY_JOB]


def test_asset_graph_shows_every_group(dagster_stack, chromium_path):
    present = {node["groupName"] for node in _asset_nodes(dagster_stack)}
    with chromium_page(chromium_path) as page:
        page.goto(f"{dagster_stack.url}/asset-groups")
        dismiss_welcome(page)
        for group in sorted(present):
            page.get_by_text(group, exact=True).first.wait_for(state="visible")
        screenshot(page, SHOTS, "01_asset_graph")
    assert set(GROUPS) <= present, f"groups missing from the code location: {sorted(set(GROUPS) - present)}"


def test_launch_one_week_from_the_ui_and_inspect_assets(dagster_stack, chromium_path):
    require(WEEKLY_JOB in _job_names(dagster_stack), f"{WEEKLY_JOB} is not in the code location yet")
    before = set(_runs_of_week(dagster_stack, DEMO_WEEK))
    with chromium_page(chromium_path) as page:
        dialog = open_launch_dialog(page, f"{dagster_stack.url}/locations/{LOCATION}/jobs/{WEEKLY_JOB}", DEMO_WEEK)
        screenshot(page, SHOTS, "02_launch_one_week")
        dialog.get_by_role("button", name="Launch 1 run").click()

        deadline = time.monotonic() + 60
        new = []
        while time.monotonic() < deadline and not new:
            new = [r for r in _runs_of_week(dagster_stack, DEMO_WEEK) if r not in before]
            time.sleep(1)
        assert len(new) == 1, f"expected one new run for week {DEMO_WEEK}, found {new}"
        run_id = new[0]

        page.goto(f"{dagster_stack.url}/runs/{run_id}")
        status = dagster_stack.wait_for_run(run_id, timeout=600)
        page.reload()
        page.get_by_text("Success", exact=False).first.wait_for(state="visible", timeout=60_000)
        page.get_by_text("Loading run logs").wait_for(state="hidden", timeout=60_000)
        screenshot(page, SHOTS, "03_run_succeeded")
        assert status == "SUCCESS", dagster_stack.logs()
        assert run_record(dagster_stack, run_id)["tags"]["dagster/partition"] == DEMO_WEEK

        page.goto(f"{dagster_stack.url}/assets/fct_workflow_run_weekly")
        page.get_by_text("Row count", exact=False).first.wait_for(state="visible")
        screenshot(page, SHOTS, "04_fact_metadata")
        page.goto(f"{dagster_stack.url}/assets/fct_workflow_run_weekly?view=checks")
        checks = [c["name"] for n in _asset_nodes(dagster_stack) if n["assetKey"]["path"] == ["fct_workflow_run_weekly"]
                  for c in n["assetChecksOrError"].get("checks", [])]
        for check in checks:
            page.get_by_text(check, exact=True).first.wait_for(state="visible")
        screenshot(page, SHOTS, "05_fact_checks")

        page.goto(f"{dagster_stack.url}/assets/ows_weekly_report?partition={DEMO_WEEK}")
        page.get_by_text(f"ows_weekly_{DEMO_WEEK}.xlsx", exact=False).first.wait_for(state="visible")
        screenshot(page, SHOTS, "06_report_path")
