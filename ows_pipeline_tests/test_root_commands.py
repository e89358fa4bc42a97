"""The Dagster commands a user types in the project root work in a fresh clone with no
environment variables at all: they run on the embedded default (the root `dagster.yaml`, SQLite
under `./.ows`), never on the production PostgreSQL instance."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
AS_OF = dt.datetime(2026, 11, 23, 6, 0, tzinfo=dt.timezone.utc)  # a Monday morning
WEEK = "2026-11-15"  # the week that ended the night before


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """The tracked files of the repository, as `git clone` would give them, with a small demo source."""
    target = tmp_path_factory.mktemp("clone")
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    _run(target, "ows-pipeline", "demo-source", "--projects", "2", "--feeds-per-project", "3",
         "--workflows-per-project", "2", "--runs-per-day", "20", "--weeks", "1", "--as-of", AS_OF.isoformat(),
         "--quiet")
    return target


def _empty_env(home: Path) -> dict:
    """No OWS_*, no DAGSTER_*, nothing but a PATH to the tools and a HOME."""
    return {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(home)}


def _run(cwd: Path, *command: str, timeout: int = 600) -> str:
    out = subprocess.run([str(BIN / command[0]), *command[1:]], cwd=cwd, env=_empty_env(cwd), capture_output=True,
                         text=True, timeout=timeout)
    text = out.stdout + out.stderr
    assert out.returncode == 0, f"{' '.join(command)} failed:\n{text[-4000:]}"
    assert "DAGSTER_PG" not in text
    return text


def test_definitions_validate_and_dg_check_defs(clone):
    assert "Validation successful" in _run(clone, "dagster", "definitions", "validate", "-w", "workspace.yaml")
    assert "All definitions loaded successfully" in _run(clone, "dg", "check", "defs")


def test_asset_materialize_runs_on_the_embedded_default(clone):
    _run(clone, "dagster", "asset", "materialize", "-m", "ows_pipeline.definitions", "--select", "raw_ows_project")
    assert (clone / ".ows" / "warehouse.db").exists()
    assert (clone / ".ows" / "dagster").is_dir()  # the run history, where `dagster dev` finds it


@pytest.mark.slow
def test_job_execute_builds_the_week_and_its_workbook(clone):
    _run(clone, "dagster", "job", "execute", "-m", "ows_pipeline.definitions", "-j", "ows_weekly_job",
         "--tags", json.dumps({"dagster/partition": WEEK}), timeout=1200)
    assert (clone / ".ows" / "reports" / f"ows_weekly_{WEEK}.xlsx").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _location_status(port: int) -> str | None:
    query = b'{"query": "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"}'
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=query,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            entries = json.load(response)["data"]["workspaceOrError"]["locationEntries"]
    except OSError:
        return None
    return next((e["loadStatus"] for e in entries if e["name"] == "ows_pipeline"), None)


@pytest.mark.slow
@pytest.mark.parametrize("command", [["dagster", "dev"], ["dg", "dev"]], ids=["dagster-dev", "dg-dev"])
def test_dev_server_loads_the_code_location(clone, command):
    port = _free_port()
    process = subprocess.Popen([str(BIN / command[0]), *command[1:], "-p", str(port)], cwd=clone,
                               env=_empty_env(clone), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        deadline, status = time.monotonic() + 300, None
        while time.monotonic() < deadline and process.poll() is None:
            status = _location_status(port)
            if status == "LOADED":
                break
            time.sleep(2)
        assert status == "LOADED", f"{' '.join(command)}: location {status}, exit {process.poll()}"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        output = process.communicate(timeout=30)[0].decode(errors="replace")
    assert "DAGSTER_PG" not in output
