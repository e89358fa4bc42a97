"""Column lineage and column schema of warehouse tables, for the UI (`dagster/column_lineage`,
`dagster/column_schema`), derived from the SQLAlchemy table declarations.

A column of the target depends on every upstream column of the same name (the stages keep the
source's column names: raw -> staging -> dimensions -> facts); `extra` adds the renamed ones.
Bookkeeping columns (batch ids, extraction stamps, SCD2 validity) have no upstream column.

    metadata = {**table_metadata(dim_project, {"stg_ows_project": STAGING_TABLES["ows_project"]}), ...}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Optional

import dagster as dg
import sqlalchemy as sa

BOOKKEEPING = frozenset(
    {"_batch_id", "_extracted_at", "batch_id", "row_hash", "valid_from", "valid_to", "is_current", "is_deleted"}
)


def column_lineage(
    target: sa.Table,
    upstream: Mapping[str, sa.Table],
    extra: Optional[Mapping[str, Sequence[tuple[str, str]]]] = None,
) -> dg.TableColumnLineage:
    """Each column of `target` mapped to the same-named columns of the `upstream` assets (by asset key),
    plus the `(asset key, column)` pairs in `extra[column]`."""
    extra = extra or {}
    deps: dict[str, list[dg.TableColumnDep]] = {}
    for column in target.columns:
        found = [
            dg.TableColumnDep(asset_key=dg.AssetKey(key), column_name=column.name)
            for key, table in upstream.items()
            if column.name not in BOOKKEEPING and column.name in table.columns
        ]
        found += [dg.TableColumnDep(asset_key=dg.AssetKey(key), column_name=name) for key, name in extra.get(column.name, ())]
        if found:
            deps[column.name] = found
    return dg.TableColumnLineage(deps_by_column=deps)


def column_schema(table: sa.Table) -> dg.TableSchema:
    """The columns of `table` with their SQL types and nullability, for the UI."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=c.name,
                type=str(c.type),
                constraints=dg.TableColumnConstraints(nullable=bool(c.nullable), unique=bool(c.primary_key)),
            )
            for c in table.columns
        ]
    )


def table_metadata(
    target: sa.Table,
    upstream: Mapping[str, sa.Table],
    extra: Optional[Mapping[str, Sequence[tuple[str, str]]]] = None,
) -> dict:
    """`dagster/column_schema` and `dagster/column_lineage` of `target`, ready to merge into materialization metadata."""
    return {
        "dagster/column_schema": column_schema(target),
        "dagster/column_lineage": column_lineage(target, upstream, extra),
    }


def _pairs(asset: str, *columns: str) -> list[tuple[str, str]]:
    return [(asset, c) for c in columns]


RUN, HIST, STEP = "stg_ows_workflow_run", "stg_ows_run_step_history", "stg_ows_workflow_step"
STATUS = "stg_ows_run_step_status"
STATE_AS_OF_WEEK_END = _pairs(HIST, "to_status", "result_code", "changed_at") + _pairs(RUN, "status", "result_code")

WEEKLY_SNAPSHOT_LINEAGE: dict[str, list[tuple[str, str]]] = {
    **{c: _pairs(RUN, c) for c in ("run_id", "run_key", "parent_run_id", "workflow_id", "business_date",
                                   "records_loaded", "matched_cnt", "suggested_cnt", "unmatched_cnt", "begin_date")},
    "status": _pairs(HIST, "to_status") + _pairs(RUN, "status"),
    "result_code": _pairs(HIST, "result_code") + _pairs(RUN, "result_code"),
    "end_date": _pairs(HIST, "changed_at") + _pairs(RUN, "end_date"),
    "reached_end_state": STATE_AS_OF_WEEK_END,
    "is_failed": STATE_AS_OF_WEEK_END,
    "is_break": STATE_AS_OF_WEEK_END,
    "duration_minutes": _pairs(RUN, "begin_date", "end_date") + _pairs(HIST, "changed_at"),
    "workflow_code": _pairs("dim_workflow", "workflow_code"),
    "workflow_version": _pairs("dim_workflow", "version"),
    "workflow_name": _pairs("dim_workflow", "workflow_name"),
    "workflow_sk": _pairs("dim_workflow", "workflow_sk"),
    "project_id": _pairs("dim_workflow", "project_id"),
    "project_code": _pairs("dim_project", "project_code"),
    "project_name": _pairs("dim_project", "project_name"),
    "project_sk": _pairs("dim_project", "project_sk"),
    "feed_id": _pairs(STEP, "feed_id"),
    "feed_code": _pairs("dim_feed", "feed_code"),
    "feed_name": _pairs("dim_feed", "feed_name"),
    "feed_sk": _pairs("dim_feed", "feed_sk"),
    "match_process_id": _pairs(STEP, "match_process_id"),
    "process_code": _pairs("dim_match_process", "process_code"),
    "process_name": _pairs("dim_match_process", "process_name"),
    "match_process_sk": _pairs("dim_match_process", "match_process_sk"),
    "sla_minutes": _pairs("ref_feed_sla", "sla_minutes"),
    "sla_breached": _pairs("ref_feed_sla", "sla_minutes") + _pairs(RUN, "begin_date") + _pairs(HIST, "changed_at"),
    "failed_step": _pairs(STATUS, "activity_status") + _pairs(STEP, "step_label"),
    **{c: _pairs(STATUS, c) for c in ("error_name", "error_message", "assigned_user")},
}
"""Where each column of `fct_workflow_run_weekly` comes from (state as of the week's end is rebuilt
from the step history; names and surrogate keys are the dimension versions valid at the week's end)."""


def weekly_snapshot_metadata() -> dict:
    """Column schema and lineage of `fct_workflow_run_weekly`."""
    from ows_pipeline.warehouse.schema.facts import fct_workflow_run_weekly

    return table_metadata(fct_workflow_run_weekly, {}, WEEKLY_SNAPSHOT_LINEAGE)


def staging_metadata(table_name: str) -> dict:
    """Column schema and lineage of `stg_<table_name>` from `raw_<table_name>`."""
    from ows_pipeline.warehouse.schema.staging import STAGING_TABLES
    from ows_pipeline.warehouse.schema.raw import RAW_TABLES

    return table_metadata(STAGING_TABLES[table_name], {f"raw_{table_name}": RAW_TABLES[table_name]})


def dimension_metadata(dimension: sa.Table) -> dict:
    """Column schema and lineage of a `dim_*` table from its staging table (`dim_feed` from `stg_ows_feed`)."""
    from ows_pipeline.warehouse.schema.staging import STAGING_TABLES

    source = "ows_" + dimension.name.removeprefix("dim_")
    upstream = {f"stg_{source}": STAGING_TABLES[source]}
    extra = {}
    if dimension.name == "dim_project":
        extra = {c: [("ref_project_metadata", c)] for c in ("business_unit", "cost_centre", "owner")}
    return table_metadata(dimension, upstream, extra)
