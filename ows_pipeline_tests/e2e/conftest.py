"""End-to-end fixtures: a real Dagster deployment (webserver + daemon) on a PostgreSQL-backed instance.

`dagster_stack` (session scope) creates two fresh PostgreSQL databases (the Dagster instance and
the warehouse), a fresh DAGSTER_HOME holding the repository's own dagster.yaml and a fresh OWS_HOME
with a demo source, starts `dagster-webserver` and `dagster-daemon` from the repository root and
waits for `/server_info` and a loaded code location. Passwords are set for the warehouse (trust
authentication accepts it) and for SMTP (set but unused: without a user and TLS no login is
attempted) so that tests can look for them where they must not appear. Failure notices and weekly
reports go to a real SMTP server (aiosmtpd) whose inbox is `stack.inbox`.

`proxied_stack` (session scope, on top of `dagster_stack`) adds the front door of deploy/proxy: a
`--read-only` webserver (the command of its systemd unit) on the same instance and daemon, and nginx
with TLS and basic authentication, operators to the full webserver and viewers to the read-only one.

Nothing here is skipped under CI=true: a missing PostgreSQL, Chromium or nginx fails the run.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

from ows_pipeline_tests.conftest import IN_CI, create_pg_database, drop_pg_database
from ows_pipeline_tests.e2e.proxy import Account, NginxProxy, nginx_binary
from ows_pipeline_tests.e2e.stack import (
    ASSET_JOB, LOCATION, REPO_ROOT, REPOSITORY, VENV_BIN, DagsterStack, free_port, instance_env, unit_command,
)

WAREHOUSE_PASSWORD = f"Wh-{uuid.uuid4().hex[:12]}-pw"
SMTP_PASSWORD = f"Smtp-{uuid.uuid4().hex[:12]}-pw"
OPERATOR = Account("olivia.operator", f"Op-{uuid.uuid4().hex[:16]}-pw", "operator")
VIEWER = Account("victor.viewer", f"View-{uuid.uuid4().hex[:16]}-pw", "viewer")
SECRETS = (
    WAREHOUSE_PASSWORD, SMTP_PASSWORD,
    *(secret for account in (OPERATOR, VIEWER) for secret in (account.password, account.authorization.split()[1])),
)
ARTIFACTS = REPO_ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"


def require(condition: bool, message: str) -> None:
    """Skip when `condition` fails; under CI=true, fail instead."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{message} (CI=true: nothing in the end-to-end suite may be skipped)")
    pytest.skip(message)


class Inbox:
    """Messages received by the test SMTP server."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 OK"


DEMO_AS_OF = "2026-11-15T02:00:00+00:00"
"""The demo source ends on Sunday 15 Nov 2026, 02:00 London time: the week of 8 Nov is complete."""
DEMO_WEEK = "2026-11-08"


def seed_source(source_url: str) -> None:
    """A small demo OWS source (2 projects, three weeks of history up to DEMO_AS_OF)."""
    from ows_pipeline.demo.source import generate_demo

    generate_demo(
        source_url, projects=2, feeds_per_project=3, workflows_per_project=2, runs_per_day=30, weeks=3, as_of=DEMO_AS_OF
    )


def _stack_env(dagster_home: Path, ows_home: Path, instance_url: str, warehouse_url: str, smtp_port: int) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("OWS_") and not k.startswith("OWS_TEST_")) and not k.startswith("DAGSTER_")
    }
    env.update(instance_env(instance_url))
    env.update(
        {
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
            "DAGSTER_HOME": str(dagster_home),
            "OWS_HOME": str(ows_home),
            "OWS_WAREHOUSE_URL": warehouse_url,
            "OWS_WAREHOUSE_PASSWORD": WAREHOUSE_PASSWORD,
            "OWS_SMTP_HOST": "127.0.0.1",
            "OWS_SMTP_PORT": str(smtp_port),
            "OWS_SMTP_PASSWORD": SMTP_PASSWORD,
            "OWS_SMTP_STARTTLS": "false",
            "OWS_REPORT_FROM": "ows@example.org",
            "OWS_REPORT_RECIPIENTS": "ops@example.org",
        }
    )
    return env


@pytest.fixture(scope="session")
def dagster_stack(tmp_path_factory):
    """A running dagster-webserver + dagster-daemon on a fresh PostgreSQL-backed instance."""
    from aiosmtpd.controller import Controller

    base = tmp_path_factory.mktemp("dagster_stack")
    instance_url = create_pg_database("ows_e2e_instance")
    warehouse_url = create_pg_database("ows_e2e_warehouse")
    dagster_home = base / "dagster_home"
    ows_home = base / "ows_home"
    dagster_home.mkdir()
    ows_home.mkdir()
    shutil.copy(REPO_ROOT / "deploy" / "dagster.yaml", dagster_home / "dagster.yaml")
    seed_source(f"sqlite:///{ows_home / 'ows_source.db'}")

    inbox = Inbox()
    smtp_port = free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    stack = DagsterStack(
        port=free_port(),
        dagster_home=dagster_home,
        ows_home=ows_home,
        instance_db_url=instance_url,
        warehouse_url=warehouse_url,
        env=_stack_env(dagster_home, ows_home, instance_url, warehouse_url, smtp_port),
        log_dir=base / "logs",
    )
    stack.inbox = inbox
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        smtp.stop()
        ARTIFACTS.mkdir(exist_ok=True)
        for log in (base / "logs").glob("*.log"):
            shutil.copy(log, ARTIFACTS / f"e2e-{log.name}")
        drop_pg_database(instance_url)
        drop_pg_database(warehouse_url)


class ProxiedStack:
    """The deployment behind its proxy: `operator` is the full webserver (and the daemon), `viewer` the
    read-only one, `proxy` the nginx in front of both."""

    def __init__(self, operator: DagsterStack, viewer: DagsterStack, proxy: NginxProxy):
        self.operator, self.viewer, self.proxy = operator, viewer, proxy

    def newest_run_id(self) -> str:
        """The newest run of the instance; when there is none yet, an operator launches a small one."""
        runs = self.operator.graphql("{ runsOrError(limit: 1) { ... on Runs { results { runId } } } }")
        if runs["runsOrError"]["results"]:
            return runs["runsOrError"]["results"][0]["runId"]
        result = self.proxy.graphql(
            OPERATOR,
            """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
                 __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }""",
            {"p": {"selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "jobName": ASSET_JOB,
                                "assetSelection": [{"path": ["raw_ows_project"]}]}, "mode": "default"}},
        )["launchRun"]
        assert result["__typename"] == "LaunchRunSuccess", result
        run_id = result["run"]["runId"]
        assert self.operator.wait_for_run(run_id) == "SUCCESS", self.operator.logs()
        return run_id


@pytest.fixture(scope="session")
def proxied_stack(dagster_stack, tmp_path_factory):
    """nginx (deploy/proxy) in front of `dagster_stack` and a read-only webserver on the same instance."""
    require(nginx_binary() is not None, "nginx is missing: install Debian's nginx (apt-get install -y nginx)")
    base = tmp_path_factory.mktemp("proxied_stack")
    viewer = DagsterStack(
        port=free_port(),
        dagster_home=dagster_stack.dagster_home,
        ows_home=dagster_stack.ows_home,
        instance_db_url=dagster_stack.instance_db_url,
        warehouse_url=dagster_stack.warehouse_url,
        env=dagster_stack.env,
        log_dir=base / "logs",
    )
    proxy = NginxProxy(
        root=base / "nginx", https_port=free_port(), http_port=free_port(),
        operators_port=dagster_stack.port, viewers_port=viewer.port,
    )
    try:
        viewer.start({"viewer": unit_command("dagster-webserver-readonly.service", viewer.port, "workspace.yaml")})
        proxy.write_config()
        for account in (OPERATOR, VIEWER):
            proxy.set_password(account)
        proxy.start()
        yield ProxiedStack(dagster_stack, viewer, proxy)
    finally:
        proxy.stop()
        viewer.stop()
        artifacts = ARTIFACTS / "proxy"
        artifacts.mkdir(parents=True, exist_ok=True)
        for log in [*(base / "logs").glob("*.log"), *proxy.log_dir.glob("*.log")]:
            shutil.copy(log, artifacts / log.name)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    require(
        Path(CHROMIUM).exists(),
        f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)",
    )
    return CHROMIUM
