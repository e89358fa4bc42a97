"""Delivery of the weekly workbook against a real local SMTP server (aiosmtpd) with STARTTLS and AUTH."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import hashlib
import ipaddress
import socket
import ssl
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from ows_pipeline.defs.policies import EMAIL_RETRY_POLICY
from ows_pipeline.reports.email import DeliveryError, SmtpSettings, send_report
from ows_pipeline.resources import SmtpResource, WarehouseResource

USER, PASSWORD = "reporter", "s3cret-Pa55"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost / 127.0.0.1 (cryptography, else the openssl command)."""
    try:
        from cryptography import x509
    except ImportError:
        return _openssl_certificate(folder)
    return _cryptography_certificate(folder)


def _openssl_certificate(folder: Path) -> tuple[Path, Path]:
    import subprocess

    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key_path), "-out", str(cert_path), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert_path, key_path


def _cryptography_certificate(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class Mailbox:
    """aiosmtpd handler keeping every accepted message; refuses one domain; can fail the first DATA."""

    def __init__(self, fail_first_data: int = 0):
        self.messages: list = []
        self.fail_first_data = fail_first_data
        self.data_calls = 0
        self.logins: list[str] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.endswith("@refused.example"):
            return "550 5.1.1 No such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.data_calls += 1
        if self.data_calls <= self.fail_first_data:
            return "451 4.3.0 Try again later"
        self.messages.append(envelope)
        return "250 OK queued"


def _authenticator(mailbox: Mailbox):
    def authenticate(server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword):
            mailbox.logins.append(auth_data.login.decode())
            if auth_data.login == USER.encode() and auth_data.password == PASSWORD.encode():
                return AuthResult(success=True)
        # handled=False: aiosmtpd answers 535 itself; with handled=True the client hangs.
        return AuthResult(success=False, handled=False)

    return authenticate


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"))


def start_server(mailbox: Mailbox, certificate, tls: bool = True) -> Controller:
    kwargs = dict(authenticator=_authenticator(mailbox), auth_required=True, auth_require_tls=tls)
    if tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*certificate)
        kwargs.update(tls_context=context, require_starttls=True)
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port(), **kwargs)
    controller.start()
    return controller


@pytest.fixture
def mailbox():
    return Mailbox()


@pytest.fixture
def server(mailbox, certificate):
    controller = start_server(mailbox, certificate)
    yield controller
    controller.stop()


@pytest.fixture
def report(tmp_path) -> Path:
    path = tmp_path / "ows_weekly_2026-11-15.xlsx"
    path.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 400 + b"\r\n.\r\n..end")  # binary, with SMTP-hostile bytes
    return path


def client_context(certificate) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate[0]))


def settings_for(controller: Controller, password: str = PASSWORD, recipients=("manager@bank.example",)) -> SmtpSettings:
    return SmtpSettings(
        host="127.0.0.1", port=controller.port, user=USER, password=password, starttls=True,
        from_addr="ows-reports@bank.example", recipients=tuple(recipients), timeout_seconds=10,
    )


def attachment_of(envelope) -> tuple[str, bytes]:
    message = email.message_from_bytes(envelope.content, policy=email.policy.default)
    (part,) = list(message.iter_attachments())
    return part.get_filename(), part.get_content()


def test_attachment_arrives_byte_identical_over_starttls_with_login(server, mailbox, report, certificate):
    before = (report.read_bytes(), report.stat().st_mtime_ns)
    settings = settings_for(server, recipients=("manager@bank.example", "ghost@refused.example"))
    delivery = send_report(report, settings, "OWS weekly report", "Attached.", ssl_context=client_context(certificate))

    assert len(mailbox.messages) == 1
    envelope = mailbox.messages[0]
    name, content = attachment_of(envelope)
    assert name == report.name
    assert hashlib.sha256(content).hexdigest() == hashlib.sha256(report.read_bytes()).hexdigest()
    assert envelope.rcpt_tos == ["manager@bank.example"]
    received = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert received["Message-ID"] == delivery.message_id
    assert delivery.accepted == ["manager@bank.example"]
    assert list(delivery.refused) == ["ghost@refused.example"]
    assert delivery.refused["ghost@refused.example"].startswith("550")
    assert mailbox.logins == [USER]
    assert (report.read_bytes(), report.stat().st_mtime_ns) == before  # never touched


def test_wrong_password_fails_cleanly_and_sends_nothing(server, mailbox, report, certificate):
    with pytest.raises(DeliveryError) as failure:
        send_report(report, settings_for(server, password="wrong-guess"), "s", "b",
                    ssl_context=client_context(certificate))
    assert not failure.value.transient  # a wrong password is not worth another attempt
    assert "OWS_SMTP_PASSWORD" in str(failure.value)
    assert "wrong-guess" not in str(failure.value)
    assert mailbox.messages == [] and mailbox.data_calls == 0


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_server_without_starttls_is_refused_and_nothing_is_sent(mailbox, certificate, report):
    controller = start_server(mailbox, certificate, tls=False)
    try:
        with pytest.raises(DeliveryError) as failure:
            send_report(report, settings_for(controller), "s", "b", ssl_context=client_context(certificate))
    finally:
        controller.stop()
    assert "STARTTLS" in str(failure.value)
    assert not failure.value.transient
    assert mailbox.messages == [] and mailbox.logins == []  # the password never left in clear text


def test_untrusted_certificate_is_refused(server, mailbox, report):
    with pytest.raises(DeliveryError) as failure:
        send_report(report, settings_for(server), "s", "b", ssl_context=ssl.create_default_context())
    assert "certificate" in str(failure.value).lower() and not failure.value.transient
    assert mailbox.messages == []


def _email_week(tmp_path, monkeypatch, certificate, smtp: SmtpResource, payload: bytes):
    """Materialize the real `ows_weekly_report_email` asset for one week, with its RetryPolicy."""
    import dagster as dg

    from ows_pipeline.defs.reports.assets import ows_weekly_report_email
    from ows_pipeline.reports.weekly_report import report_path

    monkeypatch.setenv("OWS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OWS_REPORT_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # the server's certificate, trusted as a private CA
    path = report_path(tmp_path / "reports", WEEK)
    path.parent.mkdir(parents=True)
    path.write_bytes(payload)
    warehouse = WarehouseResource(url=f"sqlite:///{tmp_path / 'warehouse.db'}")
    result = dg.materialize([ows_weekly_report_email], partition_key=WEEK, raise_on_error=False,
                            resources={"smtp": smtp, "warehouse": warehouse})
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    return result, retries


WEEK = "2026-11-15"


def _smtp_for(port: int, timeout: float = 10, password: str = PASSWORD) -> SmtpResource:
    return SmtpResource(host="127.0.0.1", port=port, user=USER, password=password, starttls=True,
                        from_addr="ows-reports@bank.example", recipients="manager@bank.example",
                        timeout_seconds=timeout)


def test_transient_reply_is_retried_by_the_assets_retry_policy(tmp_path, monkeypatch, certificate, report):
    mailbox = Mailbox(fail_first_data=2)
    controller = start_server(mailbox, certificate)
    try:
        result, retries = _email_week(tmp_path, monkeypatch, certificate, _smtp_for(controller.port),
                                      report.read_bytes())
    finally:
        controller.stop()
    assert result.success
    assert len(retries) == 2  # two 451 replies, then the third attempt is accepted
    assert len(mailbox.messages) == 1
    assert attachment_of(mailbox.messages[0])[1] == report.read_bytes()
    (materialization,) = result.asset_materializations_for_node("ows_weekly_report_email")
    assert materialization.metadata["status"].value == "sent"


@pytest.mark.slow
def test_unreachable_server_gives_up_after_the_policys_attempts(tmp_path, monkeypatch, certificate, report):
    result, retries = _email_week(tmp_path, monkeypatch, certificate, _smtp_for(free_port(), timeout=2),
                                  report.read_bytes())
    assert not result.success
    assert len(retries) == EMAIL_RETRY_POLICY.max_retries  # every attempt the policy allows, then the failure
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "127.0.0.1" in failure.message or "127.0.0.1" in str(failure.event_specific_data.error)
    assert report.exists()


def test_wrong_password_fails_the_step_without_a_retry(tmp_path, monkeypatch, certificate, report, server):
    smtp = _smtp_for(server.port, password="wrong-guess")
    result, retries = _email_week(tmp_path, monkeypatch, certificate, smtp, report.read_bytes())
    assert not result.success and retries == []  # Failure(allow_retries=False): permanent errors stop at once
    text = "\n".join(str(e.event_specific_data.error) for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "OWS_SMTP_PASSWORD" in text and "wrong-guess" not in text


def test_password_is_never_sent_without_tls(report):
    settings = SmtpSettings(host="127.0.0.1", port=free_port(), user=USER, password=PASSWORD, starttls=False,
                            recipients=("a@bank.example",))
    with pytest.raises(DeliveryError, match="without TLS"):
        send_report(report, settings, "s", "b")
