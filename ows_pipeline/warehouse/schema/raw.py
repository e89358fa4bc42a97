"""Raw copies `raw_ows_<table>`: the source columns, all nullable, plus `_batch_id` and `_extracted_at`."""

from __future__ import annotations

import sqlalchemy as sa

from ows_pipeline.source.schema import SOURCE_TABLES, TS
from ows_pipeline.warehouse.schema.base import metadata


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
