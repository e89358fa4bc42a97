"""Dagster definitions of the reports domain: the weekly workbook and its delivery by email."""

import dagster as dg

from ows_pipeline.defs.policies import EMAIL_RETRY_POLICY, weekly_report_freshness_policy
from ows_pipeline.partitions import weekly_partitions
from ows_pipeline.reports import queries
from ows_pipeline.reports.email import DeliveryError, SmtpSettings, send_report
from ows_pipeline.resources import SmtpResource, WarehouseResource
from ows_pipeline.settings import Settings
from ows_pipeline.weeks import Week

FACT = dg.AssetKey("fct_workflow_run_weekly")


def _week(context: dg.AssetExecutionContext) -> Week:
    return Week.from_window(context.partition_time_window, weekly_partitions.timezone or "UTC")


@dg.asset(
    name="ows_weekly_report",
    group_name="ows_reports",
    partitions_def=weekly_partitions,
    deps=[FACT],
    kinds={"excel"},
    owners=["team:data-engineering"],
    freshness_policy=weekly_report_freshness_policy(),
)
def ows_weekly_report(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """The weekly Excel workbook `OWS_REPORT_DIR/ows_weekly_<week>.xlsx`: Summary with KPIs and charts,
    Latest snapshot of every workflow, End states, Changes from the SCD2 history, Data quality.

    Written to a temporary file and renamed into place; the same warehouse content gives the same bytes.
    """
    from ows_pipeline.reports.weekly_report import build_weekly_report, report_path  # xlsxwriter: not at load

    settings = Settings.from_env()
    week = _week(context)
    path = report_path(settings.report_dir, week.key)
    result = build_weekly_report(
        warehouse.get_engine(), week, path, data_docs=_data_docs(settings), check_results=_latest_checks(context),
        ui_url=settings.ui_url,
    )
    for note in result.notes:
        context.log.info(note)
    snapshot_rows = sum(n for name, n in result.sheet_rows.items() if name.startswith("Latest snapshot"))
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "size_bytes": result.size,
            "sha256": result.sha256,
            "snapshot_rows": snapshot_rows,
            "sheet_rows": dg.MetadataValue.json(result.sheet_rows),
            "kpis": dg.MetadataValue.md(result.kpi_markdown()),
        },
        data_version=dg.DataVersion(result.sha256),
    )


@dg.asset(
    name="ows_weekly_report_email",
    group_name="ows_reports",
    partitions_def=weekly_partitions,
    deps=[ows_weekly_report],
    kinds={"email"},
    owners=["team:data-engineering"],
    retry_policy=EMAIL_RETRY_POLICY,
)
def ows_weekly_report_email(
    context: dg.AssetExecutionContext, smtp: SmtpResource, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Sends the week's workbook to OWS_REPORT_RECIPIENTS through the `smtp` resource (STARTTLS, login).

    Skipped, with the reason in the metadata, when OWS_SMTP_HOST or OWS_REPORT_RECIPIENTS is not set.
    Transient errors are retried by the step's RetryPolicy (3 more attempts, 5 s doubling);
    permanent ones fail at once. The report file is only read.
    """
    from ows_pipeline.reports.weekly_report import report_path, sha256_of  # xlsxwriter: not at load

    settings = Settings.from_env()
    week = _week(context)
    path = report_path(settings.report_dir, week.key)
    if not smtp.configured:
        missing = [name for name, value in (("OWS_SMTP_HOST", smtp.host), ("OWS_REPORT_RECIPIENTS", smtp.recipients))
                   if not value]
        reason = f"Email not sent: {' and '.join(missing)} not set. The report is at {path}."
        context.log.warning(reason)
        return dg.MaterializeResult(metadata={"status": "skipped", "reason": reason})
    if not path.exists():
        raise dg.Failure(
            description=f"No report for week {week.key} at {path}: materialize ows_weekly_report for this week first.",
            allow_retries=False,
        )
    digest = sha256_of(path)
    smtp_settings = SmtpSettings.from_resource(smtp)
    subject = f"OWS weekly report, week of {week.key}"
    body = _body(week, path, digest, warehouse)
    try:
        delivery = send_report(path, smtp_settings, subject, body)
    except DeliveryError as error:
        raise dg.Failure(
            description=str(error),
            metadata={"host": f"{smtp_settings.host}:{smtp_settings.port}", "attempt": context.retry_number + 1,
                      "transient": error.transient, "report_path": dg.MetadataValue.path(str(path))},
            allow_retries=error.transient,
        ) from error
    if delivery.refused:
        context.log.warning(f"Refused recipients: {delivery.refused}")
    return dg.MaterializeResult(
        metadata={
            "status": "sent",
            "message_id": delivery.message_id,
            "recipients": dg.MetadataValue.json(delivery.accepted),
            "refused_recipients": dg.MetadataValue.json(delivery.refused),
            "attempt": context.retry_number + 1,
            "report_path": dg.MetadataValue.path(str(path)),
            "report_sha256": digest,
        }
    )


def _data_docs(settings: Settings):
    """The Data Docs start page once the staging checks have built it."""
    from ows_pipeline.reports.weekly_report import find_data_docs  # xlsxwriter: not at load

    from ows_pipeline.staging.data_docs import data_docs_index_path

    page = data_docs_index_path()
    return page if page.exists() else find_data_docs(settings.home)


def _latest_checks(context: dg.AssetExecutionContext, scan: int = 5000) -> list[list]:
    """(table, check, result, severity) of the latest evaluation of every asset check on record."""
    try:
        records = context.instance.event_log_storage.get_event_records(
            dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION), limit=scan, ascending=False
        )
    except Exception as error:  # noqa: BLE001 - the report does not depend on the run history being readable
        context.log.warning(f"Asset check results not read: {error}")
        return []
    latest: dict = {}
    for record in records:  # newest first
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        key = (evaluation.asset_key.to_user_string(), evaluation.check_name)
        if key not in latest:
            latest[key] = [key[0], key[1], "passed" if evaluation.passed else "failed", evaluation.severity.value,
                           _details(evaluation)]
    return [latest[k] for k in sorted(latest)]


def _details(evaluation, limit: int = 300) -> str:
    """A failed check's results in a line: its description and metadata (counts, examples), cut to `limit`."""
    parts = [evaluation.description] if getattr(evaluation, "description", None) else []
    for name, value in sorted((evaluation.metadata or {}).items()):
        shown = getattr(value, "value", value)
        if isinstance(shown, (dict, list)):
            shown = str(shown)
        parts.append(f"{name}: {shown}")
    text = "; ".join(str(p) for p in parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _body(week: Week, path, digest: str, warehouse: WarehouseResource) -> str:
    from ows_pipeline.reports.weekly_report import kpi_rows  # xlsxwriter: not at load

    lines = [
        f"The OWS weekly report for the week of {week.key} ({week.timezone}) is attached.",
        "",
    ]
    try:
        with warehouse.get_engine().connect() as conn:
            fct = queries.fact_table(conn)
            trend = queries.weekly_kpis(conn, fct, week, weeks=2)
        before = trend[-2] if len(trend) > 1 else queries.WeekKpis(week.previous().start)
        for name, this, last, _delta in kpi_rows(trend[-1], before):
            shown = f"{this:.1%}" if isinstance(this, float) else ("-" if this is None else f"{this:,}")
            before = f"{last:.1%}" if isinstance(last, float) else ("-" if last is None else f"{last:,}")
            lines.append(f"  {name:<14} {shown:>10}   (last week {before})")
        lines.append("")
    except Exception:  # noqa: BLE001 - the figures are a courtesy; the attachment is what matters
        pass
    lines += [f"File: {path.name}", f"SHA-256: {digest}", "", "Sent by ows_pipeline."]
    return "\n".join(lines)


defs = dg.Definitions(assets=[ows_weekly_report, ows_weekly_report_email])
