"""An independent oracle of the weekly workbook: what it must say, computed from the OWS source.

Nothing here reads the warehouse or calls the project's queries. The inputs are copies of the
OWS source database taken each time the pipeline ran (`SourceSnapshot`: a SQLite file and the
instant it was taken), the feed SLA list the test loaded (or None), and the week. From them,
in plain Python over the source rows:

- a run belongs to the week when it began before the week's end and had not ended before its
  start; at the week's end it had ended when its end date is before the week's end (then its
  final status, end state and counts), else it was open: SUSPEND when its latest step transition
  before the week's end was a suspension, else ACTIVE (DESIGN.md section 3);
- projects, feeds, match processes, workflows and steps are as the latest snapshot holding the
  key shows them with `updated_at` at or before the instant asked about;
- the week's changes are the differences between the reference data at the week's start and at
  its end (dated by `updated_at`), keys that left the extract between the pipeline run before the
  week's and the week's own run (dated by that run), and carried-over runs whose state changed.

`compare_workbook` reads the workbook with openpyxl and returns every difference, cell by cell.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from typing import Optional
from zoneinfo import ZoneInfo

import openpyxl
import sqlalchemy as sa

UTC = dt.timezone.utc
FAILED_RESULTS = {"#EXCEPTION", "#TIMEOUT"}
BREAK_RESULTS = {"BREAKS", "PARTIAL"}
ACTIVITY_STATUSES = {"COMPLETE", "ACTIVE", "WAITING", "NOTIFIED", "SUSPEND", "DEFERRED", "ERROR"}  # DESIGN.md 2
REFERENCE = {  # source table -> (natural key, entity label, code column, name column)
    "ows_project": ("project_id", "Project", "project_code", "project_name"),
    "ows_feed": ("feed_id", "Feed", "feed_code", "feed_name"),
    "ows_match_process": ("match_process_id", "Match process", "process_code", "process_name"),
    "ows_workflow": ("workflow_id", "Workflow", "workflow_code", "workflow_name"),
}
NOT_COMPARED = {"created_at", "updated_at", "active_flag"}


def _utc(value):
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


@dataclass
class SourceSnapshot:
    """The OWS source as it was when the pipeline extracted it (`taken`: the source clock then)."""

    taken: dt.datetime
    url: str

    @cached_property
    def tables(self) -> dict[str, list[dict]]:
        engine = sa.create_engine(self.url)
        names = ["ows_project", "ows_feed", "ows_match_process", "ows_workflow", "ows_workflow_step",
                 "ows_workflow_run", "ows_run_step_status", "ows_run_step_history"]
        out = {}
        with engine.connect() as conn:
            for name in names:
                rows = conn.execute(sa.text(f"SELECT * FROM {name}")).mappings()
                out[name] = [{k: (_utc(v) if k.endswith(("_at", "_date")) and k != "business_date" else v)
                              for k, v in r.items()} for r in rows]
        engine.dispose()
        return out


@dataclass
class ExportSnapshot:
    """A late `ows_export` upload: some OWS tables as they were at the file's business time `taken`."""

    taken: dt.datetime
    tables: dict[str, list[dict]]


@dataclass
class Version:
    """One state of a reference key: from `effective` on; `by_run` when only a pipeline run could date it."""

    effective: dt.datetime
    row: dict
    deleted: bool = False
    by_run: bool = False


@dataclass(frozen=True)
class OracleWeek:
    key: str
    start: dt.datetime
    end: dt.datetime
    tz: ZoneInfo

    @classmethod
    def of(cls, key: str, timezone: str) -> "OracleWeek":
        zone = ZoneInfo(timezone)
        day = dt.date.fromisoformat(key)
        start = dt.datetime.combine(day, dt.time(), zone).astimezone(UTC)
        end = dt.datetime.combine(day + dt.timedelta(days=7), dt.time(), zone).astimezone(UTC)
        return cls(key, start, end, zone)

    def before(self) -> "OracleWeek":
        return OracleWeek.of((dt.date.fromisoformat(self.key) - dt.timedelta(days=7)).isoformat(), self.tz.key)

    def local(self, value: Optional[dt.datetime]) -> Optional[dt.datetime]:
        return None if value is None else value.astimezone(self.tz).replace(tzinfo=None)


@dataclass
class Oracle:
    """What the workbook of one week must say."""

    snapshots: list[SourceSnapshot]  # every extraction so far, oldest first; the last is the source now
    week: OracleWeek
    sla: Optional[dict[str, int]] = None  # feed code -> minutes, None when no SLA list is loaded
    last_week_built: bool = True
    last_week_sla: Optional[dict[str, int]] = None  # the SLA list when last week was built
    exports: list[ExportSnapshot] = field(default_factory=list)

    # ------------------------------------------------------------------ reference data as of an instant

    def timeline(self, table: str) -> dict[object, list[Version]]:
        """Every state of every key of `table`, observation by observation (runs' copies and late exports,
        in business-time order): a key moves at its `updated_at` when that moved forward, else at the
        observation's time (a key gone from a full list, back in it, or reverted)."""
        key = REFERENCE.get(table, ("step_id",))[0]
        observations = [(s.taken, True, s.tables[table]) for s in self.snapshots]
        observations += [(e.taken, False, e.tables[table]) for e in self.exports if table in e.tables]
        versions: dict = {}
        for taken, is_run, rows in sorted(observations, key=lambda o: o[0]):
            seen = set()
            for row in rows:
                k = row[key]
                seen.add(k)
                history = versions.setdefault(k, [])
                last = history[-1] if history else None
                if last is not None and not last.deleted and _same(last.row, row):
                    continue
                moved = last is None or row["updated_at"] > last.effective
                effective = row["updated_at"] if moved else taken
                history.append(Version(effective, row, by_run=is_run and not moved))
            for k, history in versions.items():
                if k not in seen and not history[-1].deleted:
                    history.append(Version(taken, history[-1].row, deleted=True, by_run=is_run))
        return versions

    def state_at(self, table: str, at: dt.datetime, include_gone: bool = True) -> dict:
        """Rows of reference `table` by key as they were at `at` (a key gone from the extract keeps its
        last row, as its dimension's closing version does, unless `include_gone` is false)."""
        found = {}
        for k, history in self.timeline(table).items():
            valid = [v for v in history if v.effective <= at]
            if valid and (include_gone or not valid[-1].deleted):
                found[k] = valid[-1].row
        return found

    @property
    def now(self) -> dict[str, list[dict]]:
        return self.snapshots[-1].tables

    # ------------------------------------------------------------------ runs at the week's end

    def runs(self, week: Optional[OracleWeek] = None) -> list[dict]:
        sla = self.sla if week is None else self.last_week_sla
        week = week or self.week
        last_move: dict = {}
        for h in sorted(self.now["ows_run_step_history"], key=lambda h: h["hist_id"]):
            if h["changed_at"] < week.end:
                last_move[h["run_id"]] = h["to_status"]
        errors: dict = {}
        steps_now = {s["step_id"]: s for s in self.now["ows_workflow_step"]}
        for s in sorted(self.now["ows_run_step_status"], key=lambda s: (s["last_update_date"], s["step_id"])):
            if s["activity_status"] == "ERROR":
                errors[s["run_id"]] = s
        workflows = self.state_at("ows_workflow", week.end)
        projects = self.state_at("ows_project", week.end)
        feeds = self.state_at("ows_feed", week.end)
        processes = self.state_at("ows_match_process", week.end)
        steps = self.state_at("ows_workflow_step", week.end)
        first_step: dict = {}
        for s in sorted(steps.values(), key=lambda s: (s["seq"], s["step_id"])):
            for kind, column in (("LOAD", "feed_id"), ("MATCH", "match_process_id")):
                if s["step_type"] == kind and s[column] is not None:
                    first_step.setdefault((s["workflow_id"], column), s[column])
        out = []
        for r in self.now["ows_workflow_run"]:
            if not (r["begin_date"] < week.end and (r["end_date"] is None or r["end_date"] >= week.start)):
                continue
            ended = r["end_date"] is not None and r["end_date"] < week.end
            if ended:
                status, result = r["status"], r["result_code"]
            else:
                status, result = ("SUSPEND" if last_move.get(r["run_id"]) == "SUSPEND" else "ACTIVE"), None
            failed = status == "ERROR" or result in FAILED_RESULTS
            wf = workflows.get(r["workflow_id"], {})
            feed_id = first_step.get((r["workflow_id"], "feed_id"))
            mp_id = first_step.get((r["workflow_id"], "match_process_id"))
            feed = feeds.get(feed_id, {})
            duration = round(((r["end_date"] if ended else week.end) - r["begin_date"]).total_seconds() / 60, 2)
            sla_minutes = None if sla is None else sla.get(feed.get("feed_code"))
            error = errors.get(r["run_id"]) if failed else None
            step = steps_now.get(error["step_id"], {}) if error else {}
            out.append(dict(
                run_id=r["run_id"], run_key=r["run_key"], workflow_id=r["workflow_id"],
                workflow_code=wf.get("workflow_code"), version=wf.get("version"), workflow_name=wf.get("workflow_name"),
                project_id=wf.get("project_id"), project_code=projects.get(wf.get("project_id"), {}).get("project_code"),
                project_name=projects.get(wf.get("project_id"), {}).get("project_name"),
                feed_id=feed_id, feed_code=feed.get("feed_code"), match_process_id=mp_id,
                process_code=processes.get(mp_id, {}).get("process_code"),
                business_date=r["business_date"], status=status, result=result, ended=ended, failed=failed,
                is_break=result in BREAK_RESULTS, begin=r["begin_date"], end=r["end_date"] if ended else None,
                duration=duration, sla=sla_minutes, sla_breached=None if sla_minutes is None else duration > sla_minutes,
                counts=[r[c] if ended else None for c in ("records_loaded", "matched_cnt", "suggested_cnt",
                                                          "unmatched_cnt")],
                failed_step=step.get("step_label"), error_name=error and error["error_name"],
                error_message=error and error["error_message"], assigned_user=error and error["assigned_user"],
            ))
        return out

    # ------------------------------------------------------------------ what the sheets must hold

    def kpis(self, week: Optional[OracleWeek] = None) -> dict[str, object]:
        """The KPIs of the week (or of `week`, last week, with the SLA list it was built with)."""
        runs = self.runs(week)
        ended = [r for r in runs if r["ended"]]
        matched = sum(r["counts"][1] or 0 for r in ended)
        total = matched + sum((r["counts"][2] or 0) + (r["counts"][3] or 0) for r in ended)
        known = [r for r in runs if r["sla_breached"] is not None]
        return {
            "Runs": len(runs),
            "Completed": sum(1 for r in ended if not r["failed"]),
            "Failed": sum(1 for r in runs if r["failed"]),
            "Open": sum(1 for r in runs if not r["ended"]),
            "Breaks": sum(1 for r in runs if r["is_break"]),
            "Match rate": matched / total if total else None,
            "SLA breaches": sum(1 for r in known if r["sla_breached"]) if known else None,
        }

    def kpi_table(self) -> dict[str, tuple]:
        this = self.kpis()
        last = self.kpis(self.week.before()) if self.last_week_built else {k: None for k in this}
        return {k: (this[k], last[k], None if this[k] is None or last[k] is None else this[k] - last[k])
                for k in this}

    def end_states(self) -> Counter:
        counts: Counter = Counter()
        for r in self.runs():
            label = (r["result"] or r["status"]) if r["ended"] else f"OPEN ({r['status']})"
            counts[(r["project_code"] or "", r["process_code"] or "", label)] += 1
        return counts

    def latest_snapshot(self) -> dict[int, dict]:
        latest: dict = {}
        for r in self.runs():
            key = (r["project_id"], r["feed_id"], r["match_process_id"], r["workflow_code"])
            if key not in latest or (r["begin"], r["run_id"]) > (latest[key]["begin"], latest[key]["run_id"]):
                latest[key] = r
        local = self.week.local
        out = {}
        for r in latest.values():
            flag = "FAILED" if r["failed"] else "BREAK" if r["is_break"] else "" if r["ended"] else "OPEN"
            out[r["run_id"]] = {
                "Project": r["project_code"], "Project name": r["project_name"], "Feed": r["feed_code"],
                "Match process": r["process_code"], "Workflow": r["workflow_code"], "Version": r["version"],
                "Workflow name": r["workflow_name"], "Run key": r["run_key"], "Run id": r["run_id"],
                "Status": r["status"], "End state": r["result"], "Begin": local(r["begin"]), "End": local(r["end"]),
                "Duration (min)": r["duration"], "SLA (min)": r["sla"], "SLA breached": r["sla_breached"],
                "Loaded": r["counts"][0], "Matched": r["counts"][1], "Suggested": r["counts"][2],
                "Unmatched": r["counts"][3], "Failed step": r["failed_step"], "Error": r["error_name"],
                "Error message": r["error_message"], "Assigned user": r["assigned_user"], "Flag": flag or None,
            }
        return out

    def run_changes(self) -> dict[str, tuple[str, str]]:
        """Run key -> (old, new) for runs carried over from last week whose state changed."""
        if not self.last_week_built:
            return {}
        before = {r["run_id"]: r for r in self.runs(self.week.before())}  # state only; SLA plays no part
        out = {}
        for r in self.runs():
            b = before.get(r["run_id"])
            if b and (b["status"], b["result"]) != (r["status"], r["result"]):
                out[r["run_key"]] = (" / ".join(v for v in (b["status"], b["result"]) if v),
                                     " / ".join(v for v in (r["status"], r["result"]) if v))
        return out

    def dimension_changes(self) -> Counter:
        """(entity, code, change, field, old, new, when) for every dimension change of the week: a state
        dated by its business time in the week, or dated by a run that looked just after the week ended."""
        week, show = self.week, self._show
        next_end = week.end + dt.timedelta(days=7)

        def in_week(v: Version) -> bool:
            return week.end <= v.effective < next_end if v.by_run else week.start <= v.effective < week.end

        out: Counter = Counter()
        versions: dict = {}
        for table, (key, entity, code, _name) in REFERENCE.items():
            for history in self.timeline(table).values():
                for i, v in enumerate(history):
                    if not in_week(v):
                        continue
                    prior = history[i - 1] if i else None
                    row, when = v.row, week.local(v.effective)
                    active = not v.deleted and row.get("active_flag", "Y") == "Y"
                    if prior is None:
                        out[(entity, row[code], "added" if active else "retired", None, None, None, when)] += 1
                        versions[("added", row[code])] = row.get("version")
                        continue
                    was_active = not prior.deleted and prior.row.get("active_flag", "Y") == "Y"
                    if was_active != active:
                        out[(entity, row[code], "retired" if was_active else "reactivated", None, None, None,
                             when)] += 1
                        continue
                    for c in row:
                        if c not in NOT_COMPARED and c != key and row[c] != prior.row[c]:
                            out[(entity, row[code], "changed", c, show(prior.row[c]), show(row[c]), when)] += 1
                    versions[("ended", row[code])] = row.get("version")
        return _merge_versions(out, versions)

    def bad_step_statuses(self) -> int:
        """Step statuses changed since the extraction before the week's whose status OWS does not have."""
        this_run = next((i for i, s in enumerate(self.snapshots) if s.taken >= self.week.end), None)
        if this_run is None:
            return 0
        since = self.snapshots[this_run - 1].taken if this_run else dt.datetime.min.replace(tzinfo=UTC)
        return sum(1 for s in self.snapshots[this_run].tables["ows_run_step_status"]
                   if s["last_update_date"] > since and s["activity_status"] not in ACTIVITY_STATUSES)

    def _show(self, value) -> Optional[str]:
        if value is None:
            return None
        if isinstance(value, dt.datetime):
            return self.week.local(value).strftime("%Y-%m-%d %H:%M:%S")
        return str(value)


def _same(a: dict, b: dict) -> bool:
    return all(a.get(c) == b.get(c) for c in set(a) | set(b) if c not in ("updated_at", "created_at"))


def _merge_versions(changes: Counter, versions: dict) -> Counter:
    """A workflow code's added id plus its previous id's new end date: one "new version" event."""
    added = {c[1]: c for c in changes if c[0] == "Workflow" and c[2] == "added"}
    ended = {c[1]: c for c in changes if c[0] == "Workflow" and c[2] == "changed" and c[3] == "end_date"}
    out = Counter(changes)
    for code in added.keys() & ended.keys():
        del out[added[code]], out[ended[code]]
        old, new = versions[("ended", code)], versions[("added", code)]
        out[("Workflow", code, "new version", "version", str(old), str(new), added[code][6])] += 1
    return out


# ---------------------------------------------------------------------- reading the workbook


def _table(sheet, header_row: int = 1, first_col: int = 1) -> list[dict]:
    header = [c.value for c in sheet[header_row]][first_col - 1:]
    width = header.index(None) if None in header else len(header)
    header = header[:width]
    return [dict(zip(header, r[first_col - 1:first_col - 1 + width]))
            for r in sheet.iter_rows(min_row=header_row + 1, values_only=True) if any(v is not None for v in r)]


def _close(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and abs(a - b) < 1e-6
    if isinstance(a, dt.datetime) and isinstance(b, dt.datetime):
        return abs((a - b).total_seconds()) < 1
    return a == b


def compare_workbook(path, oracle: Oracle) -> list[str]:
    """Every cell where the workbook differs from the oracle, as readable lines (empty: it tells the truth)."""
    book = openpyxl.load_workbook(path)
    problems: list[str] = []
    summary = book["Summary"]
    kpis = {r[0]: r[1:4] for r in summary.iter_rows(min_row=5, max_row=11, max_col=4, values_only=True)}
    for name, expected in oracle.kpi_table().items():
        got = kpis.get(name)
        for label, e, g in zip(("this week", "last week", "change"), expected, got or (None,) * 3):
            if not _close(e, g):
                problems.append(f"Summary {name} {label}: workbook {g!r}, source {e!r}")

    states: Counter = Counter()
    for row in _table(book["End states"]):
        for column, value in row.items():
            if column not in ("Project", "Match process", "Runs") and value:
                states[(row["Project"] or "", row["Match process"] or "", column)] += value
    expected = oracle.end_states()
    for k in sorted(set(states) | set(expected), key=str):
        if states[k] != expected[k]:
            problems.append(f"End states {k}: workbook {states[k]}, source {expected[k]}")

    snapshot = {r["Run id"]: r for n in book.sheetnames if n.startswith("Latest snapshot")
                for r in _table(book[n])}
    truth = oracle.latest_snapshot()
    for run_id in sorted(set(snapshot) | set(truth), key=str):
        got, want = snapshot.get(run_id), truth.get(run_id)
        if got is None or want is None:
            problems.append(f"Latest snapshot run {run_id}: {'missing from the workbook' if got is None else 'not in the source'}")
            continue
        for column, value in want.items():
            if not _close(value, got.get(column)):
                problems.append(f"Latest snapshot run {run_id} {column}: workbook {got.get(column)!r}, source {value!r}")

    rows = _table(book["Changes"])
    whens = [r["When"] for r in rows]
    dated = [w for w in whens if w is not None]
    if dated != sorted(dated) or (None in whens and any(w is not None for w in whens[whens.index(None):])):
        problems.append("Changes are not in time order")
    sheet_runs = {r["Name"]: (r["Old value"] or "", r["New value"] or "") for r in rows if r["Entity"] == "Run"}
    want_runs = oracle.run_changes()
    if sheet_runs != want_runs:
        diff = {k: (sheet_runs.get(k), want_runs.get(k)) for k in set(sheet_runs) ^ set(want_runs)
                | {k for k in sheet_runs if sheet_runs[k] != want_runs.get(k)}}
        problems.append(f"Changes (runs) differ: workbook vs source {dict(sorted(diff.items())[:10])}")
    got_dims = Counter((r["Entity"], r["Code"], r["Change"], r["Field"], r["Old value"], r["New value"], r["When"])
                       for r in rows if r["Entity"] != "Run")
    want_dims = oracle.dimension_changes()
    for k in sorted(set(got_dims) | set(want_dims), key=str):
        if got_dims[k] != want_dims[k]:
            problems.append(f"Changes {k}: workbook {got_dims[k]}, source {want_dims[k]}")
    return problems


def chart_and_kpi_numbers_of_unbuilt_weeks(path, built: set[str]) -> list[str]:
    """Cells of the Summary's KPIs and chart data holding a number for a week that has no data."""
    book = openpyxl.load_workbook(path)
    sheet = book["Summary"]
    problems = []
    rows = list(sheet.iter_rows(values_only=True))
    top = next((i for i, r in enumerate(rows) if r[0] == "Week" and r[1] == "Runs"), None)
    if top is None:
        return ["no chart data on the Summary"]
    for r in rows[top + 1:]:
        if r[0] is None or not isinstance(r[0], str) or len(r[0]) != 10:
            break
        if r[0] not in built and any(isinstance(v, (int, float)) for v in r[1:5]):
            problems.append(f"chart data week {r[0]} was never built but shows {r[1:5]}")
    return problems
