"""Operations: run tags, failure notices (real SMTP server), retries, the production instance config."""

from __future__ import annotations

import email
import email.policy
import logging
import shutil
import socket
import time
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from ows_pipeline.defs.runs.sensors import ows_run_failure_sensor
from ows_pipeline.defs.policies import (
    DIMENSION_MERGE_POOL,
    EXTRACTION_RETRY_POLICY,
    is_transient_source_error,
    retry_only_transient,
    weekly_report_freshness_policy,
)
from ows_pipeline.redaction import redact
from ows_pipeline.defs.runs.tags import trigger_of, week_of
from ows_pipeline.resources import SmtpResource

REPO_ROOT = Path(__file__).resolve().parents[1]
SECRET = "S3cret-Pw-4711"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- run tags


@pytest.mark.parametrize(
    "tags, trigger",
    [
        ({"dagster/schedule_name": "ows_weekly_schedule"}, "schedule"),
        ({"dagster/sensor_name": "ows_upload_sensor"}, "sensor"),
        ({"dagster/backfill": "abc"}, "backfill"),
        ({}, "manual"),
    ],
)
def test_trigger_of(tags, trigger):
    assert trigger_of(tags) == trigger


def test_week_from_dagsters_partition_tags():
    assert week_of({"dagster/partition": "2026-11-15"}) == "2026-11-15"
    ranged = {"dagster/asset_partition_range_start": "2026-11-01", "dagster/asset_partition_range_end": "2026-11-15"}
    assert week_of(ranged) == "2026-11-01..2026-11-15"
    assert week_of({}) is None


def test_a_manual_partitioned_run_carries_dagsters_own_week_and_trigger_tags():
    """No sensor re-stamps runs: the week and the trigger are read from the tags Dagster sets."""
    weekly = dg.WeeklyPartitionsDefinition(start_date="2026-01-04")

    @dg.asset(partitions_def=weekly)
    def weekly_thing():
        return 1

    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize([weekly_thing], instance=instance, partition_key="2026-11-15")
        tags = instance.get_run_by_id(result.run_id).tags
    assert week_of(tags) == "2026-11-15"
    assert trigger_of(tags) == "manual"
    assert not [t for t in tags if t.startswith("ows/")]


# ---------------------------------------------------------------- redaction


def test_redact_masks_url_passwords_pairs_and_known_values():
    text = (
        f"could not connect to postgresql+psycopg2://ows:{SECRET}@db:5432/wh; "
        f"password={SECRET}x; the value {SECRET} again"
    )
    cleaned = redact(text, secrets=[SECRET])
    assert SECRET not in cleaned
    assert "postgresql+psycopg2://ows:***@db:5432/wh" in cleaned
    assert "password=***" in cleaned


def test_redact_reads_secret_values_from_the_environment(monkeypatch):
    monkeypatch.setenv("OWS_SMTP_PASSWORD", SECRET)
    assert redact(f"login failed for {SECRET}") == "login failed for ***"


# ---------------------------------------------------------------- retries


def test_connection_errors_are_transient_and_bad_sql_is_not():
    closed = _closed_port()
    pg = sa.create_engine(f"postgresql+psycopg2://postgres@127.0.0.1:{closed}/x", connect_args={"connect_timeout": 2})
    with pytest.raises(sa.exc.OperationalError) as refused:
        pg.connect()
    assert is_transient_source_error(refused.value)

    import oracledb

    with pytest.raises(oracledb.Error) as ora:
        oracledb.connect(user="u", password="p", dsn=f"127.0.0.1:{closed}/?service_name=OWS", tcp_connect_timeout=2)
    assert "DPY-6005" in str(ora.value)
    assert is_transient_source_error(ora.value)

    lite = sa.create_engine("sqlite://")
    with pytest.raises(sa.exc.OperationalError) as missing:
        with lite.connect() as conn:
            conn.execute(sa.text("select * from ows_workflow_run"))
    assert not is_transient_source_error(missing.value)
    assert is_transient_source_error(ConnectionResetError("reset by peer"))


def test_extraction_retry_policy_has_backoff():
    assert EXTRACTION_RETRY_POLICY.max_retries >= 2
    assert EXTRACTION_RETRY_POLICY.delay and EXTRACTION_RETRY_POLICY.delay >= 5
    assert EXTRACTION_RETRY_POLICY.backoff == dg.Backoff.EXPONENTIAL
    assert EXTRACTION_RETRY_POLICY.jitter == dg.Jitter.PLUS_MINUS


def _policy_without_wait() -> dg.RetryPolicy:
    """The extraction policy with its delay removed, so the test does not sleep."""
    return dg.RetryPolicy(
        max_retries=EXTRACTION_RETRY_POLICY.max_retries, delay=0.01, backoff=EXTRACTION_RETRY_POLICY.backoff
    )


def test_transient_source_error_is_retried_then_succeeds():
    attempts = []

    @dg.asset(retry_policy=_policy_without_wait())
    def raw_flaky():
        attempts.append(1)
        with retry_only_transient("Extracting raw_flaky"):
            if len(attempts) < 3:
                raise ConnectionRefusedError("DPY-6005: cannot connect to database (listener down)")
        return len(attempts)

    result = dg.materialize([raw_flaky])
    assert result.success
    assert len(attempts) == 3


def test_permanent_source_error_fails_at_once_without_the_password():
    attempts = []

    @dg.asset(retry_policy=_policy_without_wait())
    def raw_broken():
        attempts.append(1)
        with retry_only_transient("Extracting raw_broken"):
            raise sa.exc.ProgrammingError(
                f"select from oracle+oracledb://ows:{SECRET}@h/?service_name=OWS", {}, Exception("ORA-00942")
            )

    result = dg.materialize([raw_broken], raise_on_error=False)
    assert not result.success
    assert len(attempts) == 1
    failure = result.get_step_failure_events()[0].event_specific_data.error
    assert "Extracting raw_broken failed" in failure.message
    assert SECRET not in failure.message


def test_pool_and_freshness_policy():
    assert DIMENSION_MERGE_POOL == "ows_dimension_merge"
    policy = weekly_report_freshness_policy("Europe/London")
    assert policy.deadline_cron == "0 9 * * 1"
    assert policy.timezone == "Europe/London"


# ---------------------------------------------------------------- failure sensor


@dg.op
def extract_ows_workflow_run():
    raise RuntimeError(f"listener refused oracle+oracledb://ows:{SECRET}@ows-db:1521/?service_name=OWS")


@dg.job
def failing_extract_job():
    extract_ows_workflow_run()


def _failure_context(instance, smtp: SmtpResource):
    result = failing_extract_job.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    run = instance.get_run_by_id(result.run_id)
    failure = [e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE][0]
    context = dg.build_run_status_sensor_context(
        sensor_name="ows_run_failure_sensor",
        dagster_event=failure,
        dagster_instance=instance,
        dagster_run=run,
        resources={"smtp": smtp},
    ).for_run_failure()
    return run, context


class _Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp_server():
    from aiosmtpd.controller import Controller

    inbox = _Inbox()
    port = _closed_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def test_failure_sensor_emails_run_step_and_error(smtp_server):
    inbox, port = smtp_server
    smtp = SmtpResource(
        host="127.0.0.1", port=port, starttls=False, from_addr="ows@example.org", recipients="ops@example.org"
    )
    with dg.DagsterInstance.ephemeral() as instance:
        run, context = _failure_context(instance, smtp)
        ows_run_failure_sensor(context)
    deadline = time.monotonic() + 10
    while not inbox.messages and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(inbox.messages) == 1
    envelope = inbox.messages[0]
    message = email.message_from_bytes(envelope.content, policy=email.policy.default)
    body = message.get_content()
    assert envelope.rcpt_tos == ["ops@example.org"]
    assert message["Subject"] == f"[ows_pipeline] run {run.run_id[:8]} of failing_extract_job failed (extract_ows_workflow_run)"
    assert f"Run {run.run_id} of job failing_extract_job failed." in body
    assert "Failed step extract_ows_workflow_run: RuntimeError: listener refused" in body
    assert "Trigger: manual" in body
    assert SECRET not in body
    assert "ows:***@ows-db" in body


def test_failure_sensor_logs_when_smtp_is_not_configured(caplog):
    with dg.DagsterInstance.ephemeral() as instance, caplog.at_level(logging.ERROR, "ows_pipeline.operations"):
        run, context = _failure_context(instance, SmtpResource())
        ows_run_failure_sensor(context)
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "ows_pipeline.operations")
    assert f"Run {run.run_id} of job failing_extract_job failed." in logged
    assert "Failed step extract_ows_workflow_run" in logged
    assert SECRET not in logged


def test_failure_sensor_never_sends_a_password_without_tls(smtp_server, caplog):
    inbox, port = smtp_server
    smtp = SmtpResource(
        host="127.0.0.1", port=port, starttls=False, user="notifier", password=SECRET, recipients="ops@example.org"
    )
    with dg.DagsterInstance.ephemeral() as instance, caplog.at_level(logging.ERROR, "ows_pipeline.operations"):
        run, context = _failure_context(instance, smtp)
        ows_run_failure_sensor(context)
    assert inbox.messages == []
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "ows_pipeline.operations")
    assert f"Run {run.run_id} of job failing_extract_job failed." in logged
    assert SECRET not in logged


def test_failure_sensor_logs_the_notice_when_the_mail_server_is_down(caplog):
    smtp = SmtpResource(host="127.0.0.1", port=_closed_port(), starttls=False, recipients="ops@example.org")
    with dg.DagsterInstance.ephemeral() as instance, caplog.at_level(logging.ERROR, "ows_pipeline.operations"):
        run, context = _failure_context(instance, smtp)
        ows_run_failure_sensor(context)
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "ows_pipeline.operations")
    assert f"Run {run.run_id} of job failing_extract_job failed." in logged


# ---------------------------------------------------------------- the production instance


def test_root_dagster_yaml_queues_runs_per_week_and_serialises_merges():
    config = yaml.safe_load((REPO_ROOT / "deploy" / "dagster.yaml").read_text())
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    limits = {(limit["key"], str(limit.get("value"))): limit["limit"] for limit in config["concurrency"]["runs"]["tag_concurrency_limits"]}
    assert limits[("dagster/partition", "{'applyLimitPerUniqueValue': True}")] == 1
    assert config["concurrency"]["pools"]["default_limit"] == 1
    assert config["storage"]["postgres"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    assert config["telemetry"]["enabled"] is False


@pytest.mark.postgres
def test_root_dagster_yaml_loads_on_postgresql(pg_url, tmp_path, monkeypatch):
    url = sa.make_url(pg_url)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_PG_HOST", url.host)
    monkeypatch.setenv("DAGSTER_PG_PORT", str(url.port or 5432))
    monkeypatch.setenv("DAGSTER_PG_USER", url.username)
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", url.password or "")
    monkeypatch.setenv("DAGSTER_PG_DB", url.database)
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_postgres import PostgresRunStorage

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        assert isinstance(instance.run_storage, PostgresRunStorage)
        settings = instance.get_concurrency_config()
        week_limits = [l for l in settings.run_queue_config.tag_concurrency_limits if l["key"] == "dagster/partition"]
        assert week_limits and week_limits[0]["limit"] == 1
        assert settings.pool_config.default_pool_limit == 1
        result = failing_extract_job.execute_in_process(instance=instance, raise_on_error=False)
        assert instance.get_run_by_id(result.run_id).status == dg.DagsterRunStatus.FAILURE
