"""Warehouse tables shared by every stage (DESIGN.md section 3): raw copies and bookkeeping.

Staging, dimension and fact tables are declared by the modules that build them, on the
same `metadata`, so that `create_warehouse_tables` makes everything in one call.
"""

from __future__ import annotations

import sqlalchemy as sa

from ows_pipeline.source.schema import SOURCE_TABLES, TS

metadata = sa.MetaData()


def _raw_table(source: sa.Table) -> sa.Table:
    columns = [sa.Column(c.name, c.type, nullable=True) for c in source.columns]
    key = [c.name for c in source.primary_key.columns]
    return sa.Table(
        f"raw_{source.name}",
        metadata,
        *columns,
        sa.Column("_batch_id", sa.String(40), nullable=False),
        sa.Column("_extracted_at", TS, nullable=False),
        sa.Index(f"ux_raw_{source.name}_key", *key, unique=True),
    )


RAW_TABLES: dict[str, sa.Table] = {t.name: _raw_table(t.table) for t in SOURCE_TABLES}

etl_batches = sa.Table(
    "etl_batches",
    metadata,
    sa.Column("batch_id", sa.String(40), primary_key=True),
    sa.Column("asset_key", sa.String(100), nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Column("source", sa.String(500)),
    sa.Column("mode", sa.String(20)),
    sa.Column("as_of", TS),
    sa.Column("watermark_from", sa.String(40)),
    sa.Column("watermark_to", sa.String(40)),
    sa.Column("rows_in", sa.BigInteger),
    sa.Column("rows_loaded", sa.BigInteger),
    sa.Column("rows_rejected", sa.BigInteger),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("message", sa.Text),
    sa.Column("started_at", TS, nullable=False),
    sa.Column("finished_at", TS),
    sa.Index("ix_etl_batches_asset", "asset_key", "status", "finished_at"),
)

data_errors = sa.Table(
    "data_errors",
    metadata,
    sa.Column("error_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("batch_id", sa.String(40), nullable=False),
    sa.Column("asset_key", sa.String(100), nullable=False),
    sa.Column("source_file", sa.String(500)),
    sa.Column("row_number", sa.BigInteger),
    sa.Column("record_key", sa.String(200)),
    sa.Column("field", sa.String(100)),
    sa.Column("value", sa.Text),
    sa.Column("rule", sa.String(100), nullable=False),
    sa.Column("severity", sa.String(10), nullable=False),
    sa.Column("message", sa.Text),
    sa.Column("created_at", TS, nullable=False),
    sa.Index("ix_data_errors_batch", "batch_id"),
    sa.Index("ix_data_errors_asset", "asset_key", "created_at"),
)


def create_warehouse_tables(engine: sa.Engine) -> None:
    """Create every warehouse table that does not exist yet (idempotent)."""
    # Each stage declares its tables on `metadata` in its own `tables` module.
    import ows_pipeline.dimensions.tables  # noqa: F401
    import ows_pipeline.facts.tables  # noqa: F401
    import ows_pipeline.staging.tables  # noqa: F401
    import ows_pipeline.uploads.tables  # noqa: F401

    metadata.create_all(engine)
