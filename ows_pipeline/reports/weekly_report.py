"""The weekly Excel report: Summary, Latest snapshot, End states, Changes and Data quality sheets.

`build_weekly_report` reads one week from the warehouse and writes the workbook to a
temporary file beside the target, then renames it into place, so a reader never sees a
half-written report and a failed run leaves the previous file untouched.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import sqlalchemy as sa

from ows_pipeline.reports import queries as q
from ows_pipeline.reports.changes import CHANGE_COLUMNS, dimension_changes, in_time_order, run_state_changes
from ows_pipeline.reports.quality import DataQuality, data_quality
from ows_pipeline.reports.workbook import (
    EXCEL_MAX_ROWS,
    Chart,
    Column,
    DocProperties,
    Highlight,
    Sheet,
    XlsxWriter,
    column_letter,
)
from ows_pipeline.weeks import Week

SUMMARY = "Summary"
SNAPSHOT = "Latest snapshot"
END_STATES = "End states"
CHANGES = "Changes"
QUALITY = "Data quality"
MAX_CHART_STATES = 8


ReportWeek = Week
"""The reporting week (the one `Week` of the snapshot and the schedule)."""


@dataclass
class ReportResult:
    """What was written: the file, its digest and size, rows per sheet and the KPIs."""

    path: Path
    size: int
    sha256: str
    sheet_rows: dict[str, int] = field(default_factory=dict)
    kpis: list[tuple[str, object, object, object]] = field(default_factory=list)  # (name, this, last, delta)
    notes: list[str] = field(default_factory=list)

    def kpi_markdown(self) -> str:
        lines = ["| KPI | this week | last week | change |", "|---|---:|---:|---:|"]
        for name, this, last, delta in self.kpis:
            lines.append(f"| {name} | {_fmt(this)} | {_fmt(last)} | {_fmt(delta, signed=True)} |")
        return "\n".join(lines)


def _fmt(value, signed: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:+.1%}" if signed else f"{value:.1%}"
    return f"{value:+,}" if signed else f"{value:,}"


def report_path(report_dir: Path, week_key: str) -> Path:
    return Path(report_dir) / f"ows_weekly_{week_key}.xlsx"


def find_data_docs(home: Path) -> Optional[Path]:
    """The Data Docs entry page under `OWS_HOME/data_docs`, if it has been built."""
    root = Path(home) / "data_docs"
    if not root.is_dir():
        return None
    pages = sorted(root.rglob("index.html"), key=lambda p: (len(p.parts), str(p)))
    return pages[0] if pages else None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_weekly_report(
    engine: sa.Engine,
    week: ReportWeek,
    path: Path,
    *,
    data_docs: Optional[Path] = None,
    check_results: Sequence[Sequence] = (),
    max_rows: int = EXCEL_MAX_ROWS,
    ui_url: Optional[str] = None,
) -> ReportResult:
    """Write the workbook of `week` to `path` atomically and describe it.

    `check_results`: rows (asset, check, passed/failed, severity[, details]) for the Data quality sheet;
    evaluation times are left out so that re-running the same checks with the same results gives the same
    file. `data_docs`: the Data Docs start page on the pipeline host (named, never linked: a reader of the
    workbook cannot open the build machine's files). `ui_url`: the Dagster UI's address for the readers;
    failed checks then link to their asset's checks page.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w+b") as out, engine.connect() as conn:
            result = _write(conn, week, out, data_docs, check_results, max_rows, ui_url)
        os.chmod(temp_name, 0o644)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    result.path = path
    result.size = path.stat().st_size
    result.sha256 = sha256_of(path)
    return result


def _write(conn: sa.Connection, week: Week, out, data_docs: Optional[Path], check_results, max_rows: int,
           ui_url: Optional[str] = None) -> ReportResult:
    fct = q.fact_table(conn)
    day = week.start
    tz = week.tz
    trend = q.weekly_kpis(conn, fct, week)
    this = trend[-1]
    last = trend[-2] if len(trend) > 1 else q.WeekKpis(week.previous().start)
    result = ReportResult(Path(), 0, "")
    result.kpis = kpi_rows(this, last)
    expected = q.week_row_count(conn, fct, day)
    checks = [_check_row(r) for r in check_results]

    properties = DocProperties(
        title=f"OWS weekly report, week of {week.key}",
        subject="Latest state of every workflow across projects, feeds and match processes",
        keywords=f"OWS; weekly; {week.key}",
        description=f"Week {week.key} ({week.timezone}): {week.start_utc:%Y-%m-%d %H:%M} to "
                    f"{week.end_utc:%Y-%m-%d %H:%M} UTC.",
        created=week.end_utc,
    )
    large = expected > 100_000
    with XlsxWriter(out, properties, display_tz=tz, max_rows=max_rows) as book:
        summary_part = book.reserve(SUMMARY)

        snapshot_columns = [Column(h, kind) for h, _, kind in q.SNAPSHOT_COLUMNS] + [Column(q.FLAG_COLUMN, "text", 9)]
        snapshot = book.add_table_sheet(
            SNAPSHOT,
            snapshot_columns,
            q.latest_snapshot(conn, fct, day),
            table_name="LatestSnapshot",
            highlights=[Highlight(q.FLAG_COLUMN, "FAILED", "bad"), Highlight(q.FLAG_COLUMN, "BREAK", "warn")],
            back_link=("← Summary", SUMMARY),
            large=large,
        )

        states = q.end_states(conn, fct, day)
        book.add_sheet(_end_states_sheet(states))

        dims = dimension_changes(conn, week, tz)
        change_columns = [Column(h, kind) for h, kind in CHANGE_COLUMNS]
        changes = book.add_table_sheet(
            CHANGES,
            change_columns,
            in_time_order(dims.rows, run_state_changes(conn, fct, week)),
            table_name="WeekChanges",
            highlights=[Highlight("Change", "retired", "bad"), Highlight("Change", "added", "warn")],
            back_link=("← Summary", SUMMARY),
            large=large,
        )
        if dims.missing:
            result.notes.append("Not built yet, so not in Changes: " + ", ".join(dims.missing))

        quality = data_quality(conn, week)
        book.add_sheet(_quality_sheet(quality, data_docs, checks, week, ui_url))

        book.add_sheet(
            _summary_sheet(week, this, last, trend, states, snapshot, changes, dims, result.notes, checks),
            part=summary_part,
        )

    for info in snapshot + changes:
        result.sheet_rows[info.name] = info.rows
    result.sheet_rows[END_STATES] = len({(p, m) for p, m, _, _ in states})
    result.sheet_rows[QUALITY] = len(quality.loads) + len(quality.rejects) + len(quality.top_rules) + len(checks)
    return result


def _check_row(row: Sequence) -> list:
    """(table, check, result, severity, details): the severity only where a check failed (a passed
    check has no severity to show; whether it would block is in its own column)."""
    table, check, outcome, severity = row[:4]
    details = row[4] if len(row) > 4 else ""
    failed = outcome != "passed"
    blocks = "blocks downstream" if str(severity).upper() == "ERROR" else "warning only"
    return [table, check, outcome, severity if failed else None, blocks, details if failed else None]


def failed_checks(checks: Sequence[Sequence]) -> list:
    return [c for c in checks if c[2] != "passed"]


def kpi_rows(this: q.WeekKpis, last: q.WeekKpis) -> list[tuple[str, object, object, object]]:
    """(name, this week, last week, change); None where a figure is unknown (a week never built, no SLA list)."""
    def delta(a, b):
        return None if a is None or b is None else a - b

    rows = []
    for name, attr in (("Runs", "runs"), ("Completed", "completed"), ("Failed", "failed"), ("Open", "open"),
                       ("Breaks", "breaks"), ("SLA breaches", "sla_breaches")):
        a, b = getattr(this, attr), getattr(last, attr)
        rows.append((name, a, b, delta(a, b)))
    rate, before = this.match_rate, last.match_rate
    rows.insert(5, ("Match rate", rate, before, delta(rate, before)))
    return rows


def kpi_notes(this: q.WeekKpis, last: q.WeekKpis, week: Week) -> list[str]:
    """Why a KPI cell is blank, in the reader's words."""
    notes = []
    if not this.built:
        notes.append(f"This week ({week.key}) has not been built: every figure is blank (unknown).")
    if not last.built:
        notes.append(f"Last week ({week.previous().key}) was never built: its column and the change are blank.")
    if this.built and this.sla_breaches is None:
        notes.append("SLA breaches: blank (unknown) because no feed SLA list is loaded; upload feed_sla.csv "
                     "to the landing folder (ref_feed_sla).")
    elif this.built and this.sla_runs is not None and this.sla_runs < (this.runs or 0):
        notes.append(f"SLA breaches: counted over the {this.sla_runs:,} of {this.runs:,} runs whose feed is on the "
                     "SLA list; the others are unknown.")
    if this.built and this.match_rate is None:
        notes.append("Match rate: blank because no run of the week reported matched, suggested or unmatched items.")
    return notes


def _summary_sheet(week, this, last, trend, states, snapshot, changes, dims, notes, checks) -> Sheet:
    sheet = Sheet(SUMMARY)
    for col, width in ((1, 26), (2, 14), (3, 14), (4, 14), (5, 14)):
        sheet.set_width(col, width)
    sheet.write(1, 1, f"OWS weekly report: week of {week.key}", style="title")
    sheet.write(2, 1, f"Sunday {week.key} 00:00 to the next Sunday 00:00, {week.timezone}. Times in the sheets are "
                      f"{week.timezone} local time.")

    sheet.write_row(4, 1, ["KPI", "This week", "Last week", "Change"], style="header")
    row = 5
    for name, a, b, delta in kpi_rows(this, last):
        pct = name == "Match rate"
        sheet.write(row, 1, name, style="bold")
        sheet.write(row, 2, a, "pct" if pct else "int")
        sheet.write(row, 3, b, "pct" if pct else "int")
        sheet.write(row, 4, delta, "pct" if pct else "int", style="delta_pct" if pct else "delta_int")
        row += 1
    for note in kpi_notes(this, last, week):
        sheet.write(row, 1, note)
        row += 1
    failed = failed_checks(checks)
    sheet.write(row, 1, "Failed data checks", style="bold")
    if checks:
        sheet.write(row, 2, len(failed), "int")
        sheet.write(row, 3, f"of {len(checks):,} checks")
        if failed:
            sheet.link_to_sheet(row, 4, "see Data quality", QUALITY)
    else:
        sheet.write(row, 3, "no check results on record (unknown)")
    row += 1

    row += 1
    sheet.write(row, 1, "Sheets", style="header")
    row += 1
    links = [(info.name, f"{info.rows:,} latest runs") for info in snapshot]
    links.append((END_STATES, "runs by project, match process and end state"))
    links += [(info.name, f"{info.rows:,} changes") for info in changes]
    links.append((QUALITY, "loads, rejected rows and rules"))
    for name, what in links:
        sheet.link_to_sheet(row, 1, name, name)
        sheet.write(row, 2, what)
        row += 1
    for note in notes:
        sheet.write(row, 1, note)
        row += 1

    row += 1
    sheet.write(row, 1, "Changes this week", style="header")
    sheet.write(row, 2, "Count", style="header")
    row += 1
    for (entity, kind), n in sorted(dims.counts.items()):
        sheet.write(row, 1, f"{entity} {kind}")
        sheet.write(row, 2, n, "int")
        row += 1
    sheet.write(row, 1, "Runs that changed state")
    sheet.write(row, 2, sum(info.rows for info in changes) - len(dims.rows), "int")
    row += 1

    # Data behind the charts, below them so that nothing is hidden.
    row = max(row + 1, 41)
    sheet.write(row, 1, "Chart data", style="bold")
    row += 1
    trend_top = row
    sheet.write_row(row, 1, ["Week", "Runs", "Completed", "Failed", "Breaks"], style="header")
    for k in trend:
        row += 1
        sheet.write_row(row, 1, [k.week.isoformat(), k.runs, k.completed, k.failed, k.breaks],
                        ["text", "int", "int", "int", "int"])
    trend_bottom = row
    sheet.add_chart(Chart(
        "line", f"Last {len(trend)} weeks",
        categories=[k.week.isoformat() for k in trend],
        series=[(name, [getattr(k, attr) for k in trend])
                for name, attr in (("Runs", "runs"), ("Completed", "completed"), ("Failed", "failed"),
                                   ("Breaks", "breaks"))],
        cat_ref=f"$A${trend_top + 1}:$A${trend_bottom}",
        series_refs=[(f"${column_letter(c)}${trend_top}", f"${column_letter(c)}${trend_top + 1}:${column_letter(c)}${trend_bottom}")
                     for c in range(2, 6)],
        anchor=(6, 20, 16, 38),
    ))

    row += 2
    by_project: dict = defaultdict(lambda: defaultdict(int))
    totals: dict = defaultdict(int)
    for project, _process, state, n in states:
        by_project[project][state] += n
        totals[state] += n
    top_states = sorted(totals, key=lambda s: (-totals[s], s))[:MAX_CHART_STATES]
    other = len(totals) > len(top_states)
    state_names = top_states + (["Other"] if other else [])
    top = row
    sheet.write_row(row, 1, ["Project"] + state_names, style="header")
    for col, name in enumerate(state_names, start=2):
        sheet.set_width(col, max(14, len(name) + 3))
    projects = sorted(by_project)
    for project in projects:
        row += 1
        counts = [by_project[project].get(s, 0) for s in top_states]
        if other:
            counts.append(sum(n for s, n in by_project[project].items() if s not in top_states))
        sheet.write_row(row, 1, [project or "(none)"] + counts, ["text"] + ["int"] * len(counts))
    bottom = row
    if projects:
        sheet.add_chart(Chart(
            "bar", "End states by project",
            categories=[p or "(none)" for p in projects],
            series=[(name, [by_project[p].get(name, 0) if name != "Other" else
                            sum(n for s, n in by_project[p].items() if s not in top_states) for p in projects])
                    for name in state_names],
            cat_ref=f"$A${top + 1}:$A${bottom}",
            series_refs=[(f"${column_letter(c)}${top}", f"${column_letter(c)}${top + 1}:${column_letter(c)}${bottom}")
                         for c in range(2, 2 + len(state_names))],
            anchor=(6, 1, 16, 19),
            stacked=True,
        ))
    return sheet


def _end_states_sheet(states: list[tuple[str, str, str, int]]) -> Sheet:
    sheet = Sheet(END_STATES)
    sheet.freeze_row = 1
    names = sorted({s for _, _, s, _ in states})
    pivot: dict = defaultdict(lambda: defaultdict(int))
    for project, process, state, n in states:
        pivot[(project, process)][state] += n
    columns = [Column("Project", width=16), Column("Match process", width=18), Column("Runs", "int", 10)]
    columns += [Column(n, "int", max(10, len(n) + 3)) for n in names]
    rows = []
    for (project, process), counts in sorted(pivot.items()):
        rows.append([project, process, sum(counts.values())] + [counts.get(n, 0) or None for n in names])
    sheet.add_table("EndStates", 1, 1, columns, rows)
    sheet.link_to_sheet(1, len(columns) + 2, "← Summary", SUMMARY)
    return sheet


def _quality_sheet(quality: DataQuality, data_docs: Optional[Path], checks: Sequence[Sequence], week: Week,
                   ui_url: Optional[str] = None) -> Sheet:
    sheet = Sheet(QUALITY)
    for col, width in ((1, 34), (2, 26), (3, 26), (4, 12), (5, 18), (6, 40), (7, 18)):
        sheet.set_width(col, width)
    sheet.write(1, 1, "Data quality of the week", style="title")
    sheet.link_to_sheet(1, 9, "← Summary", SUMMARY)
    failed = failed_checks(checks)
    where = "the Data Docs on the pipeline host" if data_docs is not None else "no Data Docs (not built yet)"
    sheet.write(2, 1, f"{len(failed):,} of {len(checks):,} data checks failed; the failed checks and their results are "
                      f"listed first, so the workbook needs no link ({where}).")

    row = 4
    sheet.write(row, 1, "Latest result of every data check", style="bold")
    ordered = sorted(checks, key=lambda r: (r[2] == "passed", str(r[0]), str(r[1])))
    top = row + 1
    row = sheet.add_table("CheckResults", top, 1, [
        Column("Table"), Column("Check"), Column("Result"), Column("Severity"), Column("If it fails"),
        Column("Details"),
    ], ordered) + 1
    if ui_url:
        for i, check in enumerate(ordered, start=1):
            if check[2] != "passed":
                sheet.link_to_url(top + i, 2, str(check[1]), f"{ui_url}/assets/{check[0]}?view=checks")
    runs = ", ".join(quality.builder_runs) or "none on record"
    sheet.write(row, 1, f"Loads of the week by table: the runs that built it ({runs}) and other loads whose "
                        f"business time falls in {week.describe()}", style="bold")
    row = sheet.add_table("Loads", row + 1, 1, [
        Column("Table"), Column("Loads", "int"), Column("Failed loads", "int"), Column("Rows in", "int"),
        Column("Rows loaded", "int"), Column("Rows rejected", "int"), Column("Data as of", "datetime"),
    ], quality.loads) + 1
    sheet.write(row, 1, "Rejected and warned values by table and severity", style="bold")
    row = sheet.add_table("Rejects", row + 1, 1, [
        Column("Table"), Column("Severity"), Column("Values", "int"), Column("Records", "int"),
    ], quality.rejects) + 1
    sheet.write(row, 1, "Top rules", style="bold")
    sheet.add_table("TopRules", row + 1, 1, [
        Column("Table"), Column("Field"), Column("Rule"), Column("Severity"), Column("Values", "int"),
    ], quality.top_rules)
    return sheet
