"""A small, obviously correct reference model of SCD2 history, and helpers shared by the SCD2 tests.

The model keeps every batch and recomputes history from scratch: observations of each key in
as-of order, versions = runs of equal state, first version opening at `updated_at` when it lies
after the previous observation and not after the as-of time. Batches sharing an as-of are taken
in load order (the first load of each batch; a re-run is not a new load): for each key, the last
of them that observes it wins; a batch that quarantined the key or (partial) does not hold it
does not observe it.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections import defaultdict
from dataclasses import dataclass

import sqlalchemy as sa

from ows_pipeline.scd2 import declare_dimension, scd2_batches
from ows_pipeline.warehouse.schema import create_warehouse_tables, data_errors, etl_batches

BASE = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)

test_metadata = sa.MetaData()
SPEC = declare_dimension(
    name="dim_thing",
    sk="thing_sk",
    key_columns=[sa.Column("thing_id", sa.Integer)],
    attribute_columns=[
        sa.Column("label", sa.String(20)),
        sa.Column("size", sa.Integer),
        sa.Column("updated_at", sa.TIMESTAMP(timezone=True)),
    ],
    tracked=("label", "size"),
    metadata=test_metadata,
)


def hours(n: float) -> dt.datetime:
    return BASE + dt.timedelta(hours=n)


def updated_at_for(key: int, label, size):
    """The source's updated_at of a state: a function of (key, state), sometimes missing or in the future."""
    code = zlib.crc32(repr((key, label, size)).encode())
    if code % 5 == 0:
        return None
    return hours(code % 40)


@dataclass(frozen=True)
class Batch:
    as_of: int  # hours after BASE
    full: bool
    rows: tuple  # (thing_id, label, size)
    tag: str = ""  # tells batches sharing an as-of apart

    @property
    def batch_id(self) -> str:
        return f"b{self.as_of}{self.tag}"

    def records(self):
        return [
            {"thing_id": k, "label": a, "size": b, "updated_at": updated_at_for(k, a, b)} for k, a, b in self.rows
        ]

    def observed(self) -> dict:
        """Rows per key, duplicated keys left out (they are quarantined, not observed)."""
        counts = defaultdict(int)
        for k, _, _ in self.rows:
            counts[k] += 1
        return {k: (a, b) for k, a, b in self.rows if counts[k] == 1}

    def duplicated(self) -> set:
        counts = defaultdict(int)
        for k, _, _ in self.rows:
            counts[k] += 1
        return {k for k, n in counts.items() if n > 1}


def load_order(batches: list[Batch]) -> list[Batch]:
    """The batches as first loaded: a batch id seen before is a re-run, not a new load."""
    seen, out = set(), []
    for b in batches:
        if b.batch_id not in seen:
            seen.add(b.batch_id)
            out.append(b)
    return out


def _observation(group: list[Batch], key):
    """What the batches sharing one as-of (in load order) say of `key`: a state, 'dead', or None."""
    found = None
    for b in group:
        seen = b.observed()
        if key in seen:
            found = ("live", seen[key])
        elif b.full and key not in b.duplicated():  # a quarantined key is not observed
            found = ("dead", None)
    return found


def reference_history(batches: list[Batch]) -> list[tuple]:
    """(thing_id, label, size, valid_from, valid_to, is_current, is_deleted) rows, sorted."""
    batches = load_order(batches)
    keys = set()
    for b in batches:
        keys |= set(b.observed())
    times = sorted({b.as_of for b in batches})
    groups = [[b for b in batches if b.as_of == a] for a in times]
    out = []
    for key in sorted(keys):
        versions = []  # [valid_from, state, dead]
        prev_t = None
        for a, group in zip(times, groups):
            t = hours(a)
            found = _observation(group, key)
            if found is None:
                continue
            dead, state = found[0] == "dead", found[1]
            last = versions[-1] if versions else None
            if last is None and dead:
                prev_t = t
                continue
            if last is None or last[2] != dead or (not dead and last[1] != state):
                u = None if dead else updated_at_for(key, *state)
                vf = u if (u is not None and u <= t and (prev_t is None or u > prev_t)) else t
                versions.append([vf, last[1] if dead else state, dead])
            prev_t = t
        for i, (vf, state, dead) in enumerate(versions):
            vt = versions[i + 1][0] if i + 1 < len(versions) else None
            out.append((key, state[0], state[1], vf, vt, vt is None, dead))
    return sorted(out, key=lambda r: (r[0], r[3]))


def _utc(v):
    if v is None:
        return None
    return v.replace(tzinfo=dt.timezone.utc) if v.tzinfo is None else v.astimezone(dt.timezone.utc)


def engine_history(conn: sa.Connection) -> list[tuple]:
    d = SPEC.table
    rows = conn.execute(
        sa.select(d.c.thing_id, d.c.label, d.c.size, d.c.valid_from, d.c.valid_to, d.c.is_current, d.c.is_deleted)
        .order_by(d.c.thing_id, d.c.valid_from)
    ).all()
    return [(r[0], r[1], r[2], _utc(r[3]), _utc(r[4]), bool(r[5]), bool(r[6])) for r in rows]


def fast_sqlite_engine(url: str) -> sa.Engine:
    """A SQLite engine for many small merges: no fsync per commit (tests only)."""
    engine = sa.create_engine(url)

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA synchronous = OFF")
        cur.execute("PRAGMA journal_mode = MEMORY")
        cur.close()

    create_tables(engine)
    return engine


def create_tables(engine: sa.Engine) -> None:
    create_warehouse_tables(engine)
    test_metadata.create_all(engine)


def clear_tables(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for t in (SPEC.table, SPEC.seen_table):
            conn.execute(t.delete())
        conn.execute(scd2_batches.delete().where(scd2_batches.c.dimension == SPEC.name))
        conn.execute(etl_batches.delete().where(etl_batches.c.asset_key == SPEC.name))
        conn.execute(data_errors.delete().where(data_errors.c.asset_key == SPEC.name))


def test_reference_model_on_a_worked_example():
    """The model itself: change, deletion with tombstone, resurrection, a late batch slotted in."""
    batches = [
        Batch(10, True, ((1, "a", 1), (2, "b", None))),
        Batch(30, True, ((1, "a", 2),)),
        Batch(40, True, ((1, "a", 2), (2, "b", None))),
        Batch(20, False, ((1, "z", 9),)),
    ]
    hist = reference_history(batches)
    key1 = [(r[1], r[2], r[6]) for r in hist if r[0] == 1]
    key2 = [(r[1], r[2], r[6]) for r in hist if r[0] == 2]
    assert key1 == [("a", 1, False), ("z", 9, False), ("a", 2, False)]
    assert key2 == [("b", None, False), ("b", None, True), ("b", None, False)]
    tomb = [r for r in hist if r[0] == 2 and r[6]][0]
    assert tomb[3] == hours(30) and tomb[4] == hours(40)
    assert [r[5] for r in hist if r[0] == 1] == [False, False, True]
