"""Bookkeeping tables shared by every stage: `etl_batches` (one row per load) and `data_errors`
(one row per rejected or warned value)."""

from __future__ import annotations

import sqlalchemy as sa

from ows_pipeline.source.schema import TS
from ows_pipeline.warehouse.schema.base import metadata

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
