"""Dagster definitions of the staging domain: `stg_ows_<table>` and their asset checks.

Each staging asset cleans and validates the new raw rows in one step, chunk by chunk in bounded
memory, loads the good rows, quarantines the bad ones in `data_errors`, all in one transaction,
then runs the same suite with Great Expectations on a bounded sample for Data Docs. Every rule
is an asset check; the table-level checks are blocking, so the dimensions and the report are
not built on bad data in the same run.
Pandas and Great Expectations are imported inside the step, never at definition time.
"""

from typing import Optional

import dagster as dg
from pydantic import Field

from ows_pipeline.resources import WarehouseResource
from ows_pipeline.settings import DEFAULT_STAGING_CHUNK_ROWS, Settings
from ows_pipeline.source.schema import SOURCE_TABLES
from ows_pipeline.staging.suites import ERROR, SUITES, key_columns, referenced_tables

DATA_DOCS_SAMPLE_ROWS = 20_000

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
    chunk_rows: Optional[int] = Field(
        default=None,
        description="Raw rows cleaned and checked at a time, which bounds the step's memory "
                    f"(default: OWS_STAGING_CHUNK_ROWS, else {DEFAULT_STAGING_CHUNK_ROWS:,}).",
    )
    data_docs_sample_rows: int = Field(
        default=DATA_DOCS_SAMPLE_ROWS,
        description="Rows Great Expectations validates for Data Docs (failing rows first); the checks' "
                    "numbers always come from every row.",
    )


def max_rejection_rate(config: StagingConfig) -> float:
    if config.max_rejection_rate is not None:
        return config.max_rejection_rate
    return Settings.from_env().max_rejection_rate


def chunk_rows(config: StagingConfig) -> int:
    if config.chunk_rows is None:
        return Settings.from_env().staging_chunk_rows
    if config.chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1 (got {config.chunk_rows}); use e.g. 250000.")
    return config.chunk_rows


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
    from ows_pipeline.staging.batch import release_memory
    from ows_pipeline.staging.from_raw import stage_from_raw
    from ows_pipeline.warehouse.batches import new_batch_id, record_failed_batch

    engine = warehouse.get_engine()
    batch_id = new_batch_id()
    size = chunk_rows(config)

    def progress(chunk: int, rows: int) -> None:
        context.log.debug(f"stg_{table_name}: chunk {chunk} in, {rows:,} rows so far")

    try:
        result = stage_from_raw(engine, table_name, batch_id=batch_id, run_id=context.run.run_id, chunk_rows=size,
                                sample_rows=config.data_docs_sample_rows if config.data_docs else 0,
                                progress=progress)
    except Exception as exc:
        record_failed_batch(engine, batch_id=batch_id, asset_key=f"stg_{table_name}", run_id=context.run.run_id,
                            message=str(exc)[:2000])
        raise
    finally:
        release_memory()
    report, docs_problem = None, None
    if config.data_docs:
        report, docs_problem = _run_gx(context, table_name, result)
    context.log.info(
        f"stg_{table_name}: {result.rows_in:,} rows in, {result.loaded:,} loaded, {result.rejected:,} rejected "
        f"in {result.chunks} chunk(s) of up to {size:,} rows (batch {batch_id})"
    )
    from ows_pipeline.warehouse.schema.lineage import staging_metadata

    table_checks = _table_checks(result, config)
    for check in table_checks:
        if not check.passed:
            context.log.error(f"stg_{table_name} blocking check {check.check_name} failed: {check.description}")
    materialization = dg.MaterializeResult(
        metadata={**_asset_metadata(result, report, docs_problem, size), **staging_metadata(table_name)},
        check_results=_rule_checks(result, report, docs_problem) + table_checks,
    )
    del result, report
    release_memory()
    return materialization


def _run_gx(context, table_name, result):
    from ows_pipeline.staging import gx_runner

    try:
        report = gx_runner.run_suite(table_name, SUITES[table_name], result.sample, batch_id=result.batch_id)
        return report, None
    except Exception as exc:  # noqa: BLE001 - the load is committed; reporting must not undo it
        context.log.warning(f"Great Expectations validation of stg_{table_name} failed: {exc!r}"[:1000])
        return None, f"Great Expectations validation failed: {exc!r}"[:500]
    finally:
        result.sample = None


def _docs_metadata(report, docs_problem) -> dict:
    if report is None:
        return {"data_docs": dg.MetadataValue.text(docs_problem or "Data Docs not built (data_docs: false)")}
    meta = {"data_docs_index": dg.MetadataValue.path(str(report.index_path))}
    if report.page_path is not None:
        meta["data_docs"] = dg.MetadataValue.url(report.page_path.as_uri())
    return meta


def _asset_metadata(result, report, docs_problem, size: int) -> dict:
    from ows_pipeline.warehouse.data_errors import shorten

    meta = {
        "batch_id": result.batch_id,
        "as_of": dg.MetadataValue.text(result.as_of.isoformat() if result.as_of else "unknown"),
        "rows_in": result.rows_in,
        "rows_loaded": result.loaded,
        "rows_rejected": result.rejected,
        "rejection_rate": dg.MetadataValue.float(round(result.rejection_rate, 6)),
        "warnings": result.warned,
        "data_errors_rows": result.error_rows,
        "staged_rows": result.staged_rows,
        "dagster/row_count": result.staged_rows,
        "chunks": result.chunks,
        "chunk_rows": size,
    }
    if result.rejected_with_parent:
        meta["rejected_with_parent"] = dg.MetadataValue.md(
            "\n".join(f"- {item['text']} (rule {item['rule']})" for item in result.rejected_with_parent))
    if len(result.errors):
        sample = result.errors[["row_number", "record_key", "field", "value", "rule", "severity"]].head(10)
        sample = sample.assign(value=[shorten(v, 80) for v in sample["value"]])
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
            meta["gx_sample_rows"] = report.rows
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


def rejection_summary(result, limit: float) -> str:
    """One message naming the table, the rate, and per rule the count and an example value."""
    failing = sorted((o for o in result.check_results if o.rule.severity == ERROR and o.unexpected_count),
                     key=lambda o: -o.unexpected_count)
    parents = {item["rule"]: item["text"] for item in reversed(result.rejected_with_parent)}
    parts = []
    for outcome in failing[:5]:
        example = (outcome.sample_values(1) or ["?"])[0]
        part = f"{outcome.rule.name} {outcome.unexpected_count:,} rows (e.g. {example}"
        part += f"; {parents[outcome.rule.name]})" if outcome.rule.name in parents else ")"
        parts.append(part)
    more = f"; and {len(failing) - 5} more rules" if len(failing) > 5 else ""
    return (f"stg_{result.table_name}: {result.rejected:,} of {result.rows_in:,} rows rejected "
            f"({result.rejection_rate:.2%}, maximum {limit:.2%}): " + "; ".join(parts) + more +
            f". Every rejected value is in data_errors (batch_id {result.batch_id}).")


def _table_checks(result, config: StagingConfig) -> list[dg.AssetCheckResult]:
    from ows_pipeline.source.schema import SOURCE_TABLES_BY_NAME

    full = SOURCE_TABLES_BY_NAME[result.table_name].mode == "full"
    limit = max_rejection_rate(config)
    key_problems = result.key_problems
    rate_ok = result.rejection_rate <= limit
    not_empty = result.rows_in > 0 if full else result.staged_rows > 0
    return [
        dg.AssetCheckResult(
            check_name="not_empty", passed=not_empty, severity=dg.AssetCheckSeverity.ERROR,
            metadata={"rows_in": result.rows_in, "staged_rows": result.staged_rows, "full_extract": full},
        ),
        dg.AssetCheckResult(
            check_name="rejection_rate", passed=rate_ok, severity=dg.AssetCheckSeverity.ERROR,
            description=None if rate_ok else rejection_summary(result, limit),
            metadata={
                "rejection_rate": dg.MetadataValue.float(round(result.rejection_rate, 6)),
                "max_rejection_rate": dg.MetadataValue.float(limit),
                "rows_in": result.rows_in,
                "rows_rejected": result.rejected,
                "rows_rejected_only_because_of_parent": result.rejected_only_with_parent,
                **({} if rate_ok else {"why": dg.MetadataValue.text(rejection_summary(result, limit))}),
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
