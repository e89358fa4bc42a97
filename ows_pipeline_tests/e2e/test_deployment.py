"""The production layout, run for real: the code location as a gRPC server started with the command of
deploy/systemd/ows-code-server.service, and a read-only webserver (the viewer unit) on the same
PostgreSQL instance as the main deployment: it loads the location, shows the runs, refuses launches."""

from __future__ import annotations

import subprocess
import time

import pytest
import yaml

from ows_pipeline_tests.e2e.stack import (
    ASSET_JOB,
    LOCATION,
    REPO_ROOT,
    REPOSITORY,
    DagsterStack,
    free_port,
    stop_process_tree,
    unit_command,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) { __typename ... on UnauthorizedError { message } }
}
"""


def test_grpc_code_server_and_read_only_viewer(dagster_stack, tmp_path):
    grpc_port, web_port = free_port(), free_port()
    workspace = yaml.safe_load((REPO_ROOT / "deploy" / "workspace.grpc.yaml").read_text())
    workspace["load_from"][0]["grpc_server"]["port"] = grpc_port
    workspace_file = tmp_path / "workspace.yaml"
    workspace_file.write_text(yaml.safe_dump(workspace))
    logs = tmp_path / "logs"
    logs.mkdir()

    code_log = open(logs / "code-server.log", "wb")
    code_server = subprocess.Popen(
        unit_command("ows-code-server.service", grpc_port),
        cwd=REPO_ROOT, env=dagster_stack.env, stdout=code_log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    code_log.close()
    viewer = DagsterStack(
        port=web_port,
        dagster_home=dagster_stack.dagster_home,
        ows_home=dagster_stack.ows_home,
        instance_db_url=dagster_stack.instance_db_url,
        warehouse_url=dagster_stack.warehouse_url,
        env=dagster_stack.env,
        log_dir=logs,
    )
    try:
        web_log = open(logs / "viewer.log", "wb")
        viewer.processes["viewer"] = subprocess.Popen(
            unit_command("dagster-webserver-readonly.service", web_port, str(workspace_file)),
            cwd=REPO_ROOT, env=dagster_stack.env, stdout=web_log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        web_log.close()
        viewer.processes["code-server"] = code_server
        deadline = time.monotonic() + 120
        while True:
            try:
                viewer.wait_until_ready(timeout=10)
                break
            except (TimeoutError, RuntimeError):
                if time.monotonic() > deadline:
                    raise
        data = viewer.graphql(
            LAUNCH,
            {"params": {"selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY,
                                     "jobName": ASSET_JOB, "assetSelection": [{"path": ["raw_ows_project"]}]},
                        "mode": "default"}},
        )
        assert data["launchRun"]["__typename"] == "UnauthorizedError", data
        runs = viewer.graphql("{ runsOrError { ... on Runs { count } } }")["runsOrError"]
        assert runs["count"] >= 0
    finally:
        for proc in (viewer.processes.get("viewer"), code_server):
            if proc is not None:
                stop_process_tree(proc)
