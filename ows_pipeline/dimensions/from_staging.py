"""Build a dimension from its staging table: read the staged full extract, find its as-of time, merge.

`dim_project` also takes business unit, cost centre and owner from `ref_project_metadata`
(uploaded project metadata) where that table has the project's code.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Optional

import pandas as pd
import sqlalchemy as sa

from ows_pipeline.scd2 import DimensionSpec, MergeStats, merge_scd2
from ows_pipeline.warehouse.schema.staging import STAGING_TABLES
from ows_pipeline.warehouse.batches import last_successful_batch, utc_now
from ows_pipeline.warehouse.bulk import as_utc
from ows_pipeline.warehouse.schema.ledger import etl_batches

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


def _project_metadata(conn: sa.Connection) -> Optional[sa.Table]:
    if not sa.inspect(conn).has_table("ref_project_metadata"):
        return None
    return sa.Table("ref_project_metadata", sa.MetaData(), autoload_with=conn)


def read_staged(conn: sa.Connection, spec: DimensionSpec) -> pd.DataFrame:
    """The staged rows with the dimension's attribute names (and project metadata for `dim_project`)."""
    stg = staging_table_for(spec)
    wanted = [c for c in list(spec.natural_key) + list(spec.attributes) if c in stg.c]
    columns = [stg.c[c] for c in wanted] + [stg.c._batch_id]
    query = sa.select(*columns)
    ref = _project_metadata(conn) if spec.name == "dim_project" else None
    if ref is not None and all(c in ref.c for c in ("project_code", *PROJECT_METADATA_COLUMNS)):
        overlay = {
            c: (sa.func.coalesce(ref.c[c], stg.c[c]) if c in stg.c else ref.c[c]).label(c)
            for c in PROJECT_METADATA_COLUMNS
        }
        columns = [overlay.get(c.name, c) for c in columns] + [
            overlay[c] for c in PROJECT_METADATA_COLUMNS if c not in stg.c
        ]
        query = sa.select(*columns).select_from(stg.outerjoin(ref, ref.c.project_code == stg.c.project_code))
    result = conn.execute(query)
    return pd.DataFrame(result.all(), columns=list(result.keys()), dtype=object)


def build_dimension(engine: sa.Engine, spec: DimensionSpec) -> DimensionLoad:
    """Merge the staged full extract into `spec`'s dimension. An empty staging table merges nothing
    (an empty extract is far more likely a failed load than every entity deleted)."""
    stg = staging_table_for(spec)
    with engine.connect() as conn:
        frame = read_staged(conn, spec)
        batches = sorted({b for b in frame["_batch_id"].tolist() if b}) if len(frame) else []
        staged_batch = batches[-1] if batches else None
        as_of, as_of_source = staged_as_of(conn, stg, staged_batch)
    if len(frame) == 0:
        return DimensionLoad(stg.name, None, as_of, as_of_source, None)
    stats = merge_scd2(
        engine,
        spec,
        frame.drop(columns=["_batch_id"]),
        as_of,
        full=True,
        source=f"{stg.name} batch {staged_batch}",
    )
    return DimensionLoad(stg.name, staged_batch, as_of, as_of_source, stats)
