"""The SCD2 dimensions `dim_*` (DESIGN.md section 3), declared on the shared warehouse metadata.

Attributes keep the staging column names. `created_at` / `updated_at` are stored as the row
that opened the version had them; they never open a version themselves.
"""

from __future__ import annotations

import sqlalchemy as sa

from ows_pipeline.warehouse.schema.scd2 import DimensionSpec, declare_dimension
from ows_pipeline.warehouse.schema.staging import STAGING_TABLES


def _dimension(entity: str, tracked: tuple[str, ...], scd1: tuple[str, ...] = (), extra: tuple[sa.Column, ...] = ()):
    stg = STAGING_TABLES[f"ows_{entity}"]
    key = [stg.c[f"{entity}_id"]]
    attributes = [c for c in stg.columns if c.name not in (f"{entity}_id", "_batch_id")] + list(extra)
    return declare_dimension(
        name=f"dim_{entity}",
        sk=f"{entity}_sk",
        key_columns=key,
        attribute_columns=attributes,
        tracked=tracked,
        scd1=scd1,
        updated_at="updated_at",
    )


DIM_PROJECT: DimensionSpec = _dimension(
    "project",
    tracked=("project_code", "project_name", "active_flag"),
    scd1=("business_unit", "owner", "cost_centre"),
    extra=(sa.Column("cost_centre", sa.String(50)),),
)
DIM_FEED: DimensionSpec = _dimension(
    "feed",
    tracked=("project_id", "feed_code", "feed_name", "source_system", "side", "expected_schedule", "active_flag"),
)
DIM_MATCH_PROCESS: DimensionSpec = _dimension(
    "match_process",
    tracked=(
        "project_id",
        "process_code",
        "process_name",
        "from_feed_id",
        "to_feed_id",
        "rule_set_version",
        "position",
        "active_flag",
    ),
)
DIM_WORKFLOW: DimensionSpec = _dimension(
    "workflow",
    tracked=("project_id", "workflow_code", "version", "workflow_name", "begin_date", "end_date"),
)

DIMENSIONS: dict[str, DimensionSpec] = {d.name: d for d in (DIM_PROJECT, DIM_FEED, DIM_MATCH_PROCESS, DIM_WORKFLOW)}
