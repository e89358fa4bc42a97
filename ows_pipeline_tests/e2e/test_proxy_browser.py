"""The two roles in a real browser through the proxy: Debian's Chromium signs in with basic authentication
over TLS (the test certificate; the .test names resolve to 127.0.0.1 inside Chromium only).
Screenshots land in test-artifacts/proxy/."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from contextlib import contextmanager

import pytest

from ows_pipeline_tests.e2e.browser import chromium_page, dismiss_welcome, open_launch_dialog, screenshot
from ows_pipeline_tests.e2e.conftest import ARTIFACTS, DEMO_WEEK, OPERATOR, VIEWER
from ows_pipeline_tests.e2e.proxy import OPERATOR_HOST, VIEWER_HOST, Account
from ows_pipeline_tests.e2e.queries import ASSET_NODES
from ows_pipeline_tests.e2e.stack import LOCATION, REPOSITORY

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.browser]

SHOTS = ARTIFACTS / "proxy"
WEEKLY_JOB = "ows_weekly_job"
RUNS_OF_WEEK = """query Runs($tags: [ExecutionTag!]) { runsOrError(filter: {tags: $tags}) {
  ... on Runs { results { runId jobName creationTime } } } }"""
GRAPHIQL_LAUNCH = """mutation LaunchPipelineExecution {
  launchPipelineExecution(executionParams: {
    selector: {repositoryLocationName: "%s", repositoryName: "%s", jobName: "%s"}
    executionMetadata: {tags: [{key: "dagster/partition", value: "%s"}]}
    mode: "default"
  }) { __typename ... on UnauthorizedError { message } }
}""" % (LOCATION, REPOSITORY, WEEKLY_JOB, DEMO_WEEK)


@contextmanager
def signed_in(chromium_path: str, account: Account, port: int):
    """A page of Chromium signed in as `account`, and the base URL of its role's address."""
    host = OPERATOR_HOST if account.role == "operator" else VIEWER_HOST
    rules = f"MAP {OPERATOR_HOST} 127.0.0.1,MAP {VIEWER_HOST} 127.0.0.1,MAP * ~NOTFOUND"
    with chromium_page(
        chromium_path, args=[f"--host-resolver-rules={rules}"], ignore_https_errors=True,
        http_credentials={"username": account.user, "password": account.password},
    ) as page:
        yield page, f"https://{host}:{port}"


def _runs_of_week(stack, week: str) -> dict[str, float]:
    data = stack.graphql(RUNS_OF_WEEK, {"tags": [{"key": "dagster/partition", "value": week}]})
    return {r["runId"]: r["creationTime"] for r in data["runsOrError"]["results"] if r["jobName"] == WEEKLY_JOB}


def test_operator_launches_a_week_in_the_browser_and_the_audit_log_says_who(proxied_stack, chromium_path):
    proxy, operator = proxied_stack.proxy, proxied_stack.operator
    before = set(_runs_of_week(operator, DEMO_WEEK))
    with signed_in(chromium_path, OPERATOR, proxy.https_port) as (page, base):
        dialog = open_launch_dialog(page, f"{base}/locations/{LOCATION}/jobs/{WEEKLY_JOB}", DEMO_WEEK)
        clicked = dt.datetime.now(dt.timezone.utc)
        dialog.get_by_role("button", name="Launch 1 run").click()
        deadline = time.monotonic() + 60
        new = {}
        while time.monotonic() < deadline and not new:
            new = {r: t for r, t in _runs_of_week(operator, DEMO_WEEK).items() if r not in before}
            time.sleep(1)
        assert len(new) == 1, f"expected one new run for week {DEMO_WEEK}, found {new}"
        (run_id, created), = new.items()
        status = operator.wait_for_run(run_id, timeout=600)
        page.goto(f"{base}/runs/{run_id}")
        page.get_by_text("Success", exact=False).first.wait_for(state="visible", timeout=60_000)
        page.get_by_text("Loading run logs").wait_for(state="hidden", timeout=60_000)
        screenshot(page, SHOTS, "operator_launch_succeeded")
    assert status == "SUCCESS", operator.logs()

    # Who launched this run: the audit record of the launch at the second the run was created.
    launches = [r for r in proxy.audit_records()
                if dt.datetime.fromisoformat(r["time"]) >= clicked.replace(microsecond=0)
                and r["operation"].lower().startswith("launch")]
    assert len(launches) == 1, f"launch records since the click: {launches}\nall: {proxy.audit_records()}"
    record = launches[0]
    assert (record["user"], record["role"], record["host"]) == (OPERATOR.user, "operator", OPERATOR_HOST), record
    assert (record["method"], record["uri"], record["status"]) == ("POST", "/graphql", "200"), record
    assert record["operation"] == "LaunchPipelineExecution", record
    answered = dt.datetime.fromisoformat(record["time"]).timestamp()
    arrived = answered - float(record["request_time"])
    assert arrived - 1 <= created <= answered + 1, (record, created)


def test_viewer_in_the_browser_sees_graph_runs_and_checks_but_cannot_launch(proxied_stack, chromium_path):
    proxy, operator = proxied_stack.proxy, proxied_stack.operator
    nodes = proxy.graphql(VIEWER, ASSET_NODES)["assetNodes"]
    groups = sorted({n["groupName"] for n in nodes})
    checks = [c["name"] for n in nodes if n["assetKey"]["path"] == ["fct_workflow_run_weekly"]
              for c in n["assetChecksOrError"].get("checks", [])]
    assert checks, "fct_workflow_run_weekly has no asset check to show"
    run_id = proxied_stack.newest_run_id()

    with signed_in(chromium_path, VIEWER, proxy.https_port) as (page, base):
        page.goto(f"{base}/asset-groups")
        dismiss_welcome(page)
        for group in groups:
            page.get_by_text(group, exact=True).first.wait_for(state="visible")
        screenshot(page, SHOTS, "viewer_asset_graph")
        page.goto(f"{base}/runs")
        page.get_by_text(run_id[:8]).first.wait_for(state="visible")
        screenshot(page, SHOTS, "viewer_runs")
        page.goto(f"{base}/assets/fct_workflow_run_weekly?view=checks")
        for check in checks:
            page.get_by_text(check, exact=True).first.wait_for(state="visible")
        screenshot(page, SHOTS, "viewer_checks")

        page.goto(f"{base}/locations/{LOCATION}/jobs/{WEEKLY_JOB}")
        launch = page.get_by_role("button").filter(has_text=re.compile(r"^Materialize all"))
        launch.first.wait_for(state="visible")
        assert launch.first.is_disabled(), "the read-only UI offers a launch"
        box = launch.first.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.get_by_text("You do not have permission to materialize assets").wait_for(state="visible")
        screenshot(page, SHOTS, "viewer_launch_button_disabled")

        # The button is only the UI's courtesy: the same launch typed into GraphiQL (served by the
        # read-only webserver, sent from the viewer's signed-in browser) is refused by the server.
        runs_before = operator.graphql("{ runsOrError { ... on Runs { count } } }")["runsOrError"]["count"]
        known = len(proxy.audit_records())
        page.goto(f"{base}/graphql")
        editor = page.locator(".graphiql-query-editor .CodeMirror").first
        editor.wait_for(state="visible")
        editor.click()
        page.keyboard.press("Control+A")
        page.keyboard.press("Delete")
        page.keyboard.insert_text(GRAPHIQL_LAUNCH)
        page.locator(".graphiql-execute-button").click()
        answer = page.locator(".graphiql-response")
        answer.get_by_text("UnauthorizedError").first.wait_for(state="visible")
        screenshot(page, SHOTS, "viewer_launch_refused")
        response = json.loads(answer.inner_text().replace("\xa0", " "))
    assert response == {"data": {"launchPipelineExecution": {
        "__typename": "UnauthorizedError", "message": "Authorization failed"}}}, response
    assert operator.graphql("{ runsOrError { ... on Runs { count } } }")["runsOrError"]["count"] == runs_before
    # GraphiQL sends the operation's name once it has parsed the editor, else the record names the field.
    deadline = time.monotonic() + 10
    while True:
        attempts = [r for r in proxy.audit_records()[known:]
                    if r["operation"] in ("LaunchPipelineExecution", "launchPipelineExecution")]
        if attempts or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [(r["user"], r["role"]) for r in attempts] == [(VIEWER.user, "viewer")], proxy.audit_records()[known:]
