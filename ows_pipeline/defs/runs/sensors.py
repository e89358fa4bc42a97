"""The failure notice: a sensor that emails (or logs) every failed run of the code location."""

from __future__ import annotations

import logging

import dagster as dg

from ows_pipeline.reports.failure_notice import (
    FailureNotice,
    StepFailure,
    error_text,
    send_failure_email,
)
from ows_pipeline.redaction import redact
from ows_pipeline.defs.runs.tags import trigger_of, week_of
from ows_pipeline.resources import SmtpResource
from ows_pipeline.settings import Settings

logger = logging.getLogger("ows_pipeline.operations")


def failure_notice(context: dg.RunFailureSensorContext) -> FailureNotice:
    """The notice for the failed run of `context`: run, job, failed steps and their errors."""
    run = context.dagster_run
    steps = tuple(
        StepFailure(event.step_key or "?", error_text(getattr(event.event_specific_data, "error", None)))
        for event in context.get_step_failure_events()
    )
    failure = context.failure_event
    run_error = getattr(failure.event_specific_data, "error", None)
    run_error_text = error_text(run_error) if run_error else redact(failure.message or "run failed")
    ui_url = Settings.from_env().ui_url
    return FailureNotice(
        run_id=run.run_id,
        job_name=run.job_name,
        run_error=run_error_text,
        steps=steps,
        week=week_of(run.tags),
        trigger=trigger_of(run.tags),
        run_url=f"{ui_url}/runs/{run.run_id}" if ui_url else None,
    )


@dg.run_failure_sensor(
    name="ows_run_failure_sensor",
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description=(
        "On every failed run of this code location: an email naming the run, the failed step and the "
        "error (through the `smtp` resource, OWS_SMTP_HOST and OWS_REPORT_RECIPIENTS), else an error "
        "entry in this sensor's log and the daemon log."
    ),
)
def ows_run_failure_sensor(context: dg.RunFailureSensorContext, smtp: SmtpResource) -> None:
    notice = failure_notice(context)
    if smtp.configured:
        try:
            send_failure_email(smtp, notice)
            context.log.info(f"Failure notice for run {notice.run_id} sent to {smtp.recipients}.")
            return
        except Exception as exc:  # noqa: BLE001 - a mail problem must not lose the notice
            problem = redact(f"{type(exc).__name__}: {exc}")
            context.log.error(f"Could not email the failure notice ({problem}); logging it instead.")
            logger.error(f"Could not email the failure notice ({problem}); logging it instead.")
    context.log.error(notice.text)
    logger.error(notice.text)


defs = dg.Definitions(sensors=[ows_run_failure_sensor])
