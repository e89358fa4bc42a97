"""`ows_weekly_schedule` and `ows_weekly_job`: the week just ended, tags, DST, a 12-week backfill."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
import sqlalchemy as sa

from ows_pipeline.defs.facts.assets import fct_workflow_run_weekly
from ows_pipeline.warehouse.schema.facts import fct_workflow_run_weekly as fct
from ows_pipeline.resources import WarehouseResource, make_engine
from ows_pipeline.defs.jobs import ows_weekly_job, ows_weekly_schedule, week_just_ended
from ows_pipeline.warehouse.schema import etl_batches
from ows_pipeline_tests.test_facts_scenario import RUNS, load_inputs_as_of

LONDON = ZoneInfo("Europe/London")


def _schedule_defs(url: str = "sqlite://") -> dg.Definitions:
    resources = {"warehouse": WarehouseResource(url=url)}
    return dg.Definitions(
        assets=[fct_workflow_run_weekly], jobs=[ows_weekly_job], schedules=[ows_weekly_schedule], resources=resources
    )


def _tick(defs: dg.Definitions, when: dt.datetime) -> list[dg.RunRequest]:
    schedule = defs.get_repository_def().get_schedule_def("ows_weekly_schedule")
    with dg.DagsterInstance.ephemeral() as instance:
        context = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=when, repository_def=defs.get_repository_def()
        )
        return list(schedule.evaluate_tick(context).run_requests or [])


@pytest.mark.parametrize(
    "local_time, week",
    [
        (dt.datetime(2026, 1, 18, 2, 0, tzinfo=LONDON), "2026-01-11"),  # winter, GMT (02:00Z)
        (dt.datetime(2026, 7, 19, 2, 0, tzinfo=LONDON), "2026-07-12"),  # summer, BST (01:00Z)
        (dt.datetime(2026, 3, 29, 2, 0, tzinfo=LONDON), "2026-03-22"),  # the morning clocks go forward
        (dt.datetime(2026, 10, 25, 2, 0, tzinfo=LONDON), "2026-10-18"),  # the morning clocks go back
    ],
)
def test_schedule_requests_the_week_just_ended(local_time, week):
    (request,) = _tick(_schedule_defs(), local_time)
    assert request.partition_key == week
    assert request.run_key == week


def test_schedule_fires_sunday_0200_local_time_and_is_on_by_default():
    schedule = _schedule_defs().get_repository_def().get_schedule_def("ows_weekly_schedule")
    assert schedule.cron_schedule == "0 2 * * 0"
    assert schedule.execution_timezone == "Europe/London"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.job_name == "ows_weekly_job"
    # The next ticks after a Saturday in each season: 02:00 local, i.e. 02:00Z in winter and 01:00Z in summer
    # (the tick times the daemon computes, through Dagster's own cron iterator).
    from dagster._utils.schedules import cron_string_iterator

    def next_tick(after: dt.datetime) -> dt.datetime:
        return next(cron_string_iterator(after.timestamp(), schedule.cron_schedule, schedule.execution_timezone))

    winter = next_tick(dt.datetime(2026, 1, 17, 12, tzinfo=dt.timezone.utc))
    summer = next_tick(dt.datetime(2026, 7, 18, 12, tzinfo=dt.timezone.utc))
    assert winter.astimezone(dt.timezone.utc) == dt.datetime(2026, 1, 18, 2, 0, tzinfo=dt.timezone.utc)
    assert summer.astimezone(dt.timezone.utc) == dt.datetime(2026, 7, 19, 1, 0, tzinfo=dt.timezone.utc)


def test_schedule_follows_ows_timezone():
    """Weeks and the schedule use OWS_TIMEZONE (read once, when the partitions are defined). In New
    York 02:00 does not exist on the morning the clocks go forward: that tick comes at 03:00 and
    still asks for the week just ended."""
    code = (
        "import datetime as dt\n"
        "from dagster._utils.schedules import cron_string_iterator\n"
        "from ows_pipeline.defs.jobs import week_just_ended, ows_weekly_schedule as s\n"
        "print(s.cron_schedule, s.execution_timezone)\n"
        "after = dt.datetime(2026, 3, 7, tzinfo=dt.timezone.utc).timestamp()\n"
        "tick = next(cron_string_iterator(after, s.cron_schedule, s.execution_timezone))\n"
        "print(tick.isoformat(), week_just_ended(tick))\n"
    )
    env = {**os.environ, "OWS_TIMEZONE": "America/New_York"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["0", "2", "*", "*", "0", "America/New_York", "2026-03-08T03:00:00-04:00", "2026-03-01"]


def test_schedule_skips_before_the_first_week_has_ended():
    (skip,) = [_skip_reason(_schedule_defs(), dt.datetime(2025, 1, 5, 2, 0, tzinfo=LONDON))]
    assert "No week has ended yet" in skip


def _skip_reason(defs: dg.Definitions, when: dt.datetime) -> str:
    schedule = defs.get_repository_def().get_schedule_def("ows_weekly_schedule")
    with dg.DagsterInstance.ephemeral() as instance:
        context = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=when, repository_def=defs.get_repository_def()
        )
        data = schedule.evaluate_tick(context)
    assert not data.run_requests
    return data.skip_message


@pytest.mark.parametrize(
    "at, week",
    [
        (dt.datetime(2026, 11, 22, 0, 0, tzinfo=LONDON), "2026-11-15"),  # the instant the week ends
        (dt.datetime(2026, 11, 21, 23, 59, tzinfo=LONDON), "2026-11-08"),  # a minute before: the one before
        (dt.datetime(2026, 3, 29, 1, 30, tzinfo=dt.timezone.utc), "2026-03-22"),  # 02:30 BST, clocks just went forward
        (dt.datetime(2026, 10, 25, 1, 30, tzinfo=dt.timezone.utc), "2026-10-18"),  # 01:30 GMT, the second 01:30 that day
    ],
)
def test_week_just_ended(at, week):
    assert week_just_ended(at) == week


def test_weekly_job_targets_the_whole_pipeline():
    """Against the code location's definitions: every asset of the raw, staging, dimension, fact
    and report groups, weekly partitioned and unpartitioned ones in one job."""
    from ows_pipeline.definitions import defs as location

    repo = location.get_repository_def()
    if "ows_weekly_job" not in repo.job_names:
        location = dg.Definitions.merge(location, dg.Definitions(jobs=[ows_weekly_job], schedules=[ows_weekly_schedule]))
        repo = location.get_repository_def()
    job = repo.get_job("ows_weekly_job")
    graph = repo.asset_graph
    weekly_groups = {"ows_raw", "ows_staging", "ows_dimensions", "ows_facts", "ows_reports"}
    expected = {k for k in graph.materializable_asset_keys if graph.get(k).group_name in weekly_groups}
    assert set(job.asset_layer.selected_asset_keys) == expected
    assert dg.AssetKey("fct_workflow_run_weekly") in expected
    assert not any(graph.get(k).group_name == "ows_uploads" for k in job.asset_layer.selected_asset_keys)
    assert job.partitions_def.get_partition_keys()[0] == "2025-01-05"


def _weeks_holding(run) -> set[str]:
    """Reference: the weeks (Sunday keys) a run belongs to, computed by walking the calendar."""
    weeks = set()
    day = dt.date(2025, 4, 13)
    while day <= dt.date(2025, 6, 29):
        start = dt.datetime.combine(day, dt.time(0), LONDON).astimezone(dt.timezone.utc)
        end = dt.datetime.combine(day + dt.timedelta(days=7), dt.time(0), LONDON).astimezone(dt.timezone.utc)
        if run.begin < end and (run.end is None or run.end[0] >= start):
            weeks.add(day.isoformat())
        day += dt.timedelta(days=7)
    return weeks


def test_twelve_week_backfill_through_the_job(tmp_path):
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    engine = make_engine(url, role="warehouse")
    load_inputs_as_of(engine, dt.datetime(2025, 8, 1, tzinfo=dt.timezone.utc))
    defs = _schedule_defs(url)
    job = defs.resolve_job_def("ows_weekly_job")
    weeks = job.partitions_def.get_partition_keys_in_range(dg.PartitionKeyRange("2025-04-13", "2025-06-29"))
    assert len(weeks) == 12

    with dg.DagsterInstance.ephemeral() as instance:
        for week in weeks:
            result = job.execute_in_process(partition_key=week, instance=instance)
            assert result.success
            assert result.dagster_run.tags["dagster/partition"] == week
        materialized = instance.get_materialized_partitions(dg.AssetKey("fct_workflow_run_weekly"))
    assert materialized == set(weeks)

    with engine.connect() as conn:
        rows = {tuple(r) for r in conn.execute(sa.select(fct.c.week_start, fct.c.run_id))}
        batches = conn.execute(
            sa.select(sa.func.count()).select_from(etl_batches).where(etl_batches.c.asset_key == "fct_workflow_run_weekly")
        ).scalar_one()
    expected = {(dt.date.fromisoformat(w), r.run_id) for r in RUNS for w in _weeks_holding(r)}
    assert rows == expected
    assert batches == 12


@pytest.mark.slow
def test_twelve_week_backfill_from_the_cli_in_one_run(tmp_path):
    """`dagster asset materialize --partition-range` builds 12 weeks in one run (single-run backfill policy)."""
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    engine = make_engine(url, role="warehouse")
    load_inputs_as_of(engine, dt.datetime(2025, 8, 1, tzinfo=dt.timezone.utc))
    location = tmp_path / "location.py"
    location.write_text(
        "import dagster as dg\n"
        "import ows_pipeline.defs.facts.assets as facts\n"
        "from ows_pipeline.resources import resources_from_env\n"
        "defs = dg.Definitions.merge(facts.defs, dg.Definitions(resources=resources_from_env()))\n"
    )
    (tmp_path / "dagster_home").mkdir()
    env = {**os.environ, "OWS_WAREHOUSE_URL": url, "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
    result = subprocess.run(
        [dagster, "asset", "materialize", "-f", str(location), "--select", "fct_workflow_run_weekly",
         "--partition-range", "2025-04-13...2025-06-29"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with engine.connect() as conn:
        rows = {tuple(r) for r in conn.execute(sa.select(fct.c.week_start, fct.c.run_id))}
        runs = conn.execute(
            sa.select(sa.func.count(sa.distinct(etl_batches.c.run_id)), sa.func.count())
            .where(etl_batches.c.asset_key == "fct_workflow_run_weekly")
        ).one()
    assert rows == {(dt.date.fromisoformat(w), r.run_id) for r in RUNS for w in _weeks_holding(r)}
    assert tuple(runs) == (1, 12)  # one Dagster run, twelve week batches


def test_every_sunday_tick_of_two_years_asks_for_the_week_that_just_ended():
    """Across four clock changes: each 02:00 tick's week ends at that Sunday's local midnight."""
    from ows_pipeline.facts.weekly_snapshot import week_for_key

    sunday = dt.date(2025, 1, 12)
    seen = []
    while sunday < dt.date(2027, 1, 10):
        tick = dt.datetime.combine(sunday, dt.time(2, 0), LONDON)
        week = week_for_key(week_just_ended(tick), "Europe/London")
        assert week.end_utc == dt.datetime.combine(sunday, dt.time(0), LONDON).astimezone(dt.timezone.utc)
        assert week.start == sunday - dt.timedelta(days=7)
        seen.append(week.key)
        sunday += dt.timedelta(days=7)
    assert len(seen) == len(set(seen)) == 104


@pytest.mark.parametrize(
    "setting, value, message",
    [
        ("OWS_FIRST_WEEK", "2025-01-06", "OWS_FIRST_WEEK='2025-01-06' is a Monday; weeks start on Sunday: use 2025-01-05."),
        ("OWS_FIRST_WEEK", "Jan 2025", "OWS_FIRST_WEEK='Jan 2025' is not a date"),
        ("OWS_TIMEZONE", "Europe/Londn", "OWS_TIMEZONE='Europe/Londn' is not a known time zone"),
    ],
)
def test_week_settings_that_cannot_work_stop_the_load_with_the_fix(setting, value, message):
    env = {**os.environ, setting: value}
    result = subprocess.run([sys.executable, "-c", "import ows_pipeline.partitions"], env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert message in result.stderr


def test_first_week_follows_ows_first_week():
    env = {**os.environ, "OWS_FIRST_WEEK": "2026-03-01"}
    code = "from ows_pipeline.partitions import weekly_partitions as p; print(p.get_first_partition_key())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "2026-03-01"


@pytest.mark.slow
def test_job_backfill_from_the_cli_runs_through_the_daemon(tmp_path):
    """`dagster job backfill` queues one run per week; `dagster-daemon` runs them (the UI's path)."""
    import signal
    import time

    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    engine = make_engine(url, role="warehouse")
    load_inputs_as_of(engine, dt.datetime(2025, 8, 1, tzinfo=dt.timezone.utc))
    location = tmp_path / "location.py"
    location.write_text(
        "import dagster as dg\n"
        "import ows_pipeline.defs.facts.assets as facts\n"
        "import ows_pipeline.defs.jobs as schedules\n"
        "from ows_pipeline.resources import resources_from_env\n"
        "defs = dg.Definitions.merge(facts.defs, schedules.defs, dg.Definitions(resources=resources_from_env()))\n"
    )
    (tmp_path / "dagster_home").mkdir()
    env = {**os.environ, "OWS_WAREHOUSE_URL": url, "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    bin_dir = os.path.dirname(sys.executable)
    weeks = ["2025-05-25", "2025-06-01", "2025-06-08"]
    subprocess.run(
        [os.path.join(bin_dir, "dagster"), "job", "backfill", "-f", str(location), "-j", "ows_weekly_job",
         "--from", weeks[0], "--to", weeks[-1], "--noprompt"],
        env=env, capture_output=True, text=True, timeout=300, check=True,
    )
    daemon = subprocess.Popen(
        [os.path.join(bin_dir, "dagster-daemon"), "run", "-f", str(location)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        built = set()
        while time.monotonic() < deadline and len(built) < len(weeks):
            time.sleep(3)
            with engine.connect() as conn:
                built = set(conn.execute(sa.select(fct.c.week_start).distinct()).scalars())
    finally:
        os.killpg(daemon.pid, signal.SIGKILL)
        daemon.wait()
    assert built == {dt.date.fromisoformat(w) for w in weeks}
