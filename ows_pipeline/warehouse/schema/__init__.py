"""Every warehouse table (DESIGN.md section 3), declared on one `metadata`, below every stage.

Stages import the tables they use from the modules here; nothing here imports a stage.
`create_warehouse_tables` makes them all in one call.
"""

from __future__ import annotations

import sqlalchemy as sa

from ows_pipeline.warehouse.schema.base import metadata
from ows_pipeline.warehouse.schema.dimensions import DIMENSIONS
from ows_pipeline.warehouse.schema.facts import fct_workflow_run_weekly
from ows_pipeline.warehouse.schema.ledger import data_errors, etl_batches
from ows_pipeline.warehouse.schema.raw import RAW_TABLES
from ows_pipeline.warehouse.schema.scd2 import scd2_batches
from ows_pipeline.warehouse.schema.staging import STAGING_TABLES
from ows_pipeline.warehouse.schema.uploads import ref_feed_sla, ref_project_metadata, upload_registry

__all__ = [
    "DIMENSIONS", "RAW_TABLES", "STAGING_TABLES", "create_warehouse_tables", "data_errors", "etl_batches",
    "fct_workflow_run_weekly", "metadata", "ref_feed_sla", "ref_project_metadata", "scd2_batches", "upload_registry",
]


def create_warehouse_tables(engine: sa.Engine) -> None:
    """Create every warehouse table that does not exist yet (idempotent)."""
    metadata.create_all(engine)
