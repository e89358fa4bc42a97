"""Reference data of the demo OWS source over time: projects, feeds, match processes, workflows, steps.

Every row is a `Timeline`: its attributes when created and the dated changes after
(attribute edits, deactivation, deletion, re-appearance, new workflow versions). The
whole history is a pure function of the parameters, drawn week by week from random
streams keyed on (seed, kind, id, week); `state_at(T)` folds the changes up to T.
Times are integer seconds since the Unix epoch, UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DAY = 86_400
WEEK = 7 * DAY

# step types, as small integers for the vectorised run generator
LOAD, MATCH, FUNCTION, NOTICE = 0, 1, 2, 3
STEP_TYPES = ("LOAD", "MATCH", "FUNCTION", "NOTICE")
MAX_STEPS = 8

# random stream kinds
_PROJECT, _FEED, _MATCH, _WORKFLOW, _STEP, _SETUP = 1, 2, 3, 4, 5, 6

_PROJECT_NAMES = [
    ("CASH_NOSTRO", "Nostro cash reconciliation", "Treasury"),
    ("SEC_CUSTODY", "Custody positions", "Securities Services"),
    ("FX_SETTLE", "FX settlements", "Markets"),
    ("CARD_SCHEME", "Card scheme settlement", "Retail"),
    ("INTERCO", "Intercompany balances", "Finance"),
    ("GL_SUBLEDGER", "GL to sub-ledger", "Finance"),
    ("SWIFT_PAY", "SWIFT payments", "Payments"),
    ("DERIV_MARGIN", "Derivatives margin calls", "Markets"),
    ("LOAN_SERVICE", "Loan servicing", "Lending"),
    ("TRADE_CAPTURE", "Trade capture vs confirmations", "Markets"),
    ("CORP_ACTIONS", "Corporate actions", "Securities Services"),
    ("TREASURY_MM", "Money market deals", "Treasury"),
    ("ATM_CASH", "ATM cash balancing", "Retail"),
    ("DIRECT_DEBIT", "Direct debits", "Payments"),
    ("FEES_BILLING", "Fees and billing", "Finance"),
    ("REPO_COLLAT", "Repo collateral", "Markets"),
]
_SPARE_PROJECT_NAMES = [
    ("LEGACY_ARCHIVE", "Legacy archive checks", "Operations"),
    ("MIGRATION_SBX", "Migration sandbox", "Operations"),
    ("PILOT_RECS", "Pilot reconciliations", "Operations"),
]
_BUSINESS_UNITS = ["Treasury", "Markets", "Finance", "Payments", "Retail", "Securities Services", "Lending", "Operations"]
_OWNERS = [
    "a.kowalski", "b.nguyen", "c.okafor", "d.fernandes", "e.lindqvist", "f.moreau", "g.rossi", "h.tanaka",
    "i.schmidt", "j.obrien", "k.patel", "l.garcia", "m.dubois", "n.ivanova", "o.mensah", "p.walsh",
]
_INTERNAL_SYSTEMS = ["SAP_GL", "MUREX", "CALYPSO", "SUMMIT", "T24", "FLEXCUBE", "ORACLE_GL", "KONDOR", "TLM_CORE"]
_EXTERNAL_SYSTEMS = ["SWIFT_MT940", "SWIFT_MT535", "VISA_BASEII", "MC_IPM", "EUROCLEAR", "CLEARSTREAM", "DTCC", "LCH"]
_SCHEDULES = ["DAILY 06:00", "DAILY 07:30", "DAILY 18:30", "WEEKDAYS 05:45", "INTRADAY 4H", "WEEKDAYS 21:00"]
_WORKFLOW_KINDS = ["EOD", "INTRADAY", "MORNING", "T_PLUS_1", "WEEKLY", "CUTOFF", "REVIEW", "ADHOC"]


def names_for(index: int, pool: list[tuple[str, str, str]]) -> tuple[str, str, str]:
    """Code, name and business unit of the index-th project of a pool, numbered past its end."""
    code, name, unit = pool[index % len(pool)]
    round_ = index // len(pool)
    if round_:
        return f"{code}_{round_ + 1}", f"{name} {round_ + 1}", unit
    return code, name, unit


class Timeline:
    """One reference row over time: attributes at creation and dated changes after it."""

    __slots__ = ("key", "created", "base", "changes")

    def __init__(self, key: int, created: int, base: dict):
        self.key = key
        self.created = created
        self.base = base
        self.changes: list[tuple[int, dict]] = []

    def change(self, at: int, **columns) -> None:
        """Record a change at `at`; `_deleted=True/False` removes or restores the row."""
        self.changes.append((at, columns))

    def state_at(self, as_of: int) -> dict | None:
        """The row as of `as_of` (None when not created yet or deleted), with `created_at`/`updated_at`."""
        if self.created > as_of:
            return None
        row = dict(self.base)
        row["created_at"] = self.created
        row["updated_at"] = self.created
        deleted = False
        for at, columns in sorted(self.changes, key=lambda c: c[0]):
            if at > as_of:
                break
            for name, value in columns.items():
                if name == "_deleted":
                    deleted = value
                else:
                    row[name] = value
            row["updated_at"] = at
        return None if deleted else row


@dataclass
class WorkflowVersion:
    """One version of a workflow code, as the run generator needs it."""

    workflow_id: int
    code_index: int
    begin: int
    step_ids: list[int]
    step_types: list[int]
    subjects: list[str]  # feed code, process code or label: used in error messages


@dataclass
class Reference:
    """All reference timelines plus the workflow versions the runs use."""

    projects: list[Timeline] = field(default_factory=list)
    feeds: list[Timeline] = field(default_factory=list)
    match_processes: list[Timeline] = field(default_factory=list)
    workflows: list[Timeline] = field(default_factory=list)
    steps: list[Timeline] = field(default_factory=list)
    versions: list[WorkflowVersion] = field(default_factory=list)
    code_names: list[str] = field(default_factory=list)
    code_weights: np.ndarray | None = None  # share of the daily runs per workflow code
    code_volume: np.ndarray | None = None  # typical records loaded per run
    code_risk: np.ndarray | None = None  # failure-rate multiplier
    users: list[str] = field(default_factory=list)

    def tables_at(self, as_of: int) -> dict[str, list[dict]]:
        """Rows of the five reference tables as of `as_of`, keyed by table name."""
        out = {}
        for name, timelines, drop in (
            ("ows_project", self.projects, ()),
            ("ows_feed", self.feeds, ()),
            ("ows_match_process", self.match_processes, ()),
            ("ows_workflow", self.workflows, ("created_at",)),
            ("ows_workflow_step", self.steps, ("created_at",)),
        ):
            rows = []
            for timeline in timelines:
                row = timeline.state_at(as_of)
                if row is not None:
                    for column in drop:
                        row.pop(column)
                    rows.append(row)
            out[name] = rows
        return out

    def version_arrays(self) -> dict[str, np.ndarray]:
        """Workflow versions as arrays sorted by (code, begin), steps padded to MAX_STEPS with -1."""
        order = sorted(range(len(self.versions)), key=lambda i: (self.versions[i].code_index, self.versions[i].begin))
        versions = [self.versions[i] for i in order]
        n = len(versions)
        step_ids = np.full((n, MAX_STEPS), -1, dtype=np.int64)
        step_types = np.full((n, MAX_STEPS), -1, dtype=np.int64)
        for i, v in enumerate(versions):
            step_ids[i, : len(v.step_ids)] = v.step_ids
            step_types[i, : len(v.step_types)] = v.step_types
        return {
            "code": np.array([v.code_index for v in versions], dtype=np.int64),
            "begin": np.array([v.begin for v in versions], dtype=np.int64),
            "workflow_id": np.array([v.workflow_id for v in versions], dtype=np.int64),
            "step_ids": step_ids,
            "step_types": step_types,
        }


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


def build_reference(
    seed: int, projects: int, feeds_per_project: int, workflows_per_project: int, start: int, until: int
) -> Reference:
    """Every reference timeline from before `start` up to the end of the week holding `until`."""
    ref = Reference()
    setup = _rng(seed, _SETUP)
    n_spare_projects = max(1, projects // 8)
    pairs = max(1, (feeds_per_project - 1) // 2)
    spare_feeds = max(1, feeds_per_project - 2 * pairs)
    ref.users = _OWNERS + ["ops.recs1", "ops.recs2", "ops.recs3", "ops.nightshift", "ops.lead"]

    feed_id = match_id = workflow_id = step_id = 0
    # per project: pairs of (source feed, target feed, match process) and spare (feed, match) couples
    project_pairs: dict[int, list[tuple[Timeline, Timeline, Timeline]]] = {}
    spare_couples: list[tuple[Timeline, Timeline]] = []
    spare_projects: list[tuple[Timeline, list[Timeline]]] = []

    for p in range(projects + n_spare_projects):
        spare = p >= projects
        code, name, unit = (
            names_for(p - projects, _SPARE_PROJECT_NAMES) if spare else names_for(p, _PROJECT_NAMES)
        )
        created = start - int(setup.integers(60, 900)) * DAY + int(setup.integers(0, DAY))
        project = Timeline(
            p + 1,
            created,
            {
                "project_id": p + 1,
                "project_code": code,
                "project_name": name,
                "business_unit": unit,
                "owner": _OWNERS[int(setup.integers(len(_OWNERS)))],
                "active_flag": "Y",
            },
        )
        ref.projects.append(project)
        owned: list[Timeline] = []
        project_pairs[p + 1] = []
        n_pairs = pairs if not spare else 1
        for k in range(n_pairs + (spare_feeds if not spare else 0)):
            is_pair = k < n_pairs
            sides = ("SOURCE", "TARGET") if is_pair else ("SOURCE",)
            made = []
            for side in sides:
                feed_id += 1
                system_pool = _INTERNAL_SYSTEMS if side == "SOURCE" else _EXTERNAL_SYSTEMS
                system = system_pool[int(setup.integers(len(system_pool)))]
                feed_code = f"{system}_{k + 1:02d}"
                feed = Timeline(
                    feed_id,
                    created + int(setup.integers(0, 30 * DAY)),
                    {
                        "feed_id": feed_id,
                        "project_id": p + 1,
                        "feed_code": feed_code,
                        "feed_name": f"{system.replace('_', ' ').title()} {'extract' if side == 'SOURCE' else 'statement'}"
                        f" for {name.lower()}",
                        "source_system": system,
                        "side": side,
                        "expected_schedule": _SCHEDULES[int(setup.integers(len(_SCHEDULES)))],
                        "active_flag": "Y",
                    },
                )
                ref.feeds.append(feed)
                owned.append(feed)
                made.append(feed)
            source = made[0]
            target = made[1] if is_pair else project_pairs[p + 1][0][1]
            match_id += 1
            process = Timeline(
                match_id,
                max(source.created, target.created) + int(setup.integers(0, 10 * DAY)),
                {
                    "match_process_id": match_id,
                    "project_id": p + 1,
                    "process_code": f"MP_{code[:20]}_{k + 1:02d}",
                    "process_name": f"{source.base['source_system']} vs {target.base['source_system']}",
                    "from_feed_id": source.key,
                    "to_feed_id": target.key,
                    "rule_set_version": f"v{int(setup.integers(1, 4))}.{int(setup.integers(0, 10))}",
                    "position": k + 1,
                    "active_flag": "Y",
                },
            )
            ref.match_processes.append(process)
            owned.append(process)
            if is_pair:
                project_pairs[p + 1].append((source, target, process))
            elif not spare:
                spare_couples.append((source, process))
        if spare:
            spare_projects.append((project, owned))

    # workflows: each code has versions; the first ones may have ended before the history starts
    codes: list[tuple[int, int, list[int]]] = []  # (project_id, code_index, chosen pair indexes)
    setup_wf = _rng(seed, _SETUP, 2)
    ref.code_weights = setup_wf.lognormal(0.0, 0.6, size=projects * workflows_per_project)
    ref.code_weights /= ref.code_weights.sum()
    ref.code_volume = np.round(setup_wf.lognormal(np.log(4000), 1.0, size=projects * workflows_per_project))
    ref.code_risk = np.clip(setup_wf.lognormal(0.0, 0.6, size=projects * workflows_per_project), 0.25, 5.0)

    def make_version(code_index: int, version: int, begin: int, shape: dict) -> Timeline:
        nonlocal workflow_id, step_id
        project_id = codes[code_index][0]
        workflow_id += 1
        name = ref.code_names[code_index]
        workflow = Timeline(
            workflow_id,
            begin,
            {
                "workflow_id": workflow_id,
                "project_id": project_id,
                "workflow_code": name,
                "version": version,
                "workflow_name": f"{name.replace('_', ' ').title()} reconciliation",
                "begin_date": begin,
                "end_date": None,
            },
        )
        ref.workflows.append(workflow)
        steps = []  # (label, type, feed_id, match_process_id, subject)
        chosen = [project_pairs[project_id][k] for k in shape["pairs"]]
        for source, target, _ in chosen:
            for feed in (source, target):
                steps.append((f"Load {feed.base['feed_code']}", LOAD, feed.key, None, feed.base["feed_code"]))
        for _, _, process in chosen:
            code = process.base["process_code"]
            steps.append((f"Match {code}", MATCH, None, process.key, code))
        if shape["function"]:
            steps.append(("Publish breaks report", FUNCTION, None, None, "Publish breaks report"))
        if shape["notice"]:
            steps.append(("Approve breaks", NOTICE, None, None, "Approve breaks"))
        ids, types, subjects = [], [], []
        for seq, (label, step_type, feed, process, subject) in enumerate(steps, start=1):
            step_id += 1
            ref.steps.append(
                Timeline(
                    step_id,
                    begin,
                    {
                        "step_id": step_id,
                        "workflow_id": workflow_id,
                        "step_label": label,
                        "step_type": STEP_TYPES[step_type],
                        "feed_id": feed,
                        "match_process_id": process,
                        "seq": seq * 10,
                    },
                )
            )
            ids.append(step_id)
            types.append(step_type)
            subjects.append(subject)
        ref.versions.append(WorkflowVersion(workflow_id, code_index, begin, ids, types, subjects))
        return workflow

    current: dict[int, tuple[Timeline, dict, int]] = {}  # code index -> (workflow, shape, version)
    for p in range(projects):
        project = ref.projects[p]
        n_pairs = len(project_pairs[p + 1])
        for j in range(workflows_per_project):
            code_index = len(codes)
            first = j % n_pairs
            chosen = [first]
            if n_pairs > 1 and setup_wf.random() < 0.3:
                chosen.append((first + 1) % n_pairs)
            codes.append((p + 1, code_index, chosen))
            kind = _WORKFLOW_KINDS[j % len(_WORKFLOW_KINDS)]
            suffix = f"_{j // len(_WORKFLOW_KINDS) + 1}" if j >= len(_WORKFLOW_KINDS) else ""
            ref.code_names.append(f"{project.base['project_code']}_{kind}{suffix}"[:30])
            shape = {"pairs": chosen, "function": setup_wf.random() < 0.5, "notice": setup_wf.random() < 0.4}
            # the current version began before the history starts; older ones before it
            begins = [start - int(setup_wf.integers(3, 120)) * DAY - int(setup_wf.integers(0, DAY))]
            for _ in range(int(setup_wf.integers(0, 3))):
                begins.insert(0, begins[0] - int(setup_wf.integers(5, 60)) * DAY)
            previous = None
            for version, begin in enumerate(begins, start=1):
                if previous is not None:
                    previous.change(begin, end_date=begin)
                    flip = "function" if setup_wf.random() < 0.5 else "notice"
                    shape = dict(shape, **{flip: not shape[flip]})
                previous = make_version(code_index, version, begin, shape)
            current[code_index] = (previous, shape, len(begins))

    _weekly_changes(seed, ref, start, until, current, codes, make_version, spare_couples, spare_projects, projects)
    return ref


def _weekly_changes(seed, ref, start, until, current, codes, make_version, spare_couples, spare_projects, projects):
    """Draw the dated changes of every week from `start` to the week after `until`."""
    last_week = (until - start) // WEEK + 1
    active = {("p", t.key): True for t in ref.projects}
    active.update({("f", t.key): True for t in ref.feeds})
    active.update({("m", t.key): True for t in ref.match_processes})
    present = {("c", i): True for i in range(len(spare_couples))}
    present.update({("s", i): True for i in range(len(spare_projects))})
    spare = {id(t) for _, owned in spare_projects for t in owned} | {id(t) for couple in spare_couples for t in couple}
    # week of the last change of state: nothing stays inactive more than 4 weeks; spare rows are
    # deleted after at most 6 weeks and come back after at most 3
    phase = _rng(seed, _SETUP, 3)
    since = {key: -int(phase.integers(0, 4)) for key in list(active) + list(present)}

    def flip(key, rng, week, p_leave_on, p_leave_off, max_on, max_off) -> bool:
        state = active[key] if key in active else present[key]
        due = week - since[key] >= (max_on if state else max_off)
        if due or rng.random() < (p_leave_on if state else p_leave_off):
            since[key] = week
            if key in active:
                active[key] = not state
            else:
                present[key] = not state
            return True
        return False

    def moment(rng: np.random.Generator, week: int) -> int:
        return start + week * WEEK + int(rng.integers(0, WEEK))

    def toggle_active(kind: str, timeline: Timeline, rng, week, p_off, p_on) -> None:
        if flip((kind, timeline.key), rng, week, p_off, p_on, 10**9, 4):
            timeline.change(moment(rng, week), active_flag="Y" if active[(kind, timeline.key)] else "N")

    for week in range(last_week + 1):
        for project in ref.projects[:projects]:
            rng = _rng(seed, _PROJECT, project.key, week)
            if rng.random() < 0.03:
                project.change(moment(rng, week), owner=_OWNERS[int(rng.integers(len(_OWNERS)))])
            if rng.random() < 0.01:
                project.change(moment(rng, week), business_unit=_BUSINESS_UNITS[int(rng.integers(len(_BUSINESS_UNITS)))])
            toggle_active("p", project, rng, week, 0.006, 0.35)
        for feed in ref.feeds:
            if id(feed) in spare:
                continue
            rng = _rng(seed, _FEED, feed.key, week)
            if rng.random() < 0.04:
                feed.change(moment(rng, week), expected_schedule=_SCHEDULES[int(rng.integers(len(_SCHEDULES)))])
            if rng.random() < 0.01:
                feed.change(moment(rng, week), feed_name=f"{feed.base['feed_name']} (layout {week + 2})")
            toggle_active("f", feed, rng, week, 0.01, 0.3)
        for process in ref.match_processes:
            if id(process) in spare:
                continue
            rng = _rng(seed, _MATCH, process.key, week)
            if rng.random() < 0.04:
                process.change(moment(rng, week), rule_set_version=f"v{int(rng.integers(2, 6))}.{int(rng.integers(0, 10))}")
            if rng.random() < 0.01:
                process.change(moment(rng, week), position=int(rng.integers(1, 10)))
            toggle_active("m", process, rng, week, 0.01, 0.3)
        # spare feeds and their match process come and go together
        for i, (feed, process) in enumerate(spare_couples):
            rng = _rng(seed, _FEED, 1_000_000 + i, week)
            if flip(("c", i), rng, week, 0.15, 0.35, 6, 3):
                at = moment(rng, week)
                if present[("c", i)] and rng.random() < 0.5:  # re-appears with a new schedule
                    feed.change(at, _deleted=False, expected_schedule=_SCHEDULES[int(rng.integers(len(_SCHEDULES)))])
                else:
                    feed.change(at, _deleted=not present[("c", i)])
                process.change(at, _deleted=not present[("c", i)])
            elif present[("c", i)]:
                toggle_active("f", feed, rng, week, 0.05, 0.4)
        # spare projects (no workflows) are deleted and restored with everything they own
        for i, (project, owned) in enumerate(spare_projects):
            rng = _rng(seed, _PROJECT, 1_000_000 + i, week)
            if flip(("s", i), rng, week, 0.12, 0.3, 6, 3):
                at = moment(rng, week)
                for timeline in (project, *owned):
                    timeline.change(at, _deleted=not present[("s", i)])
            elif present[("s", i)]:
                toggle_active("p", project, rng, week, 0.1, 0.4)
        # workflows: renames and new versions (which may add or drop steps)
        for code_index in range(len(codes)):
            rng = _rng(seed, _WORKFLOW, code_index, week)
            workflow, shape, version = current[code_index]
            if rng.random() < 0.01:
                workflow.change(moment(rng, week), workflow_name=f"{workflow.base['workflow_name']} (revised {week})")
            if rng.random() < 0.04:
                # deployments happen at weekends, between 01:00 and 05:00
                at = start + week * WEEK + 5 * DAY + int(rng.integers(0, 2)) * DAY + int(rng.integers(3600, 5 * 3600))
                change = rng.random()
                if change < 0.4:
                    shape = dict(shape, function=not shape["function"])
                elif change < 0.8:
                    shape = dict(shape, notice=not shape["notice"])
                else:
                    shape = dict(shape)
                new = make_version(code_index, version + 1, at, shape)
                workflow.change(at, end_date=at)
                current[code_index] = (new, shape, version + 1)
    # step label edits (updated_at bumps without a new version), at most one per step
    for step in ref.steps:
        rng = _rng(seed, _STEP, step.key)
        if rng.random() < 0.1:
            at = max(step.created, start) + int(rng.integers(DAY, 16 * WEEK))
            step.change(at, step_label=step.base["step_label"] + " (checked)")
