"""Dagster definitions of the staging domain: `stg_ows_<table>` and their asset checks.

Each staging asset cleans and validates the new raw rows in one step, loads the good rows,
quarantines the bad ones in `data_errors`, then runs the same suite with Great Expectations
for Data Docs. Every rule is an asset check; the table-level checks are blocking, so the
dimensions and the report are not built on bad data in the same run.
Pandas and Great Expectations are imported inside the step, never at definition time.
"""

from typing import Optional

import dagster as dg
from pydantic import Field

from ows_pipeline.resources import WarehouseResource
from ows_pipeline.settings import Settings
from ows_pipeline.source.schema import SOURCE_TABLES
from ows_pipeline.staging.suites import ERROR, SUITES, key_columns, referenced_tables

TABLE_CHECKS = {
    "not_empty": "Blocking: the extract has rows (full tables), or the staged table is not empty "
                 "(incremental and history tables).",
    "rejection_rate": "Blocking: rejected rows / rows in stays at or below the configured maximum "
                      "(OWS_MAX_REJECTION_RATE, default 5%).",
    "key_integrity": "Blocking: no row of the batch has a missing, untyped or duplicated key.",
}


class StagingConfig(dg.Config):
    """Run configuration of a staging asset."""

    max_rejection_rate: Optional[float] = Field(
        default=None,
        description="Largest share of rejected rows before the blocking check fails "
                    "(default: OWS_MAX_REJECTION_RATE, else 0.05).",
    )
    data_docs: bool = Field(default=True, description="Validate with Great Expectations and build Data Docs.")


def max_rejection_rate(config: StagingConfig) -> float:
    if config.max_rejection_rate is not None:
        return config.max_rejection_rate
    return Settings.from_env().max_rejection_rate


def check_specs(table_name: str) -> list[dg.AssetCheckSpec]:
    """One check per rule of the table's suite, plus the blocking table-level checks."""
    asset = dg.AssetKey(f"stg_{table_name}")
    specs = [
        dg.AssetCheckSpec(rule.name, asset=asset, description=f"[{rule.severity}] {rule.description}")
        for rule in SUITES[table_name]
    ]
    specs += [dg.AssetCheckSpec(name, asset=asset, description=text, blocking=True)
              for name, text in TABLE_CHECKS.items()]
    return specs


def _staging_asset(table_name: str) -> dg.AssetsDefinition:
    source = next(t for t in SOURCE_TABLES if t.name == table_name)
    deps = [dg.AssetKey(f"raw_{table_name}")] + [dg.AssetKey(t) for t in referenced_tables(table_name)]

    @dg.asset(
        name=f"stg_{table_name}",
        group_name="ows_staging",
        deps=deps,
        check_specs=check_specs(table_name),
        kinds={"pandas", "sql"},
        owners=["team:data-engineering"],
        description=(
            f"{table_name} typed, cleaned and validated ({source.mode} load, key {', '.join(source.key)}). "
            "Rows failing an ERROR rule go to data_errors instead; Data Docs show every validation."
        ),
    )
    def _asset(context: dg.AssetExecutionContext, config: StagingConfig, warehouse: WarehouseResource):
        return materialize_staging(context, table_name, config, warehouse)

    return _asset


def materialize_staging(
    context: dg.AssetExecutionContext, table_name: str, config: StagingConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Stage the pending raw rows, then report every rule as an asset check."""
    from ows_pipeline.staging.from_raw import stage_from_raw
    from ows_pipeline.warehouse.batches import new_batch_id, record_failed_batch

    engine = warehouse.get_engine()
    batch_id = new_batch_id()
    try:
        result = stage_from_raw(engine, table_name, batch_id=batch_id, run_id=context.run.run_id,
                                keep_clean=config.data_docs)
    except Exception as exc:
        record_failed_batch(engine, batch_id=batch_id, asset_key=f"stg_{table_name}", run_id=context.run.run_id,
                            message=str(exc)[:2000])
        raise
    report, docs_problem = None, None
    if config.data_docs:
        report, docs_problem = _run_gx(context, table_name, result)
    context.log.info(
        f"stg_{table_name}: {result.rows_in} rows in, {result.loaded} loaded, {result.rejected} rejected "
        f"(batch {batch_id})"
    )
    from ows_pipeline.warehouse.schema.lineage import staging_metadata

    return dg.MaterializeResult(
        metadata={**_asset_metadata(result, report, docs_problem), **staging_metadata(table_name)},
        check_results=_rule_checks(result, report, docs_problem) + _table_checks(result, config),
    )


def _run_gx(context, table_name, result):
    from ows_pipeline.staging import gx_runner

    try:
        report = gx_runner.run_suite(
            table_name, SUITES[table_name], result.clean, result.check_results, batch_id=result.batch_id
        )
        return report, None
    except Exception as exc:  # noqa: BLE001 - the load is committed; reporting must not undo it
        context.log.warning(f"Great Expectations validation of stg_{table_name} failed: {exc!r}")
        return None, f"Great Expectations validation failed: {exc!r}"[:500]
    finally:
        result.clean = None


def _docs_metadata(report, docs_problem) -> dict:
    if report is None:
        return {"data_docs": dg.MetadataValue.text(docs_problem or "Data Docs not built (data_docs: false)")}
    meta = {"data_docs_index": dg.MetadataValue.path(str(report.index_path))}
    if report.page_path is not None:
        meta["data_docs"] = dg.MetadataValue.url(report.page_path.as_uri())
    return meta


def _asset_metadata(result, report, docs_problem) -> dict:
    meta = {
        "batch_id": result.batch_id,
        "as_of": dg.MetadataValue.text(result.as_of.isoformat() if result.as_of else "unknown"),
        "rows_in": result.rows_in,
        "rows_loaded": result.loaded,
        "rows_rejected": result.rejected,
        "rejection_rate": dg.MetadataValue.float(round(result.rejection_rate, 6)),
        "warnings": result.warned,
        "staged_rows": result.staged_rows,
        "dagster/row_count": result.staged_rows,
    }
    if len(result.errors):
        sample = result.errors[["row_number", "record_key", "field", "value", "rule", "severity"]].head(10)
        meta["sample_errors"] = dg.MetadataValue.md(_markdown(sample))
    meta.update(_docs_metadata(report, docs_problem))
    return meta


def _markdown(frame) -> str:
    header = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * len(frame.columns) + "\n"
    rows = ("| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in frame.itertuples(index=False))
    return header + "\n".join(rows)


def _rule_checks(result, report, docs_problem) -> list[dg.AssetCheckResult]:
    checks = []
    for outcome in result.check_results:
        rule = outcome.rule
        passed = outcome.passed
        meta = {
            "rule": dg.MetadataValue.text(rule.description),
            "severity": rule.severity,
            "columns": ", ".join(rule.columns),
            "unexpected_count": outcome.unexpected_count,
            "unexpected_percent": dg.MetadataValue.float(round(outcome.unexpected_percent, 4)),
            "rows_in": outcome.rows_in,
            "sample_failing_values": dg.MetadataValue.json(outcome.sample_values()),
        }
        if rule.kind == "valid_type" and result.dtype_problems:
            passed = False
            meta["dtype_problems"] = dg.MetadataValue.json(result.dtype_problems)
        if report is not None:
            gx_results = report.for_rule(rule.name)
            meta["gx_unexpected_count"] = sum(e.unexpected_count or 0 for e in gx_results)
            meta["gx_expectations"] = dg.MetadataValue.json(
                [{"expectation": e.expectation, "column": e.column, "success": e.success,
                  "unexpected_count": e.unexpected_count} for e in gx_results]
            )
        meta.update(_docs_metadata(report, docs_problem))
        checks.append(dg.AssetCheckResult(
            check_name=rule.name,
            passed=passed,
            severity=dg.AssetCheckSeverity.ERROR if rule.severity == ERROR else dg.AssetCheckSeverity.WARN,
            metadata=meta,
        ))
    return checks


def _key_problems(result) -> int:
    key = set(key_columns(result.table_name))
    rows = set()
    for outcome in result.check_results:
        for finding in outcome.findings:
            on_key = finding.field in key or outcome.rule.name == "unique_key"
            if on_key and outcome.rule.kind in ("not_null", "valid_type", "unique"):
                rows.update(finding.positions.tolist())
    return len(rows)


def _table_checks(result, config: StagingConfig) -> list[dg.AssetCheckResult]:
    from ows_pipeline.source.schema import SOURCE_TABLES_BY_NAME

    full = SOURCE_TABLES_BY_NAME[result.table_name].mode == "full"
    limit = max_rejection_rate(config)
    key_problems = _key_problems(result)
    not_empty = result.rows_in > 0 if full else result.staged_rows > 0
    return [
        dg.AssetCheckResult(
            check_name="not_empty", passed=not_empty, severity=dg.AssetCheckSeverity.ERROR,
            metadata={"rows_in": result.rows_in, "staged_rows": result.staged_rows, "full_extract": full},
        ),
        dg.AssetCheckResult(
            check_name="rejection_rate", passed=result.rejection_rate <= limit, severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "rejection_rate": dg.MetadataValue.float(round(result.rejection_rate, 6)),
                "max_rejection_rate": dg.MetadataValue.float(limit),
                "rows_in": result.rows_in,
                "rows_rejected": result.rejected,
            },
        ),
        dg.AssetCheckResult(
            check_name="key_integrity", passed=key_problems == 0, severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "rows_with_key_problems": key_problems,
                "key": ", ".join(key_columns(result.table_name)),
                "staged_orphans": dg.MetadataValue.json(result.orphans),
            },
        ),
    ]


STAGING_ASSETS = [_staging_asset(t.name) for t in SOURCE_TABLES]

defs = dg.Definitions(assets=STAGING_ASSETS)
