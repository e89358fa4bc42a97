"""The `upload_registry`: every file ever seen in the landing folder, its hash, status and place.

Statuses: RECEIVED (registered, its run requested), LOADED, REJECTED, DUPLICATE (the same
bytes as an earlier upload, not loaded again).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from typing import Optional

import sqlalchemy as sa

from ows_pipeline.warehouse.schema.uploads import upload_registry

RECEIVED = "RECEIVED"
LOADED = "LOADED"
REJECTED = "REJECTED"
DUPLICATE = "DUPLICATE"


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def sha256_of_file(path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def run_key_for(sha256: str) -> str:
    """The run key of an upload: its content hash, so the same bytes never load twice."""
    return f"upload-{sha256}"


def refusal_run_key(upload_id: int) -> str:
    """The run key of the run reporting a refusal made by the sensor itself (one per refused upload)."""
    return f"upload-refused-{upload_id}"


def register(conn: sa.Connection, **values) -> int:
    """Insert one registry row and return its `upload_id`."""
    values.setdefault("received_at", utc_now())
    result = conn.execute(sa.insert(upload_registry).values(**values).returning(upload_registry.c.upload_id))
    return int(result.scalar_one())


def get(conn: sa.Connection, upload_id: int) -> Optional[sa.Row]:
    return conn.execute(sa.select(upload_registry).where(upload_registry.c.upload_id == upload_id)).first()


def originals_by_sha(conn: sa.Connection, hashes: Iterable[str]) -> dict[str, sa.Row]:
    """For each hash, the first upload (not itself a duplicate) that carried those bytes."""
    hashes = sorted(set(hashes))
    found: dict[str, sa.Row] = {}
    for start in range(0, len(hashes), 500):
        query = (
            sa.select(upload_registry)
            .where(
                upload_registry.c.sha256.in_(hashes[start : start + 500]),
                upload_registry.c.status != DUPLICATE,
            )
            .order_by(upload_registry.c.upload_id)
        )
        for row in conn.execute(query):
            found.setdefault(row.sha256, row)
    return found


def unmoved_refusal(conn: sa.Connection, current_path: str) -> Optional[sa.Row]:
    """A refusal of the file at `current_path` that could not be moved out of its drop folder."""
    query = (
        sa.select(upload_registry)
        .where(upload_registry.c.current_path == current_path, upload_registry.c.status == REJECTED)
        .order_by(upload_registry.c.upload_id.desc())
        .limit(1)
    )
    return conn.execute(query).first()


def update(conn: sa.Connection, upload_id: int, **values) -> None:
    conn.execute(sa.update(upload_registry).where(upload_registry.c.upload_id == upload_id).values(**values))


def status_counts(conn: sa.Connection) -> dict[str, int]:
    query = sa.select(upload_registry.c.status, sa.func.count()).group_by(upload_registry.c.status)
    return {status: int(count) for status, count in conn.execute(query)}
