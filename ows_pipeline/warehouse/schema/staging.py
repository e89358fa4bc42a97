"""Staging tables `stg_ows_<table>`: the source columns typed and cleaned, validated rows only."""

from __future__ import annotations

import sqlalchemy as sa

from ows_pipeline.source.schema import SOURCE_TABLES
from ows_pipeline.warehouse.schema.base import metadata


def _staging_table(source: sa.Table) -> sa.Table:
    columns = []
    for c in source.columns:
        type_ = sa.Boolean() if c.name == "active_flag" else c.type
        columns.append(sa.Column(c.name, type_, nullable=c.nullable))
    key = [c.name for c in source.primary_key.columns]
    return sa.Table(
        f"stg_{source.name}",
        metadata,
        *columns,
        sa.Column("_batch_id", sa.String(40), nullable=False),
        sa.Index(f"ux_stg_{source.name}_key", *key, unique=True),
    )


STAGING_TABLES: dict[str, sa.Table] = {t.name: _staging_table(t.table) for t in SOURCE_TABLES}
