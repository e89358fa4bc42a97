"""The shared scenario of the fact tests (no tests here): a small OWS history, written into the
warehouse's input tables as they would be at any instant.

`load_inputs_as_of(engine, at)` replaces the staging tables, the dimensions and `ref_feed_sla`
with what the pipeline would hold after extracting the source at `at`: runs begun before `at`
with their row as of `at`, step history before `at`, dimension versions opened before `at`.
The week used is 2025-06-01 (British Summer Time): 2025-05-31 23:00Z to 2025-06-07 23:00Z.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import sqlalchemy as sa

from ows_pipeline.warehouse.schema.dimensions import DIMENSIONS as DIMENSION_SPECS
from ows_pipeline.warehouse.schema.staging import STAGING_TABLES
from ows_pipeline.warehouse.schema import create_warehouse_tables, metadata

UTC = dt.timezone.utc
WEEK = "2025-06-01"
WEEK_START_UTC = dt.datetime(2025, 5, 31, 23, 0, tzinfo=UTC)
WEEK_END_UTC = dt.datetime(2025, 6, 7, 23, 0, tzinfo=UTC)


def at(day: int, hour: int = 0, minute: int = 0, month: int = 6) -> dt.datetime:
    return dt.datetime(2025, month, day, hour, minute, tzinfo=UTC)


EPOCH = at(1, month=1)

# Workflow 10 (project 1): LOAD feed 1001, MATCH process 501, NOTICE. Workflow 20 (project 2): LOAD only.
STEPS = [
    dict(step_id=101, workflow_id=10, step_label="Load bank", step_type="LOAD", feed_id=1001, match_process_id=None, seq=1),
    dict(step_id=100, workflow_id=10, step_label="Load ledger", step_type="LOAD", feed_id=1002, match_process_id=None, seq=2),
    dict(step_id=102, workflow_id=10, step_label="Match", step_type="MATCH", feed_id=None, match_process_id=501, seq=3),
    dict(step_id=103, workflow_id=10, step_label="Notify", step_type="NOTICE", feed_id=None, match_process_id=None, seq=4),
    dict(step_id=201, workflow_id=20, step_label="Load cards", step_type="LOAD", feed_id=2001, match_process_id=None, seq=1),
]


@dataclass
class Run:
    run_id: int
    workflow_id: int
    begin: dt.datetime
    steps: list[tuple[dt.datetime, int, str, str | None]] = field(default_factory=list)  # (when, step, to, result)
    end: tuple[dt.datetime, str, str, tuple[int, int, int, int]] | None = None  # (when, status, result, counts)

    def row_as_of(self, when: dt.datetime) -> dict:
        """The OWS run row as it was at `when` (counts move while the run is open)."""
        seen = [s for s in self.steps if s[0] < when]
        row = dict(
            run_id=self.run_id,
            workflow_id=self.workflow_id,
            run_key=f"RUN-{self.run_id}",
            parent_run_id=None,
            business_date=(self.begin - dt.timedelta(days=1)).date(),
            begin_date=self.begin,
            last_update_date=max([self.begin] + [s[0] for s in seen]),
        )
        if self.end and self.end[0] < when:
            end_at, status, result, counts = self.end
            loaded, matched, suggested, unmatched = counts
            return row | dict(
                status=status, result_code=result, end_date=end_at, last_update_date=end_at,
                records_loaded=loaded, matched_cnt=matched, suggested_cnt=suggested, unmatched_cnt=unmatched,
            )
        status = "SUSPEND" if seen and seen[-1][2] == "SUSPEND" else "ACTIVE"  # as OWS shows an open run
        return row | dict(
            status=status, result_code=None, end_date=None,
            records_loaded=len(seen) * 10, matched_cnt=len(seen), suggested_cnt=0, unmatched_cnt=None,
        )


RUNS = [
    # Open at the week's end (MATCH still running), complete the week after.
    Run(1, 10, at(3, 10), [(at(3, 10, 1), 101, "ACTIVE", None), (at(3, 11), 101, "COMPLETE", None),
                           (at(3, 11, 1), 102, "ACTIVE", None), (at(9, 8), 102, "COMPLETE", "MATCHED")],
        end=(at(9, 8, 5), "COMPLETE", "MATCHED", (100, 90, 5, 5))),
    # Begun and ended in the week with breaks, an SLA of 60 minutes breached.
    Run(2, 10, at(2, 6), [(at(2, 6, 1), 101, "COMPLETE", None), (at(2, 9), 102, "COMPLETE", "BREAKS")],
        end=(at(4, 9), "COMPLETE", "BREAKS", (50, 40, 2, 8))),
    # A step in error at the week's end; retried and completed afterwards.
    Run(3, 20, at(5, 12), [(at(5, 12, 1), 201, "ACTIVE", None), (at(5, 12, 30), 201, "ERROR", "#EXCEPTION"),
                           (at(10, 9), 201, "ACTIVE", None), (at(10, 10), 201, "COMPLETE", "MATCHED")],
        end=(at(10, 10, 1), "COMPLETE", "MATCHED", (70, 70, 0, 0))),
    # Ended before the week: not in it.
    Run(4, 20, at(20, 1, month=5), [(at(20, 2, month=5), 201, "COMPLETE", None)],
        end=(at(25, 1, month=5), "COMPLETE", "MATCHED", (1, 1, 0, 0))),
    # Begun before the week, suspended in it, completed the next day.
    Run(5, 10, at(30, 8, month=5), [(at(30, 9, month=5), 101, "COMPLETE", None), (at(6, 7), 102, "SUSPEND", None),
                                    (at(8, 7), 102, "COMPLETE", "PARTIAL")],
        end=(at(8, 8), "COMPLETE", "PARTIAL", (10, 8, 1, 1))),
    # Begun after the week: not in it.
    Run(6, 20, at(9, 1), [(at(9, 2), 201, "ACTIVE", None)]),
    # Begun 30 minutes before the week ends (23:00Z in summer), ended after it: open at the week's end.
    Run(7, 20, at(7, 22, 30), [(at(7, 22, 31), 201, "ACTIVE", None), (at(7, 23, 20), 201, "COMPLETE", "MATCHED")],
        end=(at(7, 23, 30), "COMPLETE", "MATCHED", (3, 3, 0, 0))),
    # Begun at 00:30 local on the Sunday after the week (23:30Z): next week.
    Run(8, 20, at(7, 23, 30), [(at(7, 23, 31), 201, "ACTIVE", None)]),
    # Timed out before the week's end: ended, failed.
    Run(9, 20, at(7, 20), [(at(7, 20, 1), 201, "ACTIVE", None), (at(7, 22, 50), 201, "ERROR", "#TIMEOUT")],
        end=(at(7, 22, 50), "ERROR", "#TIMEOUT", (0, 0, 0, 0))),
    # Ended exactly when the week starts: ended in the week.
    Run(10, 20, at(31, 20, month=5), [(at(31, 21, month=5), 201, "COMPLETE", "MATCHED")],
        end=(WEEK_START_UTC, "COMPLETE", "MATCHED", (5, 5, 0, 0))),
]

# SCD2 versions: (sk, natural key, attributes, valid_from, valid_to)
PROJECT_VERSIONS = [
    (1, 1, dict(project_code="PAY", project_name="Payments"), EPOCH, at(10, 12)),
    (2, 1, dict(project_code="PAY", project_name="Payments & Cards"), at(10, 12), None),
    (3, 2, dict(project_code="CRD", project_name="Cards"), EPOCH, None),
]
FEED_VERSIONS = [
    (11, 1001, dict(project_id=1, feed_code="BANK", feed_name="Bank statement"), EPOCH, None),
    (12, 1002, dict(project_id=1, feed_code="LEDGER", feed_name="General ledger"), EPOCH, None),
    (13, 2001, dict(project_id=2, feed_code="CARDS", feed_name="Card file"), EPOCH, at(6, 12)),
    (14, 2001, dict(project_id=2, feed_code="CARDS", feed_name="Card file v2"), at(6, 12), None),
]
MATCH_VERSIONS = [
    (31, 501, dict(project_id=1, process_code="BANK_GL", process_name="Bank to ledger"), EPOCH, None),
]
WORKFLOW_VERSIONS = [
    (21, 10, dict(project_id=1, workflow_code="PAY_DAILY", version=1, workflow_name="Payments daily"), EPOCH, None),
    (22, 20, dict(project_id=2, workflow_code="CRD_DAILY", version=3, workflow_name="Cards daily"), EPOCH, at(9, 0)),
    (23, 20, dict(project_id=2, workflow_code="CRD_DAILY", version=3, workflow_name="Cards daily (new)"), at(9, 0), None),
]
SLAS = [dict(feed_code="BANK", expected_arrival_time="06:00", sla_minutes=60, owner_team="Payments ops")]


def _fill(table: sa.Table, row: dict) -> dict:
    """`row` plus a value for every other NOT NULL column the declared table has."""
    full = dict(row)
    for column in table.columns:
        if column.name in full or column.nullable or column.autoincrement is True or column.server_default is not None:
            continue
        if column.primary_key and isinstance(column.type, sa.Integer) and len(table.primary_key.columns) == 1:
            continue
        python_type = column.type.python_type
        if python_type is bool:
            value = False
        elif python_type is int or python_type is float:
            value = 0
        elif python_type is dt.datetime:
            value = EPOCH
        elif python_type is dt.date:
            value = EPOCH.date()
        else:
            value = "x"
        full[column.name] = value
    return full


DIMENSION_VERSIONS = {
    "dim_project": ("project_id", PROJECT_VERSIONS),
    "dim_feed": ("feed_id", FEED_VERSIONS),
    "dim_match_process": ("match_process_id", MATCH_VERSIONS),
    "dim_workflow": ("workflow_id", WORKFLOW_VERSIONS),
}


def load_inputs_as_of(engine: sa.Engine, when: dt.datetime, with_sla: bool = True) -> None:
    """Replace the fact's inputs with what the pipeline would hold after extracting at `when`."""
    create_warehouse_tables(engine)
    stg = STAGING_TABLES
    runs = [r.row_as_of(when) for r in RUNS if r.begin < when]
    history = []
    for r in RUNS:
        for i, (changed_at, step, to_status, result) in enumerate(r.steps):
            if changed_at < when:
                history.append(dict(hist_id=r.run_id * 100 + i, run_id=r.run_id, step_id=step, from_status=None,
                                    to_status=to_status, result_code=result, changed_at=changed_at, changed_by="ows"))
    workflows = [dict(workflow_id=wid, project_id=pid, workflow_code=code, version=1, workflow_name=code,
                      begin_date=EPOCH, end_date=None, updated_at=EPOCH)
                 for wid, pid, code in ((10, 1, "PAY_DAILY"), (20, 2, "CRD_DAILY"))]
    steps = [s | dict(updated_at=EPOCH) for s in STEPS]
    with engine.begin() as conn:
        for name, rows in (("ows_workflow_run", runs), ("ows_run_step_history", history),
                           ("ows_workflow", workflows), ("ows_workflow_step", steps)):
            table = stg[name]
            conn.execute(sa.delete(table))
            if rows:
                conn.execute(sa.insert(table), [_fill(table, r | {"_batch_id": "test"}) for r in rows])
        for name, (key, versions) in DIMENSION_VERSIONS.items():
            table = DIMENSION_SPECS[name].table
            conn.execute(sa.delete(table))
            rows = []
            for sk, natural_key, attrs, valid_from, valid_to in versions:
                if valid_from >= when:
                    continue  # not loaded yet
                still_open = valid_to is None or valid_to >= when
                rows.append(_fill(table, {f"{name[4:]}_sk": sk, key: natural_key, **attrs, "valid_from": valid_from,
                                          "valid_to": None if still_open else valid_to, "is_current": still_open}))
            conn.execute(sa.insert(table), rows)
        sla = metadata.tables.get("ref_feed_sla")
        if sla is not None:
            conn.execute(sa.delete(sla))
            if with_sla:
                conn.execute(sa.insert(sla), [_fill(sla, s) for s in SLAS])
