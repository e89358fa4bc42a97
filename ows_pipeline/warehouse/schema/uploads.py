"""Warehouse tables of the uploads stage, declared on the shared warehouse metadata.

- `upload_registry`: every file ever seen in the landing folder.
- `ref_feed_sla`: the feed SLA reference list (one row per feed code), used for SLA breaches.
- `ref_project_metadata`: business unit, cost centre and owner per project code, joined into `dim_project`.

Reference tables hold the latest accepted upload (each upload is the full list); the
`_batch_id`, `_source_file`, `_row_hash` and `_loaded_at` columns say where each row came from.
"""

from __future__ import annotations

import sqlalchemy as sa

from ows_pipeline.source.schema import TS
from ows_pipeline.warehouse.schema.base import metadata

upload_registry = sa.Table(
    "upload_registry",
    metadata,
    sa.Column("upload_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("file_name", sa.String(500), nullable=False),
    sa.Column("kind", sa.String(30), nullable=False),
    sa.Column("sha256", sa.String(64)),
    sa.Column("size_bytes", sa.BigInteger),
    sa.Column("modified_at", TS),
    sa.Column("received_at", TS, nullable=False),
    # RECEIVED (run requested), LOADED, REJECTED, DUPLICATE
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("duplicate_of", sa.Integer),
    sa.Column("error_count", sa.Integer),
    sa.Column("error_summary", sa.Text),
    sa.Column("current_path", sa.String(1000), nullable=False),
    sa.Column("run_key", sa.String(100)),
    sa.Column("run_id", sa.String(64)),
    sa.Column("batch_id", sa.String(40)),
    sa.Column("rows_in", sa.BigInteger),
    sa.Column("keys_new", sa.BigInteger),
    sa.Column("keys_changed", sa.BigInteger),
    sa.Column("keys_unchanged", sa.BigInteger),
    sa.Column("keys_removed", sa.BigInteger),
    sa.Column("processed_at", TS),
    sa.Index("ix_upload_registry_sha256", "sha256"),
    sa.Index("ix_upload_registry_status", "status", "kind"),
)

ref_feed_sla = sa.Table(
    "ref_feed_sla",
    metadata,
    sa.Column("feed_code", sa.String(30), primary_key=True),
    sa.Column("expected_arrival_time", sa.String(5), nullable=False),  # HH:MM, local time (OWS_TIMEZONE)
    sa.Column("sla_minutes", sa.Integer, nullable=False),
    sa.Column("owner_team", sa.String(100), nullable=False),
    sa.Column("escalation_contact", sa.String(200)),
    sa.Column("_row_hash", sa.String(32), nullable=False),
    sa.Column("_batch_id", sa.String(40), nullable=False),
    sa.Column("_source_file", sa.String(500), nullable=False),
    sa.Column("_loaded_at", TS, nullable=False),
)

ref_project_metadata = sa.Table(
    "ref_project_metadata",
    metadata,
    sa.Column("project_code", sa.String(30), primary_key=True),
    sa.Column("business_unit", sa.String(50)),
    sa.Column("cost_centre", sa.String(30)),
    sa.Column("owner", sa.String(100)),
    sa.Column("_row_hash", sa.String(32), nullable=False),
    sa.Column("_batch_id", sa.String(40), nullable=False),
    sa.Column("_source_file", sa.String(500), nullable=False),
    sa.Column("_loaded_at", TS, nullable=False),
)

REFERENCE_TABLES: dict[str, sa.Table] = {
    "feed_sla": ref_feed_sla,
    "project_metadata": ref_project_metadata,
}
