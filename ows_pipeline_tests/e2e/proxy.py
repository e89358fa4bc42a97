"""nginx in front of the end-to-end deployment, with the repository's own rules: deploy/proxy/nginx.conf is
included where it lies, and the site files of deploy/proxy/ows-dagster/ are used with only their
addresses and log paths changed (free loopback ports, a temporary folder). nginx runs as the current user
with its own prefix, pid and logs; the certificate is a throwaway one made here; the users are created
with deploy/proxy/ows-proxy-user, the command the deployment guide gives."""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ows_pipeline_tests.e2e.stack import REPO_ROOT, stop_process_tree

PROXY_DIR = REPO_ROOT / "deploy" / "proxy"
SITE_DIR = PROXY_DIR / "ows-dagster"
ADD_USER = PROXY_DIR / "ows-proxy-user"
OPERATOR_HOST = "ows-operators.test"
VIEWER_HOST = "ows-viewers.test"
"""Names under the reserved .test domain: nothing outside this machine ever answers them."""


def nginx_binary() -> Optional[str]:
    return shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


@dataclass(frozen=True)
class Account:
    user: str
    password: str
    role: str  # "operator" or "viewer"

    @property
    def authorization(self) -> str:
        """The Authorization header value a browser sends for this account."""
        return "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()


def write_self_signed_certificate(names: list[str], cert_path: Path, key_path: Path) -> None:
    """A one-day certificate for `names`, which is its own authority (the tests trust exactly it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)


@dataclass
class Response:
    status: int
    headers: dict
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


class _Connection(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1 with `host` as the TLS server name and the Host header, as a browser would."""

    def connect(self):
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class _PlainConnection(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)


@dataclass
class NginxProxy:
    """The proxy of deploy/proxy on loopback: HTTPS on `https_port`, the plain-HTTP redirect on `http_port`."""

    root: Path
    https_port: int
    http_port: int
    operators_port: int
    viewers_port: int
    process: Optional[subprocess.Popen] = field(default=None, repr=False)

    @property
    def conf_dir(self) -> Path:
        return self.root / "conf"

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def cert_path(self) -> Path:
        return self.conf_dir / "ows-dagster" / "tls.crt"

    def htpasswd(self, role: str) -> Path:
        return self.conf_dir / "ows-dagster" / f"{role}s.htpasswd"

    def audit_records(self, at_least: int = 0, timeout: float = 10.0) -> list[dict]:
        """The audit log's records, once there are `at_least` of them (nginx writes a record just
        after it answers, so a client can read the log a moment too early)."""
        path = self.log_dir / "ows-dagster-audit.log"
        deadline = time.monotonic() + timeout
        while True:
            text = path.read_text() if path.exists() else ""
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
            if len(records) >= at_least or time.monotonic() > deadline:
                return records
            time.sleep(0.1)

    def log_texts(self) -> dict[str, str]:
        return {p.name: p.read_text(errors="replace") for p in sorted(self.log_dir.glob("*.log"))}

    # -- configuration -------------------------------------------------------------------------

    def site_replacements(self) -> list[tuple[str, str]]:
        """What differs between the example site and this one: addresses, names and log paths only."""
        return [
            ("listen 443 ssl", f"listen 127.0.0.1:{self.https_port} ssl"),
            ("listen 80;", f"listen 127.0.0.1:{self.http_port};"),
            ("dagster-view.example.org", VIEWER_HOST),
            ("dagster.example.org", OPERATOR_HOST),
            ("server 127.0.0.1:3000;", f"server 127.0.0.1:{self.operators_port};"),
            ("server 127.0.0.1:3001;", f"server 127.0.0.1:{self.viewers_port};"),
            ("/var/log/nginx/", f"{self.log_dir}/"),
        ]

    def write_config(self) -> None:
        site = self.conf_dir / "ows-dagster"
        site.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        (self.root / "temp").mkdir(exist_ok=True)
        used = set()
        for example in sorted(SITE_DIR.glob("*.conf")):
            text = example.read_text()
            for old, new in self.site_replacements():
                if old in text:
                    used.add(old)
                    text = text.replace(old, new)
            for leftover in ("example.org", "/var/log", "listen 443", "listen 80"):
                assert leftover not in text, f"{example.name} has a site setting the tests do not replace: {leftover}"
            (site / example.name).write_text(text)
        unused = [old for old, _ in self.site_replacements() if old not in used]
        assert not unused, f"deploy/proxy/ows-dagster no longer holds {unused}: update the test proxy"
        write_self_signed_certificate([OPERATOR_HOST, VIEWER_HOST], self.cert_path, site / "tls.key")

        temp = self.root / "temp"
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
        (self.conf_dir / "nginx.conf").write_text(
            f"""# The main configuration of the test proxy; the rules are the repository's, included below.
{user}daemon off;
pid {self.root}/nginx.pid;
error_log {self.log_dir}/error.log info;
events {{
    worker_connections 512;
}}
http {{
    client_body_temp_path {temp}/client_body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {PROXY_DIR / "nginx.conf"};
}}
"""
        )

    def set_password(self, account: Account) -> None:
        """The documented command: ows-proxy-user FILE USER, the password on standard input."""
        subprocess.run(
            [str(ADD_USER), str(self.htpasswd(account.role)), account.user],
            input=account.password + "\n", text=True, check=True, capture_output=True,
        )

    def delete_user(self, account: Account) -> None:
        subprocess.run(
            [str(ADD_USER), "--delete", str(self.htpasswd(account.role)), account.user],
            text=True, check=True, capture_output=True,
        )

    # -- process -------------------------------------------------------------------------------

    def _command(self, *extra: str) -> list[str]:
        return [nginx_binary(), "-e", str(self.log_dir / "error.log"), "-p", f"{self.root}/",
                "-c", str(self.conf_dir / "nginx.conf"), *extra]

    def start(self, timeout: float = 30.0) -> None:
        checked = subprocess.run(self._command("-t"), capture_output=True, text=True)
        if checked.returncode != 0:
            raise RuntimeError(f"nginx -t refused the configuration:\n{checked.stderr}")
        self.process = subprocess.Popen(
            self._command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.process.returncode}:\n{self.log_texts().get('error.log')}")
            try:
                socket.create_connection(("127.0.0.1", self.https_port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"nginx did not listen on {self.https_port} in {timeout:.0f} s")

    def stop(self) -> None:
        if self.process is not None:
            stop_process_tree(self.process)
            self.process = None

    # -- clients -------------------------------------------------------------------------------

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert_path))

    def request(self, host: str, path: str, method: str = "GET", body: Optional[bytes] = None,
                headers: Optional[dict] = None, account: Optional[Account] = None, tls: bool = True,
                port: Optional[int] = None) -> Response:
        """One request through the proxy, as a client that resolves `host` to 127.0.0.1."""
        headers = dict(headers or {})
        if account is not None:
            headers["Authorization"] = account.authorization
        if tls:
            conn = _Connection(host, port or self.https_port, context=self.tls_context(), timeout=120)
        else:
            conn = _PlainConnection(host, port or self.http_port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return Response(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            conn.close()

    def graphql(self, account: Account, query: str, variables: Optional[dict] = None,
                operation_name: Optional[str] = None) -> dict:
        """A GraphQL request as `account` at its role's address; returns `data`, fails on HTTP or GraphQL errors."""
        payload = {"query": query, "variables": variables or {}}
        if operation_name:
            payload["operationName"] = operation_name
        host = OPERATOR_HOST if account.role == "operator" else VIEWER_HOST
        response = self.request(host, "/graphql", "POST", json.dumps(payload).encode(),
                                {"Content-Type": "application/json"}, account)
        assert response.status == 200, f"GraphQL HTTP {response.status}: {response.body[:2000]!r}"
        data = response.json()
        assert not data.get("errors"), f"GraphQL errors: {data['errors']}"
        return data["data"]
