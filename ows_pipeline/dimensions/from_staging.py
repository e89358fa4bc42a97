"""Build a dimension from its staging table: find the staged full extract's as-of time, merge it in SQL.

`dim_project` also takes business unit, cost centre and owner from `ref_project_metadata`
(uploaded project metadata) where that table has the project's code.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Optional

import sqlalchemy as sa

from ows_pipeline.scd2 import DimensionSpec, MergeStats, merge_scd2
from ows_pipeline.warehouse.schema.staging import STAGING_TABLES
from ows_pipeline.warehouse.batches import last_successful_batch, utc_now
from ows_pipeline.warehouse.bulk import as_utc
from ows_pipeline.warehouse.schema.ledger import etl_batches
from ows_pipeline.warehouse.schema.uploads import ref_project_metadata

PROJECT_METADATA_COLUMNS = ("business_unit", "cost_centre", "owner")


@dataclass
class DimensionLoad:
    """What building one dimension did: the staged batch it read, its as-of time, the merge."""

    staging_table: str
    staged_batch: Optional[str]
    as_of: dt.datetime
    as_of_source: str
    stats: Optional[MergeStats]


def staging_table_for(spec: DimensionSpec) -> sa.Table:
    return STAGING_TABLES["ows_" + spec.name.removeprefix("dim_")]


def staged_as_of(conn: sa.Connection, staging: sa.Table, staged_batch: Optional[str]) -> tuple[dt.datetime, str]:
    """As-of of the staged batch: its `etl_batches` row, else the newest successful staging batch, else now."""
    if staged_batch:
        row = conn.execute(sa.select(etl_batches.c.as_of).where(etl_batches.c.batch_id == staged_batch)).first()
        if row is not None and row.as_of is not None:
            return as_utc(row.as_of), f"etl_batches {staged_batch}"
    last = last_successful_batch(conn, staging.name)
    if last is not None and last.as_of is not None:
        return as_utc(last.as_of), f"newest successful {staging.name} batch {last.batch_id}"
    return utc_now(), "now (no etl_batches row found)"


def staged_query(spec: DimensionSpec) -> sa.Select:
    """The staged rows with the dimension's attribute names, read where they lie; for `dim_project`,
    business unit, cost centre and owner from `ref_project_metadata` win where it has the project's code."""
    stg = staging_table_for(spec)
    wanted = [c for c in list(spec.natural_key) + list(spec.attributes) if c in stg.c]
    if spec.name != "dim_project":
        return sa.select(*[stg.c[c] for c in wanted])
    ref = ref_project_metadata
    overlay = {c: (sa.func.coalesce(ref.c[c], stg.c[c]) if c in stg.c else ref.c[c]).label(c) for c in PROJECT_METADATA_COLUMNS}
    columns = [overlay.get(c, stg.c[c]) for c in wanted] + [overlay[c] for c in PROJECT_METADATA_COLUMNS if c not in stg.c]
    return sa.select(*columns).select_from(stg.outerjoin(ref, ref.c.project_code == stg.c.project_code))


def build_dimension(engine: sa.Engine, spec: DimensionSpec) -> DimensionLoad:
    """Merge the staged full extract into `spec`'s dimension, in SQL from the staging table. An empty
    staging table merges nothing (an empty extract is far more likely a failed load than every
    entity deleted)."""
    stg = staging_table_for(spec)
    with engine.connect() as conn:
        rows, staged_batch = conn.execute(sa.select(sa.func.count(), sa.func.max(stg.c._batch_id))).one()
        as_of, as_of_source = staged_as_of(conn, stg, staged_batch)
    if not rows:
        return DimensionLoad(stg.name, None, as_of, as_of_source, None)
    stats = merge_scd2(engine, spec, staged_query(spec), as_of, full=True, source=f"{stg.name} batch {staged_batch}",
                       key_unique=True)  # the staging table's unique index on the natural key
    return DimensionLoad(stg.name, staged_batch, as_of, as_of_source, stats)
