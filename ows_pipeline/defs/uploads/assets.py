"""Dagster definitions of the uploads domain: the landing-folder sensor, one job per upload kind,
and the assets those jobs materialize (group `ows_uploads`)."""


import dagster as dg

from ows_pipeline.resources import WarehouseResource

GROUP = "ows_uploads"
POOL = "ows_uploads"  # limit it to 1 in the instance to load uploads one at a time, in arrival order
KIND_JOBS = {
    "feed_sla": "ows_upload_feed_sla_job",
    "project_metadata": "ows_upload_project_metadata_job",
    "ows_export": "ows_upload_export_job",
}

KIND_ASSETS = {
    "feed_sla": "ref_feed_sla",
    "project_metadata": "ref_project_metadata",
    "ows_export": "ows_export_upload",
}


class UploadConfig(dg.Config):
    """Which registered upload to process (set by `ows_upload_sensor`)."""

    upload_id: int


def _landing():
    from ows_pipeline.settings import Settings
    from ows_pipeline.uploads.landing import LandingFolder

    return LandingFolder(Settings.from_env().landing_dir)


def _process(context: dg.AssetExecutionContext, config: UploadConfig, warehouse: WarehouseResource):
    from ows_pipeline.uploads import registry
    from ows_pipeline.uploads.processing import process_upload

    outcome = process_upload(warehouse.get_engine(), _landing(), config.upload_id, run_id=context.run.run_id)
    for warning in outcome.warnings[:20]:
        context.log.warning(f"{outcome.file_name}: {warning.describe()}")
    metadata = {
        "upload_id": outcome.upload_id,
        "file": outcome.file_name,
        "status": outcome.status,
        "location": outcome.location,
        "batch_id": outcome.batch_id or "",
        "warnings": len(outcome.warnings),
    }
    metadata.update({k: v for k, v in outcome.details.items() if isinstance(v, (str, int, float))})
    metadata = {k: v for k, v in metadata.items() if v is not None}
    if outcome.status == registry.REJECTED:
        listed = "\n".join(f"- {p.describe()}" for p in outcome.problems[:20])
        more = f"\n- ... {len(outcome.problems) - 20} more" if len(outcome.problems) > 20 else ""
        if outcome.location.startswith("rejected/"):
            where = f"It now lies in {outcome.location}, with every problem in {outcome.location}.errors.json"
        else:
            where = (f"It could not be moved and is still at {outcome.location}; every problem is listed in "
                     f"rejected/{outcome.kind}/")
        by = " by ows_upload_sensor before loading" if outcome.details.get("refused_by") else ""
        raise dg.Failure(
            description=f"Upload '{outcome.file_name}' was rejected{by} and nothing was loaded. {where}:\n{listed}{more}",
            metadata={**metadata, "problems": len(outcome.problems)},
            allow_retries=False,
        )
    if outcome.counts is not None:
        metadata.update(
            {
                "rows": outcome.rows,
                "keys_new": outcome.counts.new,
                "keys_changed": outcome.counts.changed,
                "keys_unchanged": outcome.counts.unchanged,
                "keys_removed": outcome.counts.removed,
            }
        )
    context.log.info(outcome.summary)
    return outcome, metadata


def _reference_asset(name: str, description: str) -> dg.AssetsDefinition:
    """A reference list replaced by each accepted upload of its kind, one run per file."""

    @dg.asset(
        name=name,
        group_name=GROUP,
        pool=POOL,
        kinds={"csv", "excel", "sql"},
        description=description + " Materialized by ows_upload_sensor, one run per file.",
    )
    def _asset(context: dg.AssetExecutionContext, config: UploadConfig, warehouse: WarehouseResource):
        _outcome, metadata = _process(context, config, warehouse)
        return dg.MaterializeResult(metadata=metadata)

    return _asset


ref_feed_sla = _reference_asset(
    "ref_feed_sla",
    "Feed SLA reference list (expected arrival time, SLA minutes, owner team, escalation contact per "
    "feed code), replaced by each accepted upload in the landing folder's feed_sla/.",
)
ref_project_metadata = _reference_asset(
    "ref_project_metadata",
    "Project metadata (business unit, cost centre, owner per project code), joined into dim_project; "
    "replaced by each accepted upload in the landing folder's project_metadata/.",
)


@dg.asset(
    group_name=GROUP,
    pool=POOL,
    kinds={"csv", "excel", "sql"},
    description="A manual export of one OWS table (landing folder's ows_export/, named like "
    "ows_feed_2026-11-01.csv), loaded through the same staging validation and SCD2 history as a "
    "database extract; an export older than what is loaded is slotted into history. "
    "Materialized by ows_upload_sensor, one run per file.",
)
def ows_export_upload(context: dg.AssetExecutionContext, config: UploadConfig, warehouse: WarehouseResource):
    outcome, metadata = _process(context, config, warehouse)
    for asset_key in outcome.details.get("materialized", []):
        context.log_event(dg.AssetMaterialization(asset_key=asset_key, metadata={"upload": outcome.file_name}))
    return dg.MaterializeResult(metadata=metadata)


upload_registry_spec = dg.AssetSpec(
    "upload_registry",
    group_name=GROUP,
    kinds={"sql"},
    description="Every file ever seen in the landing folder: name, sha256, size, kind, received time, "
    "status (RECEIVED, LOADED, REJECTED, DUPLICATE), error summary, key counts and where it now lies. "
    "Written by ows_upload_sensor and the upload jobs.",
)

upload_jobs = [
    dg.define_asset_job(KIND_JOBS["feed_sla"], selection=[ref_feed_sla], description="Load one feed SLA upload."),
    dg.define_asset_job(
        KIND_JOBS["project_metadata"], selection=[ref_project_metadata], description="Load one project metadata upload."
    ),
    dg.define_asset_job(KIND_JOBS["ows_export"], selection=[ows_export_upload], description="Load one OWS export."),
]


@dg.sensor(
    jobs=upload_jobs,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Watches the landing folder (OWS_LANDING_DIR): registers each new file once it is settled "
    "(unchanged across two ticks) in upload_registry and requests one run per file, keyed on its content "
    "hash. Files it refuses itself (links, folders, oversize files, refused formats) are moved to rejected/ "
    "and get a run that fails with the reason, so that the failure notice is sent; the same bytes twice are "
    "recorded as a duplicate and not loaded again.",
)
def ows_upload_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource):
    from ows_pipeline.uploads.sensing import sensor_tick

    tick = sensor_tick(warehouse.get_engine(), _landing(), context.cursor)
    for line in tick.log:
        context.log.info(line)
    requests = [
        dg.RunRequest(
            run_key=request.run_key,
            job_name=KIND_JOBS[request.kind],
            run_config=dg.RunConfig(ops={KIND_ASSETS[request.kind]: UploadConfig(upload_id=request.upload_id)}),
            tags={
                "ows/upload_id": str(request.upload_id),
                "ows/upload_file": request.file_name[:200],
                "ows/upload_kind": request.kind,
            },
        )
        for request in tick.requests
    ]
    skip = None
    if tick.deferred:
        context.log.info(f"{len(tick.deferred)} stable files left for the next tick (time budget spent)")
    if not requests:
        skip = f"no new stable file ({len(tick.waiting)} waiting to settle)" if tick.waiting else "no new file"
    return dg.SensorResult(run_requests=requests, cursor=tick.cursor, skip_reason=skip)


defs = dg.Definitions(
    assets=[ref_feed_sla, ref_project_metadata, ows_export_upload, upload_registry_spec],
    jobs=upload_jobs,
    sensors=[ows_upload_sensor],
)
