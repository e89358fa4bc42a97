"""The notice sent when a run fails: which run, which step, what error; by email or to the log."""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Optional

from ows_pipeline.redaction import redact

MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class StepFailure:
    step_key: str
    error: str


@dataclass(frozen=True)
class FailureNotice:
    run_id: str
    job_name: str
    run_error: str
    steps: tuple[StepFailure, ...] = ()
    week: Optional[str] = None
    trigger: Optional[str] = None
    run_url: Optional[str] = None

    @property
    def subject(self) -> str:
        steps = ", ".join(s.step_key for s in self.steps) or "no step"
        return f"[ows_pipeline] run {self.run_id[:8]} of {self.job_name} failed ({steps})"

    @property
    def text(self) -> str:
        lines = [
            f"Run {self.run_id} of job {self.job_name} failed.",
        ]
        if self.run_url:
            lines.append(f"Open it: {self.run_url}")
        if self.week:
            lines.append(f"Week: {self.week}")
        if self.trigger:
            lines.append(f"Trigger: {self.trigger}")
        lines.append(f"Run error: {self.run_error}")
        for step in self.steps:
            lines.append(f"Failed step {step.step_key}: {step.error}")
        if not self.steps:
            lines.append("No step failed: the run failed before or between steps (see the run's event log).")
        return "\n".join(lines)


WRAPPER_ERRORS = ("DagsterExecutionStepExecutionError", "DagsterUserCodeExecutionError")


def error_text(error) -> str:
    """One readable, redacted line from a Dagster SerializableErrorInfo: the error and its causes.

    Dagster's wrapper around an error raised in user code is skipped for the error it wraps.
    """
    if error is None:
        return "unknown error"
    chain = []
    while error is not None and len(chain) < 4:
        chain.append(error)
        error = getattr(error, "cause", None)
    if len(chain) > 1 and chain[0].cls_name in WRAPPER_ERRORS:
        chain = chain[1:]
    parts = [" ".join(e.message.split()) for e in chain if e.message]
    text = " | caused by ".join(parts) or chain[0].cls_name or "unknown error"
    return redact(text[:MAX_ERROR_CHARS])


def send_failure_email(smtp, notice: FailureNotice) -> None:
    """Send `notice` through the `smtp` resource with the project's one SMTP client
    (`ows_pipeline.reports.email.send`); raises `DeliveryError` with the fix in its message."""
    from ows_pipeline.reports.email import SmtpSettings, send

    settings = SmtpSettings.from_resource(smtp)
    message = EmailMessage()
    message["Subject"] = notice.subject
    message["From"] = smtp.from_addr or f"ows_pipeline@{smtp.host}"
    message["To"] = ", ".join(settings.recipients)
    message.set_content(notice.text)
    send(message, settings)
