"""The one SMTP client of the project: the weekly workbook and the failure notices go through `send`.

One attempt per call: STARTTLS (or TLS on port 465), login, send. Errors become `DeliveryError`
with the fix in the message and `transient` set for those worth another attempt (connection
lost or refused, timeouts, 4xx replies); permanent ones (wrong password, STARTTLS not offered,
certificate not trusted, 5xx replies) are not. Retrying is Dagster's job (the email asset's
`RetryPolicy`). The report file is only read, never moved or rewritten.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Optional

XLSX_TYPE = ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet")


class DeliveryError(RuntimeError):
    """The report could not be sent; `transient` says whether trying again later may help."""

    def __init__(self, message: str, transient: bool = False, attempts: int = 0):
        super().__init__(message)
        self.transient = transient
        self.attempts = attempts


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to send: built from the `smtp` resource."""

    host: str
    port: int = 587
    user: Optional[str] = None
    password: Optional[str] = None
    starttls: bool = True
    from_addr: Optional[str] = None
    recipients: Sequence[str] = ()
    timeout_seconds: float = 30.0

    @property
    def sender(self) -> str:
        return self.from_addr or self.user or f"ows-reports@{self.host}"

    @classmethod
    def from_resource(cls, smtp) -> "SmtpSettings":
        """From the `smtp` resource (`ows_pipeline.resources.SmtpResource`)."""
        return cls(host=smtp.host or "", port=smtp.port, user=smtp.user, password=smtp.password,
                   starttls=smtp.starttls, from_addr=smtp.from_addr, recipients=tuple(smtp.recipient_list()),
                   timeout_seconds=smtp.timeout_seconds)

    def describe(self) -> str:
        """Safe to log: no password."""
        return f"{self.host}:{self.port} (starttls={self.starttls}, user={self.user or '-'})"


@dataclass
class Delivery:
    """What the SMTP server accepted."""

    message_id: str
    accepted: list[str]
    refused: dict[str, str] = field(default_factory=dict)
    attempts: int = 1
    bytes_sent: int = 0


def build_message(path: Path, settings: SmtpSettings, subject: str, body: str) -> EmailMessage:
    """A plain-text message with the workbook attached, byte for byte."""
    path = Path(path)
    data = path.read_bytes()
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = settings.sender
    message["To"] = ", ".join(settings.recipients)
    message["Date"] = format_datetime(_now())
    domain = settings.sender.rpartition("@")[2] or settings.host
    message["Message-ID"] = make_msgid(domain=domain)
    message.set_content(body)
    message.add_attachment(data, maintype=XLSX_TYPE[0], subtype=XLSX_TYPE[1], filename=path.name)
    return message


def _now():
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc)


def is_transient(error: BaseException) -> bool:
    """Worth another attempt: lost or refused connections, timeouts, and 4xx replies."""
    if isinstance(error, (ssl.SSLError, ssl.CertificateError)):
        return False
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return bool(error.recipients) and all(400 <= code < 500 for code, _ in error.recipients.values())
    if isinstance(error, smtplib.SMTPResponseException):
        return 400 <= error.smtp_code < 500 or isinstance(error, smtplib.SMTPConnectError)
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return True
    if isinstance(error, smtplib.SMTPException):
        return False
    return isinstance(error, (ConnectionError, TimeoutError, OSError))


def _explain(error: BaseException, settings: SmtpSettings) -> str:
    where = settings.describe()
    if isinstance(error, smtplib.SMTPAuthenticationError):
        return f"SMTP login refused by {where}: check OWS_SMTP_USER and OWS_SMTP_PASSWORD ({error.smtp_code})."
    if isinstance(error, smtplib.SMTPNotSupportedError) or "STARTTLS" in str(error):
        return (f"{where} does not offer STARTTLS, so the report was not sent in clear text: enable TLS on the "
                "server or point OWS_SMTP_HOST/OWS_SMTP_PORT at one that offers it.")
    if isinstance(error, (ssl.SSLError, ssl.CertificateError)):
        return (f"TLS with {where} failed ({error}): the server certificate must be trusted by this machine "
                "(system store, or SSL_CERT_FILE for a private CA).")
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        refused = ", ".join(f"{r} ({c} {m.decode(errors='replace') if isinstance(m, bytes) else m})"
                            for r, (c, m) in sorted(error.recipients.items()))
        return f"Every recipient was refused by {where}: {refused}. Check OWS_REPORT_RECIPIENTS."
    return f"Sending through {where} failed: {type(error).__name__}: {error}"


def _connect_and_send(message: EmailMessage, settings: SmtpSettings, context: ssl.SSLContext) -> dict:
    if settings.port == 465:
        client = smtplib.SMTP_SSL(settings.host, settings.port, timeout=settings.timeout_seconds, context=context)
    else:
        client = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout_seconds)
    with client as smtp:
        smtp.ehlo()
        if settings.starttls and settings.port != 465:
            if not smtp.has_extn("starttls"):
                raise smtplib.SMTPNotSupportedError("The server does not offer STARTTLS.")
            smtp.starttls(context=context)
            smtp.ehlo()
        if settings.user:
            smtp.login(settings.user, settings.password or "")
        return smtp.send_message(message, from_addr=settings.sender, to_addrs=list(settings.recipients))


def send(message: EmailMessage, settings: SmtpSettings, ssl_context: Optional[ssl.SSLContext] = None) -> dict:
    """Send `message` to `settings.recipients` in one attempt; returns the refused recipients.

    Raises DeliveryError with the fix in its message; the password never appears in it and is
    never sent over a connection without TLS.
    """
    if not settings.recipients:
        raise DeliveryError("No recipients: set OWS_REPORT_RECIPIENTS (comma separated).")
    if settings.user and not settings.starttls and settings.port != 465:
        raise DeliveryError(
            f"Refusing to send the SMTP password to {settings.describe()} without TLS: set OWS_SMTP_STARTTLS=true "
            "or use port 465."
        )
    try:
        return _connect_and_send(message, settings, ssl_context or ssl.create_default_context())
    except Exception as error:  # noqa: BLE001 - classified here
        raise DeliveryError(_explain(error, settings), transient=is_transient(error), attempts=1) from error


def send_report(
    path: Path, settings: SmtpSettings, subject: str, body: str, *, ssl_context: Optional[ssl.SSLContext] = None
) -> Delivery:
    """Send the workbook at `path` to `settings.recipients` (one attempt, see `send`)."""
    if not settings.recipients:
        raise DeliveryError("No recipients: set OWS_REPORT_RECIPIENTS (comma separated).")
    message = build_message(path, settings, subject, body)
    refused = send(message, settings, ssl_context)
    refused_text = {
        r: f"{code} {msg.decode(errors='replace') if isinstance(msg, bytes) else msg}"
        for r, (code, msg) in sorted(refused.items())
    }
    accepted = [r for r in settings.recipients if r not in refused]
    return Delivery(message["Message-ID"], accepted, refused_text, 1, len(message.as_bytes()))
