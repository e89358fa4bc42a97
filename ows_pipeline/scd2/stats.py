"""What one merge did."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class MergeStats:
    """What one merge did. `path` is `in_order` or `out_of_order`."""

    batch_id: str
    rows_in: int = 0
    opened: int = 0
    closed: int = 0
    tombstoned: int = 0
    unchanged: int = 0
    rejected: int = 0
    scd1_updated: int = 0
    path: str = "in_order"

    def as_metadata(self) -> dict:
        return {
            "batch_id": self.batch_id,
            "rows_in": self.rows_in,
            "versions_opened": self.opened,
            "versions_closed": self.closed,
            "versions_tombstoned": self.tombstoned,
            "rows_unchanged": self.unchanged,
            "rows_rejected": self.rejected,
            "scd1_updated": self.scd1_updated,
            "path": self.path,
        }
