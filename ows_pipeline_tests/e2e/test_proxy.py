"""The front door, run for real: nginx with deploy/proxy's configuration in front of the operators'
webserver and a read-only viewers' webserver, both on the PostgreSQL-backed instance of the end-to-end
deployment and its daemon. Everything here goes through HTTPS and basic authentication as a browser
or an API client would; the state it checks afterwards is read from the webserver directly."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from ows_pipeline_tests.e2e.conftest import DEMO_WEEK, OPERATOR, VIEWER
from ows_pipeline_tests.e2e.proxy import OPERATOR_HOST, VIEWER_HOST, Account
from ows_pipeline_tests.e2e.stack import LOCATION, REPOSITORY, descendants, listening_sockets

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

WEEKLY_JOB = "ows_weekly_job"
REPO = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}
PATHS = ["/", "/graphql", "/server_info", "/asset-groups", "/runs", "/overview",
         f"/locations/{LOCATION}/jobs/{WEEKLY_JOB}", "/favicon.ico", "/no-such-page"]
REALMS = {OPERATOR_HOST: 'Basic realm="OWS pipeline operators"', VIEWER_HOST: 'Basic realm="OWS pipeline viewers"'}

STATE = """{
  runsOrError { ... on Runs { count } }
  partitionBackfillsOrError { ... on PartitionBackfills { results { id } } }
  schedulesOrError(repositorySelector: {repositoryLocationName: "ows_pipeline", repositoryName: "__repository__"}) {
    ... on Schedules { results { name scheduleState { id selectorId status } } } }
  sensorsOrError(repositorySelector: {repositoryLocationName: "ows_pipeline", repositoryName: "__repository__"}) {
    ... on Sensors { results { name sensorState { id selectorId status } } } }
}"""
LAUNCH = """mutation LaunchPipelineExecution($executionParams: ExecutionParams!) {
  launchPipelineExecution(executionParams: $executionParams) {
    __typename ... on LaunchRunSuccess { run { runId } } ... on UnauthorizedError { message } ... on PythonError { message }
  }
}"""


def _state(stack) -> dict:
    data = stack.graphql(STATE)
    return {
        "runs": data["runsOrError"]["count"],
        "backfills": len(data["partitionBackfillsOrError"]["results"]),
        "schedules": {s["name"]: s["scheduleState"] for s in data["schedulesOrError"]["results"]},
        "sensors": {s["name"]: s["sensorState"] for s in data["sensorsOrError"]["results"]},
    }


def _week_params() -> dict:
    return {"selector": {**REPO, "jobName": WEEKLY_JOB},
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": DEMO_WEEK}]}, "mode": "default"}


def test_no_or_wrong_credentials_get_401_on_every_path(proxied_stack):
    proxy = proxied_stack.proxy
    before = _state(proxied_stack.operator)
    launch = json.dumps({"operationName": "LaunchPipelineExecution", "query": LAUNCH,
                         "variables": {"executionParams": _week_params()}}).encode()
    websocket = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                 "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Protocol": "graphql-ws"}
    for host, own, other in ((OPERATOR_HOST, OPERATOR, VIEWER), (VIEWER_HOST, VIEWER, OPERATOR)):
        intruders = {
            "no credentials": {},
            "a wrong password": {"Authorization": Account(own.user, own.password + "x", own.role).authorization},
            "an unknown user": {"Authorization": Account("mallory", own.password, own.role).authorization},
            "the other role's account": {"Authorization": other.authorization},
            "a malformed header": {"Authorization": "Basic !!!not-base64"},
            "a bearer token": {"Authorization": "Bearer " + own.password},
        }
        for who, headers in intruders.items():
            attempts = [("GET", path, None, {}) for path in PATHS]
            attempts += [("POST", "/graphql", launch, {"Content-Type": "application/json"}),
                         ("GET", "/graphql", None, websocket)]
            for method, path, body, extra in attempts:
                response = proxy.request(host, path, method, body, {**headers, **extra})
                where = f"{method} https://{host}{path} with {who}"
                assert response.status == 401, f"{where}: HTTP {response.status}"
                assert response.headers.get("www-authenticate") == REALMS[host], where
                assert b"dagster" not in response.body.lower(), f"{where}: the webserver answered"
        # The control: the same requests with the right account reach the webserver.
        allowed = proxy.request(host, "/server_info", account=own)
        assert allowed.status == 200 and "dagster_webserver_version" in allowed.json(), allowed
    assert _state(proxied_stack.operator) == before, "a refused request changed the instance"


def test_viewer_sees_assets_runs_and_checks_but_the_read_only_server_refuses_every_change(proxied_stack):
    proxy, operator = proxied_stack.proxy, proxied_stack.operator
    parent_run = proxied_stack.newest_run_id()
    nodes = proxy.graphql(VIEWER, "{ assetNodes { assetKey { path } groupName "
                          "assetChecksOrError { ... on AssetChecks { checks { name } } } } }")["assetNodes"]
    assert {"ows_raw", "ows_facts", "ows_reports"} <= {n["groupName"] for n in nodes}
    assert any(n["assetChecksOrError"].get("checks") for n in nodes), "the viewer sees no asset check"
    runs = proxy.graphql(VIEWER, "{ runsOrError { ... on Runs { results { runId } } } }")["runsOrError"]["results"]
    assert parent_run in {r["runId"] for r in runs}

    before = _state(operator)
    schedule = before["schedules"]["ows_weekly_schedule"]
    sensor = before["sensors"]["ows_run_failure_sensor"]
    known = len(proxy.audit_records())
    attempts = {
        # name: (operation name sent, document, variables, result field)
        "LaunchPipelineExecution": ("LaunchPipelineExecution", LAUNCH, {"executionParams": _week_params()},
                                    "launchPipelineExecution"),
        "launchRunReexecution": (None, """mutation { launchRunReexecution(reexecutionParams:
            {parentRunId: "%s", strategy: ALL_STEPS}) { __typename } }""" % parent_run, {}, "launchRunReexecution"),
        "StartSchedule": ("StartSchedule", """mutation StartSchedule($s: ScheduleSelector!) {
            startSchedule(scheduleSelector: $s) { __typename } }""",
                          {"s": {**REPO, "scheduleName": "ows_weekly_schedule"}}, "startSchedule"),
        "StopSchedule": ("StopSchedule", """mutation StopSchedule($id: String!) {
            stopRunningSchedule(id: $id) { __typename } }""", {"id": schedule["id"]}, "stopRunningSchedule"),
        "stopSensor": (None, """mutation($id: String!) { stopSensor(id: $id) { __typename } }""",
                       {"id": sensor["id"]}, "stopSensor"),
        "StartSensor": ("StartSensor", """mutation StartSensor($s: SensorSelector!) {
            startSensor(sensorSelector: $s) { __typename } }""",
                        {"s": {**REPO, "sensorName": "ows_run_failure_sensor"}}, "startSensor"),
        "LaunchPartitionBackfill": ("LaunchPartitionBackfill", """mutation LaunchPartitionBackfill(
            $p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) { __typename } }""",
                                    {"p": {"assetSelection": [{"path": ["fct_workflow_run_weekly"]}],
                                           "partitionNames": [DEMO_WEEK]}}, "launchPartitionBackfill"),
    }
    for name, (operation, document, variables, field) in attempts.items():
        result = proxy.graphql(VIEWER, document, variables, operation)[field]
        assert result["__typename"] == "UnauthorizedError", f"{name} as a viewer: {result}"
    assert _state(operator) == before, "the read-only server let a viewer change something"

    # Refused or not, every attempt is in the audit log under the viewer's name, in order.
    new = proxy.audit_records(at_least=known + len(attempts))[known:]
    assert [(r["user"], r["role"], r["method"], r["uri"], r["operation"]) for r in new] == [
        (VIEWER.user, "viewer", "POST", "/graphql", name) for name in attempts], new


def test_every_change_through_the_api_is_audited_with_user_and_time(proxied_stack):
    """An operator's anonymous mutations (as API clients send them) are audited by their field; the
    UI's polling is not; a GraphQL document in the URL or in a form body is refused, not executed."""
    proxy, operator = proxied_stack.proxy, proxied_stack.operator
    sensor = _state(operator)["sensors"]["ows_upload_sensor"]
    assert sensor["status"] == "RUNNING"
    known = len(proxy.audit_records())
    started = dt.datetime.now(dt.timezone.utc)
    try:
        stopped = proxy.graphql(OPERATOR, "mutation($id: String!) { stopSensor(id: $id) { __typename "
                                "... on StopSensorMutationResult { instigationState { status } } } }",
                                {"id": sensor["id"]})["stopSensor"]
        assert stopped["instigationState"]["status"] == "STOPPED", stopped
        assert _state(operator)["sensors"]["ows_upload_sensor"]["status"] == "STOPPED"
    finally:
        restarted = proxy.graphql(OPERATOR, "mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) { "
                                  "__typename ... on Sensor { sensorState { status } } } }",
                                  {"s": {**REPO, "sensorName": "ows_upload_sensor"}})["startSensor"]
    assert restarted["sensorState"]["status"] == "RUNNING", restarted
    finished = dt.datetime.now(dt.timezone.utc)

    new = proxy.audit_records(at_least=known + 2)[known:]
    assert [(r["user"], r["role"], r["operation"], r["status"], r["host"]) for r in new] == [
        (OPERATOR.user, "operator", field, "200", OPERATOR_HOST) for field in ("stopSensor", "startSensor")], new
    for record in new:
        assert started.replace(microsecond=0) <= dt.datetime.fromisoformat(record["time"]) <= finished, record

    # A query is not audited: after it, the next record is the refused change that follows it.
    known = len(proxy.audit_records())
    proxy.graphql(OPERATOR, "query RunsCount { runsOrError { ... on Runs { count } } }", operation_name="RunsCount")
    proxy.graphql(VIEWER, "mutation { stopSensor(id: \"%s\") { __typename } }" % sensor["id"])
    assert [r["operation"] for r in proxy.audit_records(at_least=known + 1)[known:]] == ["stopSensor"]

    before = _state(operator)
    mutation = "mutation { stopSensor(id: \"%s\") { __typename } }" % sensor["id"]
    escaped = [
        ("GET", "/graphql?query=" + mutation.replace(" ", "%20").replace('"', "%22"), None, {}),
        ("POST", "/graphql", mutation.encode(), {"Content-Type": "application/graphql"}),
        ("POST", "/graphql", b"query=" + mutation.encode(), {"Content-Type": "application/x-www-form-urlencoded"}),
    ]
    for method, path, body, headers in escaped:
        response = proxy.request(OPERATOR_HOST, path, method, body, headers, OPERATOR)
        assert response.status == 405, f"{method} {path} ({headers}): HTTP {response.status}"
    assert _state(operator) == before


def test_a_mutation_hidden_from_the_patterns_is_audited_all_the_same(proxied_stack):
    """The webserver decodes \\u escapes and UTF-16 JSON, so the word "mutation" need not appear in the
    body; such bodies are audited anyway (here a viewer's, which the read-only server refuses)."""
    proxy = proxied_stack.proxy
    payload = json.dumps({"operationName": "LaunchPipelineExecution", "query": LAUNCH,
                          "variables": {"executionParams": _week_params()}})
    bodies = {"a \\u escape": payload.replace("mutation", "\\u006dutation").encode(),
              "UTF-16": payload.encode("utf-16-le"), "UTF-32": payload.encode("utf-32-be")}
    for encoding, body in bodies.items():
        assert b"mutation" not in body
        known = len(proxy.audit_records())
        response = proxy.request(VIEWER_HOST, "/graphql", "POST", body, {"Content-Type": "application/json"}, VIEWER)
        assert response.status == 200, (encoding, response)
        result = response.json()["data"]["launchPipelineExecution"]
        assert result["__typename"] == "UnauthorizedError", (encoding, result)
        new = [(r["user"], r["role"], r["method"]) for r in proxy.audit_records(at_least=known + 1)[known:]]
        assert new == [(VIEWER.user, "viewer", "POST")], f"the mutation in {encoding} was not audited: {new}"


def test_rotating_a_password_takes_effect_without_a_reload(proxied_stack):
    proxy = proxied_stack.proxy
    first = Account("rita.rotation", "first-Passw0rd-of-rita", "operator")
    second = Account("rita.rotation", "second-Passw0rd-of-rita", "operator")
    proxy.set_password(first)
    assert proxy.request(OPERATOR_HOST, "/server_info", account=first).status == 200
    proxy.set_password(second)
    assert proxy.request(OPERATOR_HOST, "/server_info", account=first).status == 401
    assert proxy.request(OPERATOR_HOST, "/server_info", account=second).status == 200
    assert proxy.request(OPERATOR_HOST, "/server_info", account=OPERATOR).status == 200, "another user was lost"
    text = proxy.htpasswd("operator").read_text()
    assert second.password not in text and text.count("rita.rotation:") == 1
    assert oct(proxy.htpasswd("operator").stat().st_mode & 0o777) == "0o640"
    proxy.delete_user(second)
    assert proxy.request(OPERATOR_HOST, "/server_info", account=second).status == 401


def test_tls_is_required_plain_http_only_redirects(proxied_stack):
    proxy = proxied_stack.proxy
    for host in (OPERATOR_HOST, VIEWER_HOST):
        for method, path in (("GET", "/"), ("GET", "/runs?status=QUEUED"), ("POST", "/graphql")):
            response = proxy.request(host, path, method, b"{}" if method == "POST" else None, tls=False)
            assert response.status == 301, f"plain {method} http://{host}{path}: HTTP {response.status}"
            assert response.headers["location"] == f"https://{host}{path}"
            assert b"dagster" not in response.body.lower()
        # Plain HTTP sent to the TLS port is refused by nginx, not passed on.
        refused = proxy.request(host, "/server_info", tls=False, port=proxy.https_port)
        assert refused.status == 400 and b"dagster" not in refused.body.lower(), refused
        secure = proxy.request(host, "/server_info", account=OPERATOR if host == OPERATOR_HOST else VIEWER)
        assert secure.headers["strict-transport-security"] == "max-age=31536000"
        assert proxy.request(host, "/").headers["strict-transport-security"] == "max-age=31536000"


def test_webservers_and_daemon_listen_on_loopback_only(proxied_stack):
    for stack in (proxied_stack.operator, proxied_stack.viewer):
        for name, process in stack.processes.items():
            sockets = listening_sockets([process.pid, *descendants(process.pid)])
            if name != "daemon":
                assert ("127.0.0.1", stack.port) in sockets, f"{name} does not listen on 127.0.0.1:{stack.port}"
            exposed = {s for s in sockets if not (s[0].startswith("127.") or s[0] == "::1")}
            assert not exposed, f"{name} listens beyond loopback: {exposed}"
