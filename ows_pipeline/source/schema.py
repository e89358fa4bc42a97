"""The OWS source tables (DESIGN.md section 2), defined once for extraction and the demo generator.

Names are lower case so that SQLAlchemy does not quote them on Oracle. On Oracle the
tables live in `OWS_SOURCE_SCHEMA`: pass it as `schema_translate_map={None: schema}`.
All timestamps are UTC.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

metadata = sa.MetaData()

TS = sa.TIMESTAMP(timezone=True)


def _id(name: str, *args, **kw) -> sa.Column:
    return sa.Column(name, sa.Integer, *args, **kw)


ows_project = sa.Table(
    "ows_project",
    metadata,
    _id("project_id", primary_key=True, autoincrement=False),
    sa.Column("project_code", sa.String(30), nullable=False, unique=True),
    sa.Column("project_name", sa.String(200), nullable=False),
    sa.Column("business_unit", sa.String(50)),
    sa.Column("owner", sa.String(100)),
    sa.Column("active_flag", sa.String(1), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

ows_feed = sa.Table(
    "ows_feed",
    metadata,
    _id("feed_id", primary_key=True, autoincrement=False),
    _id("project_id", nullable=False),
    sa.Column("feed_code", sa.String(30), nullable=False),
    sa.Column("feed_name", sa.String(200), nullable=False),
    sa.Column("source_system", sa.String(50)),
    sa.Column("side", sa.String(10), nullable=False),
    sa.Column("expected_schedule", sa.String(50)),
    sa.Column("active_flag", sa.String(1), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.UniqueConstraint("project_id", "feed_code"),
)

ows_match_process = sa.Table(
    "ows_match_process",
    metadata,
    _id("match_process_id", primary_key=True, autoincrement=False),
    _id("project_id", nullable=False),
    sa.Column("process_code", sa.String(30), nullable=False),
    sa.Column("process_name", sa.String(200), nullable=False),
    _id("from_feed_id"),
    _id("to_feed_id"),
    sa.Column("rule_set_version", sa.String(20)),
    sa.Column("position", sa.Integer),
    sa.Column("active_flag", sa.String(1), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

ows_workflow = sa.Table(
    "ows_workflow",
    metadata,
    _id("workflow_id", primary_key=True, autoincrement=False),
    _id("project_id", nullable=False),
    sa.Column("workflow_code", sa.String(30), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("workflow_name", sa.String(200), nullable=False),
    sa.Column("begin_date", TS, nullable=False),
    sa.Column("end_date", TS),
    sa.Column("updated_at", TS, nullable=False),
    sa.UniqueConstraint("workflow_code", "version"),
)

ows_workflow_step = sa.Table(
    "ows_workflow_step",
    metadata,
    _id("step_id", primary_key=True, autoincrement=False),
    _id("workflow_id", nullable=False),
    sa.Column("step_label", sa.String(100), nullable=False),
    sa.Column("step_type", sa.String(10), nullable=False),
    _id("feed_id"),
    _id("match_process_id"),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

ows_workflow_run = sa.Table(
    "ows_workflow_run",
    metadata,
    _id("run_id", primary_key=True, autoincrement=False),
    _id("workflow_id", nullable=False),
    sa.Column("run_key", sa.String(60), nullable=False),
    _id("parent_run_id"),
    sa.Column("business_date", sa.Date, nullable=False),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("result_code", sa.String(30)),
    sa.Column("records_loaded", sa.Integer),
    sa.Column("matched_cnt", sa.Integer),
    sa.Column("suggested_cnt", sa.Integer),
    sa.Column("unmatched_cnt", sa.Integer),
    sa.Column("begin_date", TS, nullable=False),
    sa.Column("end_date", TS),
    sa.Column("last_update_date", TS, nullable=False),
    sa.Index("ix_ows_workflow_run_lud", "last_update_date"),
)

ows_run_step_status = sa.Table(
    "ows_run_step_status",
    metadata,
    _id("run_id", primary_key=True, autoincrement=False),
    _id("step_id", primary_key=True, autoincrement=False),
    sa.Column("activity_status", sa.String(10), nullable=False),
    sa.Column("result_code", sa.String(30)),
    sa.Column("assigned_user", sa.String(100)),
    sa.Column("error_name", sa.String(100)),
    sa.Column("error_message", sa.String(2000)),
    sa.Column("begin_date", TS),
    sa.Column("end_date", TS),
    sa.Column("last_update_date", TS, nullable=False),
    sa.Index("ix_ows_run_step_status_lud", "last_update_date"),
)

ows_run_step_history = sa.Table(
    "ows_run_step_history",
    metadata,
    _id("hist_id", primary_key=True, autoincrement=False),
    _id("run_id", nullable=False),
    _id("step_id", nullable=False),
    sa.Column("from_status", sa.String(10)),
    sa.Column("to_status", sa.String(10), nullable=False),
    sa.Column("result_code", sa.String(30)),
    sa.Column("changed_at", TS, nullable=False),
    sa.Column("changed_by", sa.String(100)),
)


@dataclass(frozen=True)
class SourceTable:
    """How one OWS table is extracted."""

    table: sa.Table
    mode: str  # "full", "incremental" (on `watermark_column`) or "append" (on an increasing id)
    watermark_column: str | None = None

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def key(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.table.primary_key.columns)


SOURCE_TABLES: tuple[SourceTable, ...] = (
    SourceTable(ows_project, "full"),
    SourceTable(ows_feed, "full"),
    SourceTable(ows_match_process, "full"),
    SourceTable(ows_workflow, "full"),
    SourceTable(ows_workflow_step, "full"),
    SourceTable(ows_workflow_run, "incremental", "last_update_date"),
    SourceTable(ows_run_step_status, "incremental", "last_update_date"),
    SourceTable(ows_run_step_history, "append", "hist_id"),
)

SOURCE_TABLES_BY_NAME = {t.name: t for t in SOURCE_TABLES}
