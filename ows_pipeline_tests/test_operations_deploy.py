"""The deployment files agree with each other and with the code: units, image, Helm values, proxy."""

from __future__ import annotations

import configparser
import re
import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(DEPLOY / "systemd" / name)
    return parser


def _limits(entries, key="key", value="value", limit="limit") -> set:
    return {(e[key], repr(e.get(value)), e[limit]) for e in entries}


def test_units_bind_to_localhost_and_share_one_workspace():
    code = shlex.split(_unit("ows-code-server.service")["Service"]["ExecStart"])
    assert code[1:4] == ["code-server", "start", "-h"] and code[4] == "127.0.0.1"
    assert code[code.index("-m") + 1] == "ows_pipeline.definitions"
    port = code[code.index("-p") + 1]
    workspace = yaml.safe_load((DEPLOY / "workspace.grpc.yaml").read_text())["load_from"][0]["grpc_server"]
    assert (workspace["host"], str(workspace["port"]), workspace["location_name"]) == ("127.0.0.1", port, "ows_pipeline")
    for name in ("dagster-webserver.service", "dagster-webserver-readonly.service", "dagster-daemon.service"):
        service = _unit(name)["Service"]
        command = shlex.split(service["ExecStart"])
        assert command[command.index("-w") + 1].endswith("deploy/workspace.grpc.yaml"), name
        assert service["EnvironmentFile"] == "/etc/ows-pipeline/ows-pipeline.env"
        assert service["User"] == "ows"
        if "webserver" in name:
            assert command[command.index("-h") + 1] == "127.0.0.1", name
    readonly = shlex.split(_unit("dagster-webserver-readonly.service")["Service"]["ExecStart"])
    assert "--read-only" in readonly


def test_environment_example_names_every_setting_without_real_secrets():
    lines = [l for l in (DEPLOY / "ows-pipeline.env.example").read_text().splitlines() if l and not l.startswith("#")]
    settings = dict(l.split("=", 1) for l in lines)
    for name in ("DAGSTER_PG_HOST", "DAGSTER_PG_PASSWORD", "OWS_SOURCE_URL", "OWS_WAREHOUSE_URL", "OWS_SMTP_HOST"):
        assert name in settings
    for name, value in settings.items():
        if "PASSWORD" in name:
            assert value == "change-me", name
        if name.endswith("_URL") and "://" in value:
            assert ":" not in value.split("://", 1)[1].split("@")[0], f"{name} carries a password"


def test_helm_values_match_the_instance_config():
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    instance = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    deployment = values["dagster-user-deployments"]["deployments"][0]
    args = deployment["dagsterApiGrpcArgs"]
    assert args[args.index("--module-name") + 1] == "ows_pipeline.definitions"
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["enabled"] is False
    assert values["postgresql"]["postgresqlScheme"] == instance["storage"]["postgres"]["postgres_db"]["scheme"]
    assert values["dagsterWebserver"]["enableReadOnly"] is True
    helm_runs = values["concurrency"]["runs"]
    yaml_runs = instance["concurrency"]["runs"]
    assert helm_runs["maxConcurrentRuns"] == yaml_runs["max_concurrent_runs"]
    assert _limits(helm_runs["tagConcurrencyLimits"]) == _limits(yaml_runs["tag_concurrency_limits"])
    assert values["concurrency"]["pools"]["defaultLimit"] == instance["concurrency"]["pools"]["default_limit"]
    secrets = [e["name"] for e in deployment["env"]]
    assert not any("PASSWORD" in name for name in secrets), "passwords belong in envSecrets"


def test_image_serves_the_code_location():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    cmd = [l for l in dockerfile.splitlines() if l.startswith("CMD ")][0]
    assert '"ows_pipeline.definitions"' in cmd and '"code-server", "start"' in cmd
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"Dockerfile copies {source}, which is missing"
    assert "USER ows" in dockerfile


def test_proxy_sends_each_role_to_its_unit_behind_tls_and_authentication():
    """The rules (nginx.conf) and the example site (ows-dagster/) agree with the units' ports; the
    end-to-end tests run the same files with other ports (ows_pipeline_tests/e2e/test_proxy.py)."""
    proxy = DEPLOY / "proxy"
    conf = (proxy / "nginx.conf").read_text()
    upstreams = (proxy / "ows-dagster" / "upstreams.conf").read_text()
    servers = conf.split("\nserver {")[1:]
    assert len(servers) == 3, "a redirect, the operators' and the viewers' server"
    for role, upstream, unit in (("operators", "ows_operators_ui", "dagster-webserver.service"),
                                 ("viewers", "ows_viewers_ui", "dagster-webserver-readonly.service")):
        server = next(s for s in servers if f"include ows-dagster/{role}.conf;" in s)
        assert f"auth_basic_user_file ows-dagster/{role}.htpasswd;" in server
        assert server.count(f"proxy_pass http://{upstream};") == 2
        assert 'proxy_set_header   Authorization "";' in server and "proxy_set_header   Upgrade" in server
        assert "listen 443 ssl" in (proxy / "ows-dagster" / f"{role}.conf").read_text()
        command = shlex.split(_unit(unit)["Service"]["ExecStart"])
        port = command[command.index("-p") + 1]
        assert re.search(rf"upstream {upstream} {{\s*server 127\.0\.0\.1:{port};", upstreams), (upstream, port)
