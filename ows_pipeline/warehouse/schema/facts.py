"""Warehouse tables of the facts stage, declared on the shared warehouse metadata.

`fct_workflow_run_weekly` is a weekly periodic snapshot: one row per workflow run active or
ended in the week, with its state as of the week's end. `week_start` is the partition key.
"""

from __future__ import annotations

import sqlalchemy as sa

from ows_pipeline.source.schema import TS
from ows_pipeline.warehouse.schema.base import metadata

fct_workflow_run_weekly = sa.Table(
    "fct_workflow_run_weekly",
    metadata,
    sa.Column("week_start", sa.Date, nullable=False),  # the partition key: the Sunday the week starts (local)
    sa.Column("week_end", TS, nullable=False),  # the instant the week ends, UTC (exclusive)
    sa.Column("run_id", sa.Integer, nullable=False),
    sa.Column("run_key", sa.String(60)),
    sa.Column("parent_run_id", sa.Integer),
    sa.Column("workflow_id", sa.Integer),
    sa.Column("workflow_code", sa.String(30)),
    sa.Column("workflow_version", sa.Integer),
    sa.Column("workflow_name", sa.String(200)),
    sa.Column("project_id", sa.Integer),
    sa.Column("project_code", sa.String(30)),
    sa.Column("project_name", sa.String(200)),
    sa.Column("feed_id", sa.Integer),
    sa.Column("feed_code", sa.String(30)),
    sa.Column("feed_name", sa.String(200)),
    sa.Column("match_process_id", sa.Integer),
    sa.Column("process_code", sa.String(30)),
    sa.Column("process_name", sa.String(200)),
    sa.Column("business_date", sa.Date),
    sa.Column("status", sa.String(10), nullable=False),  # as of the week's end
    sa.Column("result_code", sa.String(30)),  # as of the week's end; null while open
    sa.Column("reached_end_state", sa.Boolean, nullable=False),
    sa.Column("is_failed", sa.Boolean, nullable=False),
    sa.Column("is_break", sa.Boolean, nullable=False),
    sa.Column("records_loaded", sa.Integer),
    sa.Column("matched_cnt", sa.Integer),
    sa.Column("suggested_cnt", sa.Integer),
    sa.Column("unmatched_cnt", sa.Integer),
    sa.Column("begin_date", TS),
    sa.Column("end_date", TS),  # as of the week's end; null while open
    sa.Column("duration_minutes", sa.Float),
    sa.Column("sla_minutes", sa.Integer),
    sa.Column("sla_breached", sa.Boolean),  # null when no SLA list is loaded (unknown, not "no breach")
    sa.Column("failed_step", sa.String(100)),  # a failed run's step in error: its label, error and assigned user
    sa.Column("error_name", sa.String(100)),
    sa.Column("error_message", sa.String(2000)),
    sa.Column("assigned_user", sa.String(100)),
    sa.Column("project_sk", sa.BigInteger),
    sa.Column("feed_sk", sa.BigInteger),
    sa.Column("match_process_sk", sa.BigInteger),
    sa.Column("workflow_sk", sa.BigInteger),
    sa.Column("batch_id", sa.String(40), nullable=False),
    sa.Index("ux_fct_workflow_run_weekly_run", "week_start", "run_id", unique=True),
    sa.Index("ix_fct_workflow_run_weekly_project", "week_start", "project_code"),
)
