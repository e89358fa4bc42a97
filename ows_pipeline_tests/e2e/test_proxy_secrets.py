"""No password, password hash or Authorization header of the proxy's users shows anywhere: nginx's logs,
Dagster's runs (their tags included) and event logs, the webservers' logs and files, and what the UI
serves. It runs after the other proxy tests, so the sign-ins, failed sign-ins, launches and refusals
are all in there to be scanned."""

from __future__ import annotations

import pytest
from dagster._serdes import serialize_value

from ows_pipeline_tests.e2e.conftest import OPERATOR, VIEWER
from ows_pipeline_tests.e2e.queries import RUN, all_run_events

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


class _ViewerApi:
    """The UI's GraphQL as a viewer sees it, through the proxy."""

    def __init__(self, proxy):
        self.proxy = proxy

    def graphql(self, query, variables=None):
        return self.proxy.graphql(VIEWER, query, variables)


def test_no_credential_of_a_proxy_user_in_logs_runs_or_ui(proxied_stack):
    proxy, operator, viewer = proxied_stack.proxy, proxied_stack.operator, proxied_stack.viewer
    hashes = [line.split(":", 1)[1] for role in ("operator", "viewer")
              for line in proxy.htpasswd(role).read_text().splitlines() if line]
    assert len(hashes) >= 2 and all(h.startswith("$6$") for h in hashes), hashes
    secrets = {"a password": (OPERATOR.password, VIEWER.password),
               "an Authorization header": (OPERATOR.authorization.split()[1], VIEWER.authorization.split()[1]),
               "a password hash": tuple(hashes)}

    def assert_clean(where: str, text: str) -> None:
        for kind, values in secrets.items():
            assert not any(v in text for v in values), f"{kind} appears in {where}"

    logs = proxy.log_texts()
    assert OPERATOR.user in logs["ows-dagster-access.log"] and VIEWER.user in logs["ows-dagster-access.log"]
    for name, text in logs.items():
        assert_clean(f"nginx's {name}", text)
        assert "Basic " not in text and "authorization" not in text.lower(), f"nginx's {name} logs the header"
    for stack in (operator, viewer):
        for path in stack.log_dir.glob("*.log"):
            assert_clean(f"the process log {path.name}", path.read_text(errors="replace"))

    instance = operator.instance()
    try:
        runs = instance.get_runs()
        assert runs, "no run to scan"
        for run in runs:
            assert_clean(f"the stored run {run.run_id} (tags included)", serialize_value(run))
            assert_clean(f"the event log of run {run.run_id}",
                         "\n".join(serialize_value(r) for r in instance.all_logs(run.run_id)))
    finally:
        instance.dispose()
    for path in operator.dagster_home.rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            assert_clean(f"the file {path}", path.read_bytes().decode("utf-8", errors="replace"))

    api = _ViewerApi(proxy)
    for run in runs:
        assert_clean(f"the UI's run page of {run.run_id}", repr(api.graphql(RUN, {"runId": run.run_id})))
        assert_clean(f"the UI's event log of {run.run_id}", repr(all_run_events(api, run.run_id)))
