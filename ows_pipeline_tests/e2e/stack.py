"""A real Dagster deployment for end-to-end tests: dagster-webserver and dagster-daemon on a
PostgreSQL-backed instance (deploy/dagster.yaml), started as process groups and torn down
with every child (code servers, run workers)."""

from __future__ import annotations

import configparser
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import sqlalchemy as sa

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
LOCATION = "ows_pipeline"
REPOSITORY = "__repository__"
ASSET_JOB = "__ASSET_JOB"


UNITS = REPO_ROOT / "deploy" / "systemd"


def unit_command(unit: str, port: int, workspace: str | None = None) -> list[str]:
    """The ExecStart of a deploy/systemd unit, run from this virtualenv on another port (and workspace)."""
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read(UNITS / unit)
    command = shlex.split(parser["Service"]["ExecStart"])
    command[0] = str(VENV_BIN / command[0].rsplit("/", 1)[1])
    command[command.index("-p") + 1] = str(port)
    if workspace:
        command[command.index("-w") + 1] = workspace
    return command


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append(int(entry.name))
    return found


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children first found, then theirs)."""
    result, todo = [], [pid]
    while todo:
        for child in _children(todo.pop()):
            result.append(child)
            todo.append(child)
    return result


def listening_sockets(pids: list[int]) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state held by one of `pids` (from /proc)."""
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    found = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)
            # /proc prints each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            found.add((socket.inet_ntop(family, raw), int(port, 16)))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def stop_process_tree(proc: subprocess.Popen, grace_seconds: float = 10.0) -> None:
    """SIGTERM the process group and every descendant, wait, then SIGKILL what is left."""
    pids = [proc.pid, *descendants(proc.pid)]
    groups = set()
    for pid in pids:
        try:
            groups.add(os.getpgid(pid))
        except ProcessLookupError:
            pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for group in groups:
            try:
                os.killpg(group, sig)
            except (ProcessLookupError, PermissionError):
                pass
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_seconds
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            proc.poll()
            time.sleep(0.2)
        if not any(_alive(p) for p in pids):
            break
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


@dataclass
class DagsterStack:
    """A running deployment: its URL, homes, environment and processes."""

    port: int
    dagster_home: Path
    ows_home: Path
    instance_db_url: str
    warehouse_url: str
    env: dict
    log_dir: Path
    processes: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self):
        from dagster_graphql import DagsterGraphQLClient

        return DagsterGraphQLClient("127.0.0.1", port_number=self.port, timeout=120)

    def graphql(self, query: str, variables: Optional[dict] = None) -> dict:
        """A raw GraphQL request; returns `data` and fails on `errors`."""
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                payload = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"GraphQL HTTP {exc.code}: {exc.read().decode(errors='replace')[:2000]}") from None
        if payload.get("errors"):
            raise AssertionError(f"GraphQL errors: {payload['errors']}")
        return payload["data"]

    def logs(self) -> str:
        parts = []
        for path in sorted(self.log_dir.glob("*.log")):
            parts.append(f"===== {path.name} (last 4000 chars)\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)

    def instance(self):
        """A DagsterInstance on the same storage (reads DAGSTER_PG_* from `env`)."""
        import dagster as dg

        saved = {k: os.environ.get(k) for k in self.env if k.startswith("DAGSTER_PG_")}
        os.environ.update({k: v for k, v in self.env.items() if k.startswith("DAGSTER_PG_")})
        try:
            return dg.DagsterInstance.from_config(str(self.dagster_home))
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def warehouse_engine(self) -> sa.Engine:
        return sa.create_engine(self.warehouse_url)

    def start(self, commands: Optional[dict[str, list[str]]] = None, timeout: float = 180.0) -> None:
        """Start `commands` (by default a webserver on `port` and the daemon) and wait for the webserver."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        commands = commands or {
            "webserver": [
                str(VENV_BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(self.port), "-w", "workspace.yaml",
            ],
            "daemon": [str(VENV_BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        }
        for name, command in commands.items():
            log = open(self.log_dir / f"{name}.log", "wb")
            self.processes[name] = subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            log.close()
        self.wait_until_ready(timeout)

    def wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_problem = "not started"
        while time.monotonic() < deadline:
            for name, proc in self.processes.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}\n{self.logs()}")
            try:
                with urllib.request.urlopen(f"{self.url}/server_info", timeout=5) as response:
                    json.loads(response.read())
                status = self.location_status()
                if status == "LOADED":
                    return
                last_problem = f"code location status {status}"
            except Exception as exc:  # noqa: BLE001 - still starting
                last_problem = f"{type(exc).__name__}: {exc}"
            time.sleep(1)
        raise TimeoutError(f"Dagster did not come up in {timeout:.0f} s ({last_problem})\n{self.logs()}")

    def location_status(self) -> str:
        data = self.graphql(
            """{ workspaceOrError { ... on Workspace { locationEntries {
                 name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
        )
        for entry in data["workspaceOrError"]["locationEntries"]:
            if entry["name"] == LOCATION:
                error = entry["locationOrLoadError"]
                if error and error["__typename"] == "PythonError":
                    raise RuntimeError(f"Code location failed to load: {error['message']}")
                return entry["loadStatus"]
        return "MISSING"

    def stop(self) -> None:
        for proc in self.processes.values():
            stop_process_tree(proc)
        self.processes.clear()

    def wait_for_run(self, run_id: str, timeout: float = 300.0) -> str:
        """Wait until a run ends; return its status name (SUCCESS, FAILURE, CANCELED)."""
        from dagster_graphql import DagsterGraphQLClientError

        deadline = time.monotonic() + timeout
        status = None
        while time.monotonic() < deadline:
            try:
                status = self.client().get_run_status(run_id).value
            except DagsterGraphQLClientError:
                status = "UNKNOWN"
            if status in ("SUCCESS", "FAILURE", "CANCELED"):
                return status
            time.sleep(1)
        raise TimeoutError(f"Run {run_id} still {status} after {timeout:.0f} s\n{self.logs()}")


def instance_env(instance_db_url: str) -> dict:
    """DAGSTER_PG_* variables for the root dagster.yaml, from a SQLAlchemy URL."""
    url = sa.make_url(instance_db_url)
    return {
        "DAGSTER_PG_HOST": url.host or "127.0.0.1",
        "DAGSTER_PG_PORT": str(url.port or 5432),
        "DAGSTER_PG_USER": url.username or "postgres",
        "DAGSTER_PG_PASSWORD": url.password or "",
        "DAGSTER_PG_DB": url.database,
    }
