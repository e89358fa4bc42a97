"""SCD2 dimension tables: how one is declared (`declare_dimension`), and the batch log `scd2_batches`.

A dimension has the columns of DESIGN.md section 3 and a `<name>_seen` log, per batch, of the
keys a partial batch observed and the keys a full batch quarantined; the merge engine
(`ows_pipeline.scd2`) works on a `DimensionSpec`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import sqlalchemy as sa

from ows_pipeline.source.schema import TS
from ows_pipeline.warehouse.schema.base import metadata as warehouse_metadata

scd2_batches = sa.Table(
    "scd2_batches",
    warehouse_metadata,
    sa.Column("dimension", sa.String(100), primary_key=True),
    sa.Column("batch_id", sa.String(40), primary_key=True),
    sa.Column("as_of", TS, nullable=False),
    sa.Column("is_full", sa.Boolean, nullable=False),
    sa.Column("rows_in", sa.BigInteger),
    sa.Column("merged_at", TS, nullable=False),
    sa.Index("ix_scd2_batches_asof", "dimension", "is_full", "as_of"),
)



class Scd2Error(ValueError):
    """A batch the engine refuses, with the fix in the message."""



@dataclass(frozen=True)
class DimensionSpec:
    """One SCD2 dimension: its table, natural key and which columns make history.

    - `tracked`: a change opens a new version (hashed into `row_hash`);
    - `scd1`: overwritten in place, on the current version (`scd1_scope='current'`) or on all
      versions of the key (`'all'`), never opening a version;
    - `untracked`: stored as the opening row had them (e.g. `created_at`, `updated_at`).
    """

    name: str
    table: sa.Table
    seen_table: sa.Table
    sk: str
    natural_key: tuple[str, ...]
    tracked: tuple[str, ...]
    scd1: tuple[str, ...] = ()
    untracked: tuple[str, ...] = ()
    updated_at: Optional[str] = "updated_at"
    scd1_scope: str = "current"

    @property
    def attributes(self) -> tuple[str, ...]:
        return self.tracked + self.scd1 + self.untracked

    @property
    def asset_key(self) -> str:
        return self.name



def declare_dimension(
    name: str,
    sk: str,
    key_columns: Sequence[sa.Column],
    attribute_columns: Sequence[sa.Column],
    tracked: Sequence[str],
    scd1: Sequence[str] = (),
    updated_at: Optional[str] = "updated_at",
    scd1_scope: str = "current",
    metadata: sa.MetaData = warehouse_metadata,
) -> DimensionSpec:
    """Declare `name` (SCD2 columns of DESIGN.md section 3) and its `<name>_seen` log on `metadata`."""
    keys = [k.name for k in key_columns]
    attrs = [a.name for a in attribute_columns]
    missing = [c for c in list(tracked) + list(scd1) if c not in attrs]
    if missing:
        raise Scd2Error(f"{name}: tracked/SCD1 columns {missing} are not attributes {attrs}")
    if scd1_scope not in ("current", "all"):
        raise Scd2Error(f"{name}: scd1_scope must be 'current' or 'all', not {scd1_scope!r}")
    sk_type = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    table = sa.Table(
        name,
        metadata,
        sa.Column(sk, sk_type, sa.Identity(), primary_key=True),
        *[sa.Column(k.name, k.type, nullable=False) for k in key_columns],
        *[sa.Column(a.name, a.type, nullable=True) for a in attribute_columns],
        sa.Column("row_hash", sa.String(32), nullable=False),
        sa.Column("valid_from", TS, nullable=False),
        sa.Column("valid_to", TS, nullable=True),
        sa.Column("is_current", sa.Boolean, nullable=False),
        sa.Column("is_deleted", sa.Boolean, nullable=False),
        sa.Column("batch_id", sa.String(40), nullable=False),
        sa.Index(
            f"ux_{name}_current",
            *keys,
            unique=True,
            sqlite_where=sa.text("is_current = 1"),
            postgresql_where=sa.text("is_current"),
        ),
        sa.Index(f"ux_{name}_key_from", *keys, "valid_from", unique=True),
    )
    seen = sa.Table(
        f"{name}_seen",
        metadata,
        *[sa.Column(k.name, k.type, primary_key=True, autoincrement=False) for k in key_columns],
        sa.Column("batch_id", sa.String(40), primary_key=True),
        sa.Column("as_of", TS, nullable=False),
        sa.Column("observed", sa.Boolean, nullable=False),
        sa.Index(f"ix_{name}_seen_as_of", *keys, "as_of"),
    )
    untracked = tuple(a for a in attrs if a not in tracked and a not in scd1)
    return DimensionSpec(
        name=name,
        table=table,
        seen_table=seen,
        sk=sk,
        natural_key=tuple(keys),
        tracked=tuple(tracked),
        scd1=tuple(scd1),
        untracked=untracked,
        updated_at=updated_at if updated_at in attrs else None,
        scd1_scope=scd1_scope,
    )
