"""`ows-pipeline demo`: build the demo OWS source and run the weekly pipeline on it, week by week.

The source is advanced to each Sunday 02:00 (local time) in turn and the weekly job runs for
the week just ended, exactly as the schedule would have run it, so the warehouse ends up with
real history: dimension versions, weekly snapshots and one workbook per week. The runs belong to
the `ows_pipeline` code location (as workspace.yaml names it), so the UI lists them on the job's
page and the timeline beside the scheduled ones.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from pathlib import Path

from ows_pipeline.settings import Settings
from ows_pipeline.weeks import Week


def week_run_time(week: Week) -> dt.datetime:
    """When the schedule runs a week: the Sunday it ends, at 02:00 local time, as UTC."""
    end = week.local(week.end_utc)
    return dt.datetime.combine(end.date(), dt.time(2, 0), tzinfo=week.tz).astimezone(dt.timezone.utc)


LOCATION = "ows_pipeline"
"""The code location's name in workspace.yaml and pyproject.toml."""
REPOSITORY = "__repository__"
"""The repository name Dagster gives a `Definitions` object."""
JOB = "ows_weekly_job"
_DEFINITIONS = ("ows_pipeline.definitions", "defs")


def execute_weekly_run(instance, partition_key: str, tags: dict, run_config: dict):
    """Run `ows_weekly_job` for a week in this process as a run of the `ows_pipeline` code location.

    The run carries the job's origin in the workspace (location, repository, job), which is what
    the UI filters the job's runs and the timeline on; `execute_in_process` leaves it out.
    """
    from dagster._core.definitions.reconstruct import ReconstructableRepository
    from dagster._core.execution.api import execute_run
    from dagster._core.remote_origin import ManagedGrpcPythonEnvCodeLocationOrigin, RemoteRepositoryOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    module, attribute = _DEFINITIONS
    target = LoadableTargetOrigin(
        executable_path=sys.executable, module_name=module, attribute=attribute, working_directory=os.getcwd()
    )
    location = ManagedGrpcPythonEnvCodeLocationOrigin(target, LOCATION)
    job = ReconstructableRepository.for_module(module, attribute, os.getcwd()).get_reconstructable_job(JOB)
    run = instance.create_run_for_job(
        job_def=job.get_definition(),
        run_config=run_config,
        tags={"dagster/partition": partition_key, **tags},
        job_code_origin=job.get_python_origin(),
        remote_job_origin=RemoteRepositoryOrigin(location, REPOSITORY).get_job_origin(JOB),
    )
    return execute_run(job, run, instance)


def _default_file(url: str, home: Path) -> Path | None:
    prefix = "sqlite:///"
    if url.startswith(prefix):
        path = Path(url[len(prefix):]).resolve()
        if home in path.parents:
            return path
    return None


def run_demo(
    weeks: int = 4, history_weeks: int = 12, seed: int = 42, log=print, log_level: str = "INFO", **sizes
) -> list[Path]:
    """Generate the demo source and run `ows_weekly_job` for the last `weeks` complete weeks.

    Returns the report files written. Only SQLite files under OWS_HOME are reset.
    """
    import dagster as dg

    from ows_pipeline.partitions import weekly_partitions
    from ows_pipeline.demo.source import advance_demo, generate_demo

    settings = Settings.from_env()
    os.environ.setdefault("DAGSTER_HOME", str(settings.home / "dagster"))
    instance_yaml = Path(os.environ["DAGSTER_HOME"]) / "dagster.yaml"
    if not instance_yaml.exists():
        instance_yaml.parent.mkdir(parents=True, exist_ok=True)
        instance_yaml.write_text("# Embedded default instance: runs, events and schedules in SQLite here.\ntelemetry:\n  enabled: false\n")
    for url in (settings.source_url, settings.warehouse_url):
        path = _default_file(url, settings.home)
        if path is not None and path.exists():
            log(f"Starting afresh: removing the previous demo database {path}")
            for stale in path.parent.glob(path.name + "*"):
                stale.unlink()

    keys = weekly_partitions.get_partition_keys()[-weeks:]
    reports: list[Path] = []
    with dg.DagsterInstance.get() as instance:
        for i, key in enumerate(keys):
            as_of = min(week_run_time(Week.from_key(key, settings.timezone)), dt.datetime.now(dt.timezone.utc))
            started = time.perf_counter()
            if i == 0:
                log(f"Generating the demo OWS source: {history_weeks} weeks of history up to {as_of:%Y-%m-%d %H:%M} UTC")
                summary = generate_demo(
                    settings.source_url, seed=seed, weeks=history_weeks, as_of=as_of, progress=True, **sizes
                )
                log(f"  {summary}")
            else:
                log(f"Advancing the demo OWS source to {as_of:%Y-%m-%d %H:%M} UTC")
                advance_demo(settings.source_url, as_of)
            log(f"Running ows_weekly_job for the week starting {key} ...")
            result = execute_weekly_run(
                instance, key, {"ows/trigger": "manual"}, {"loggers": {"console": {"config": {"log_level": log_level}}}}
            )
            if not result.success:
                failures = [e.message for e in result.all_events if e.is_failure]
                raise SystemExit(f"The weekly run for {key} failed (run {result.run_id}):\n" + "\n".join(failures[-3:]))
            report = settings.report_dir / f"ows_weekly_{key}.xlsx"
            if report.exists():
                reports.append(report)
            log(f"  done in {time.perf_counter() - started:.0f} s (run {result.run_id})")
    log("")
    log("Results")
    log(f"  warehouse:     {settings.warehouse_url}")
    for report in reports:
        log(f"  weekly report: {report}")
    docs = settings.home / "data_docs"
    if docs.exists():
        log(f"  data docs:     {next(docs.rglob('index.html'), docs)}")
    log(f"  run history:   {os.environ['DAGSTER_HOME']} (open the UI with `make dev`, http://127.0.0.1:3000)")
    return reports
