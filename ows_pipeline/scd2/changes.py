"""What one merge changed, key by key: opened, changed (old -> new), retired, reactivated."""

from __future__ import annotations

import sqlalchemy as sa

from ows_pipeline.warehouse.schema.scd2 import DimensionSpec


def batch_changes(conn: sa.Connection, spec: DimensionSpec, batch_id: str, limit: int = 50) -> tuple[int, list[dict]]:
    """(number of versions the batch opened, the first `limit` of them as rows for a table).

    Each row: the key, the change (`opened`, `changed`, `retired`, `reactivated`), `valid_from`, and
    for a change the tracked columns that differ as `column: old -> new`."""
    d = spec.table
    new, prev = d.alias("new"), d.alias("prev")
    keys = list(spec.natural_key)
    join = sa.and_(*[prev.c[k] == new.c[k] for k in keys], prev.c.valid_to == new.c.valid_from)
    total = conn.execute(sa.select(sa.func.count()).where(d.c.batch_id == batch_id)).scalar() or 0
    rows = conn.execute(
        sa.select(new, *[prev.c[c].label(f"prev_{c}") for c in spec.tracked],
                  prev.c.is_deleted.label("prev_deleted"), prev.c[spec.sk].label("prev_sk"))
        .select_from(new.outerjoin(prev, join))
        .where(new.c.batch_id == batch_id)
        .order_by(*[new.c[k] for k in keys], new.c.valid_from)
        .limit(limit)
    ).mappings().all()
    out = []
    for r in rows:
        if r["is_deleted"]:
            change, detail = "retired", ""
        elif r["prev_sk"] is None:
            change, detail = "opened", ", ".join(f"{c}: {r[c]}" for c in spec.tracked)
        elif r["prev_deleted"]:
            change, detail = "reactivated", ", ".join(f"{c}: {r[c]}" for c in spec.tracked)
        else:
            change = "changed"
            detail = ", ".join(f"{c}: {r['prev_' + c]} -> {r[c]}" for c in spec.tracked if r["prev_" + c] != r[c])
        out.append({"key": "|".join(str(r[k]) for k in keys), "change": change,
                    "valid_from": str(r["valid_from"]), "detail": detail[:200]})
    return int(total), out
