"""SCD type 1 columns: overwritten in place, never opening a version."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Optional, Union

import sqlalchemy as sa

from ows_pipeline.scd2.batch import _copy_columns, _temp_table, write_canonical
from ows_pipeline.scd2.sql import _count, _lock
from ows_pipeline.warehouse.schema.scd2 import DimensionSpec, Scd2Error

if TYPE_CHECKING:
    import pandas as pd


def scd1_statement(spec: DimensionSpec, source: sa.FromClause, match_on: Sequence[str], columns: Sequence[str], scope: str):
    """UPDATE the SCD1 `columns` of the dimension from `source` (matched on `match_on`), only where they differ."""
    d = spec.table
    match = sa.and_(*[source.c[m] == d.c[m] for m in match_on])
    differs = sa.or_(*[source.c[col].is_distinct_from(d.c[col]) for col in columns])
    where = [sa.exists().where(match, differs)]
    if scope == "current":
        where.append(d.c.is_current)
    values = {col: sa.select(source.c[col]).where(match).limit(1).scalar_subquery() for col in columns}
    return d.update().where(*where).values(**values)


def apply_scd1(
    target: Union[sa.Engine, sa.Connection],
    spec: DimensionSpec,
    rows: Union[pd.DataFrame, Iterable[Mapping]],
    match_on: Sequence[str],
    columns: Optional[Sequence[str]] = None,
    scope: Optional[str] = None,
) -> int:
    """Overwrite SCD1 `columns` in place from `rows` matched on `match_on` (e.g. `project_code`).

    No version opens or closes. `scope`: 'current' (the current version) or 'all' (every
    version of the key); default: the spec's `scd1_scope`. Returns the number of rows updated.
    """
    import pandas as pd
    columns = tuple(columns or spec.scd1)
    scope = scope or spec.scd1_scope
    frame = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    missing = [c for c in list(match_on) + list(columns) if c not in frame.columns]
    if missing:
        raise Scd2Error(f"{spec.name}: SCD1 rows lack column(s) {missing}")
    frame = frame[list(match_on) + list(columns)].drop_duplicates(list(match_on), keep="last")
    src = _temp_table("_scd1_source", *_copy_columns(spec, list(match_on) + list(columns)))

    def run(conn: sa.Connection) -> int:
        _lock(conn, spec)
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {src.name}")
        src.create(conn)
        write_canonical(conn, spec, src, frame, list(match_on) + list(columns))
        n = _count(conn, scd1_statement(spec, src, match_on, columns, scope))
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {src.name}")
        return n

    if isinstance(target, sa.Engine):
        with target.connect() as conn:
            try:
                n = run(conn)
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
        return n
    return run(target)
