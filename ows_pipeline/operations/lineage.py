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
