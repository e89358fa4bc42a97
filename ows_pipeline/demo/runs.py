"""Workflow runs of the demo OWS source, one business day at a time, vectorised with numpy.

A run's whole life (every step transition, its end, its counts) is drawn when its business
day is simulated, from random streams keyed on (seed, day); what the database shows as of
a time T is a projection of that life (`project_runs`, `project_steps`). So the source as
of T is a pure function of the parameters and T, and advancing from T1 to T2 writes only
what the projection at T2 adds or changes. Times are integer seconds since the epoch, UTC.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ows_pipeline.demo.reference import DAY, FUNCTION, LOAD, MATCH, MAX_STEPS, NOTICE

# activity statuses
ACTIVE, COMPLETE, ERROR, WAITING, NOTIFIED, SUSPEND, DEFERRED = range(7)
STATUSES = np.array(["ACTIVE", "COMPLETE", "ERROR", "WAITING", "NOTIFIED", "SUSPEND", "DEFERRED"], dtype=object)

# result codes (runs and steps)
RESULT_CODES = np.array(
    ["MATCHED", "BREAKS", "PARTIAL", "NO_DATA", "#FORCE", "#EXCEPTION", "#TIMEOUT", "LOADED", "DONE", "APPROVED", None],
    dtype=object,
)
R_MATCHED, R_BREAKS, R_PARTIAL, R_NO_DATA, R_FORCE, R_EXCEPTION, R_TIMEOUT, R_LOADED, R_DONE, R_APPROVED, R_NONE = range(
    11
)

# how a step goes: (step type, fails the run, outcome, statuses after the start, weight within its group)
_OK, _EXC, _TMO, _FORCE = range(4)
_TEMPLATES = [
    (LOAD, False, _OK, (ACTIVE, COMPLETE), 0.70),
    (LOAD, False, _OK, (WAITING, ACTIVE, COMPLETE), 0.25),  # waited for the file
    (LOAD, False, _OK, (ACTIVE, ERROR, ACTIVE, COMPLETE), 0.05),  # failed, retried by an operator
    (LOAD, True, _EXC, (ACTIVE, ERROR), 0.60),
    (LOAD, True, _TMO, (WAITING, ERROR), 0.40),  # the file never came
    (MATCH, False, _OK, (ACTIVE, COMPLETE), 0.96),
    (MATCH, False, _FORCE, (ACTIVE, SUSPEND, ACTIVE, COMPLETE), 0.04),  # suspended, forced through
    (MATCH, True, _EXC, (ACTIVE, ERROR), 0.75),
    (MATCH, True, _TMO, (ACTIVE, SUSPEND, ERROR), 0.25),  # suspended and never resumed
    (FUNCTION, False, _OK, (ACTIVE, COMPLETE), 0.80),
    (FUNCTION, False, _OK, (DEFERRED, ACTIVE, COMPLETE), 0.20),
    (FUNCTION, True, _EXC, (ACTIVE, ERROR), 1.0),
    (NOTICE, False, _OK, (NOTIFIED, COMPLETE), 1.0),
    (NOTICE, True, _TMO, (NOTIFIED, ERROR), 1.0),
]
_T_TYPE = np.array([t[0] for t in _TEMPLATES])
_T_FAILS = np.array([t[1] for t in _TEMPLATES])
_T_KIND = np.array([t[2] for t in _TEMPLATES])
_T_LEN = np.array([len(t[3]) for t in _TEMPLATES])
_T_STATUS = np.full((len(_TEMPLATES), 4), -1)
for _i, _t in enumerate(_TEMPLATES):
    _T_STATUS[_i, : len(_t[3])] = _t[3]
_RETRIED = next(i for i, t in enumerate(_TEMPLATES) if t[0] == LOAD and t[3] == (ACTIVE, ERROR, ACTIVE, COMPLETE))
_FAIL_PROBABILITY = {LOAD: 0.025, MATCH: 0.013, FUNCTION: 0.01, NOTICE: 0.015}

# median seconds spent in a status before the next transition, by step type
_MEDIAN = np.zeros((7, 4))
_MEDIAN[ACTIVE] = (180, 420, 60, 60)
_MEDIAN[WAITING] = 1800
_MEDIAN[DEFERRED] = 300
_MEDIAN[NOTIFIED] = 5400
_MEDIAN[SUSPEND] = 4 * 3600
_MEDIAN[ERROR] = 1200
_SIGMA = np.array([0.6, 0.5, 0.7, 1.0, 1.0, 0.8, 0.5])
_TIMEOUT = np.zeros(7)
_TIMEOUT[WAITING] = 4 * 3600
_TIMEOUT[NOTIFIED] = 24 * 3600
_TIMEOUT[SUSPEND] = 48 * 3600

_MAX_WAIT = 30 * 3600

ERRORS = {
    (LOAD, _EXC): [
        ("ORA-01722", "ORA-01722: invalid number in column AMOUNT, record {n} of {subject}"),
        ("FILE_FORMAT", "File {subject}_{date}.csv: expected 14 columns, found 13 at line {n}"),
        ("DUPLICATE_FILE", "File {subject}_{date}.csv was already loaded (same checksum)"),
        ("ORA-00054", "ORA-00054: resource busy and acquire with NOWAIT specified or timeout expired"),
    ],
    (LOAD, _TMO): [("FILE_NOT_RECEIVED", "No file for {subject} received by the cut-off")],
    (MATCH, _EXC): [
        ("ORA-01555", "ORA-01555: snapshot too old: rollback segment number {n} with name \"_SYSSMU{n}$\" too small"),
        ("RULE_SET_ERROR", "Rule set of {subject} failed to compile: unknown tolerance field"),
        ("ORA-04030", "ORA-04030: out of process memory when trying to allocate {n} bytes"),
    ],
    (MATCH, _TMO): [("SUSPEND_TIMEOUT", "{subject} suspended and not resumed within 48 hours")],
    (FUNCTION, _EXC): [
        ("WF_FUNCTION_ERROR", "{subject}: ORA-06512 at \"OWS.PUBLISH_PKG\", line {n}"),
        ("SMTP_ERROR", "{subject}: mail relay refused the connection"),
    ],
    (NOTICE, _TMO): [("NOTIFICATION_TIMEOUT", "{subject}: no response from the approver within 24 hours")],
}


# the error catalogue flattened: ERRORS[(type, kind)] is ERROR_LIST[first : first + count]
ERROR_LIST = [error for key in sorted(ERRORS) for error in ERRORS[key]]
_ERROR_FIRST = np.zeros((4, 4), dtype=np.int64)
_ERROR_COUNT = np.zeros((4, 4), dtype=np.int64)
for _at, _key in enumerate(sorted(ERRORS)):
    _ERROR_FIRST[_key] = sum(len(ERRORS[k]) for k in sorted(ERRORS)[:_at])
    _ERROR_COUNT[_key] = len(ERRORS[_key])


def _group_tables():
    groups = {}
    for step_type in (LOAD, MATCH, FUNCTION, NOTICE):
        for fails in (False, True):
            ids = np.flatnonzero((_T_TYPE == step_type) & (_T_FAILS == fails))
            weights = np.array([_TEMPLATES[i][4] for i in ids])
            groups[(step_type, fails)] = (ids, np.cumsum(weights) / weights.sum())
    return groups


_GROUPS = _group_tables()


@dataclass
class DayRuns:
    """Every run begun for one business day (primary runs then reruns), with their whole life."""

    run_id: np.ndarray
    code: np.ndarray
    workflow_id: np.ndarray
    parent_run_id: np.ndarray  # -1: none
    run_key: list[str]
    business_day: int  # days since the epoch
    begin: np.ndarray
    end: np.ndarray
    failed: np.ndarray
    result: np.ndarray  # index into RESULT_CODES
    loaded: np.ndarray
    matched: np.ndarray
    suggested: np.ndarray
    unmatched: np.ndarray
    load_done: np.ndarray  # when the loaded count becomes visible (int64 max: never)
    match_done: np.ndarray
    late: np.ndarray  # seconds the run row's updates are committed late (0: on time)
    # one entry per step reached (cells), in run then step order
    cell_run: np.ndarray  # index into the runs above
    cell_step_id: np.ndarray
    cell_first: np.ndarray  # index of the cell's first transition
    cell_count: np.ndarray
    cell_user: np.ndarray  # index into users, -1: none
    cell_error: np.ndarray  # index into ERROR_LIST, -1: none
    cell_subject: np.ndarray  # object: feed or process code for messages
    # one entry per transition, grouped by cell, in time order within a run
    tr_cell: np.ndarray
    tr_from: np.ndarray  # -1: none
    tr_to: np.ndarray
    tr_result: np.ndarray
    tr_at: np.ndarray
    tr_user: np.ndarray  # -1: the workflow engine
    run_first_tr: np.ndarray
    run_tr_count: np.ndarray


NEVER = np.iinfo(np.int64).max


def _choose_templates(rng, step_types, risk):
    """Template per cell: fail with the type's probability times the workflow's risk, else a normal path."""
    n, s = step_types.shape
    u_fail = rng.random((n, s))
    u_pick = rng.random((n, s))
    template = np.full((n, s), -1)
    for step_type in (LOAD, MATCH, FUNCTION, NOTICE):
        is_type = step_types == step_type
        fails = u_fail < _FAIL_PROBABILITY[step_type] * risk[:, None]
        for group_fails in (False, True):
            mask = is_type & (fails == group_fails)
            ids, cumulative = _GROUPS[(step_type, group_fails)]
            template[mask] = ids[np.minimum(np.searchsorted(cumulative, u_pick[mask], side="right"), len(ids) - 1)]
    return template


def simulate_runs(
    rng: np.random.Generator,
    versions: dict,
    code: np.ndarray,
    begin: np.ndarray,
    code_volume: np.ndarray,
    risk: np.ndarray,
    subjects: np.ndarray,
    n_users: int,
) -> dict:
    """Draw the life of runs of workflow codes `code` starting at `begin` (arrays of equal length)."""
    n = len(code)
    s = MAX_STEPS
    # all draws have shapes fixed by n, so a run's life never depends on anything but its stream
    draws_cell = {name: rng.random((n, s)) for name in ("gap", "user", "error")}
    z = rng.standard_normal((n, s, 4))
    u_run = rng.random((n, 8))

    keys = code * (1 << 40) + begin
    version_keys = versions["code"] * (1 << 40) + versions["begin"]
    v = np.searchsorted(version_keys, keys, side="right") - 1
    step_types = versions["step_types"][v]
    step_ids = versions["step_ids"][v]
    valid = step_types >= 0
    template = _choose_templates(rng, step_types, risk[code])
    template[~valid] = 0
    fails = valid & _T_FAILS[template]
    has_fail = fails.any(axis=1)
    first_fail = np.where(has_fail, fails.argmax(axis=1), s)
    col = np.arange(s)[None, :]
    kept = valid & (col <= first_fail[:, None])
    count = np.where(kept, _T_LEN[template], 0)

    # counts and the category of a complete run
    loaded = np.where(u_run[:, 0] < 0.01, 0, np.round(code_volume[code] * np.exp(0.3 * (u_run[:, 1] * 2 - 1) * 2)))
    loaded = loaded.astype(np.int64)
    category = np.where(u_run[:, 2] < 0.6, R_MATCHED, np.where(u_run[:, 2] < 0.75, R_PARTIAL, R_BREAKS))
    category = np.where(loaded == 0, R_NO_DATA, category)
    unmatched = np.where(category == R_BREAKS, np.maximum(1, np.floor(loaded * (0.001 + 0.05 * u_run[:, 3]))), 0)
    unmatched = np.minimum(unmatched, loaded).astype(np.int64)
    suggested = np.where(
        category == R_PARTIAL,
        np.maximum(1, np.ceil(loaded * (0.002 + 0.03 * u_run[:, 4]))),
        np.where(category == R_BREAKS, np.floor(loaded * 0.02 * u_run[:, 4]), 0),
    )
    suggested = np.minimum(suggested, loaded - unmatched).astype(np.int64)
    ignored = np.minimum(np.floor(loaded * 0.01 * u_run[:, 5]), loaded - unmatched - suggested).astype(np.int64)
    matched = loaded - unmatched - suggested - ignored
    late = np.where(u_run[:, 6] < 0.02, 180 + (u_run[:, 7] * 720).astype(np.int64), 0)

    # transitions, cell by cell
    flat_count = count.ravel()
    cells = np.flatnonzero(flat_count > 0)
    cell_count = flat_count[cells]
    cell_run = cells // s
    cell_col = cells % s
    total = int(cell_count.sum())
    cell_first = np.cumsum(cell_count) - cell_count
    tr_cell = np.repeat(np.arange(len(cells)), cell_count)
    k = np.arange(total) - cell_first[tr_cell]
    tr_run = cell_run[tr_cell]
    tr_col = cell_col[tr_cell]
    tr_template = template.ravel()[cells][tr_cell]
    to = _T_STATUS[tr_template, k]
    prev = np.where(k > 0, _T_STATUS[tr_template, np.maximum(k - 1, 0)], -1)
    step_type = step_types.ravel()[cells][tr_cell]

    # seconds since the previous transition of the run
    median = _MEDIAN[np.maximum(prev, 0), step_type]
    sigma = _SIGMA[np.maximum(prev, 0)]
    wait = np.minimum(median * np.exp(sigma * z[tr_run, tr_col, np.minimum(k, 3)]), _MAX_WAIT)
    timed_out = (to == ERROR) & np.isin(prev, (WAITING, NOTIFIED, SUSPEND))
    wait = np.where(timed_out, _TIMEOUT[np.maximum(prev, 0)] + 60 * z[tr_run, tr_col, 0] ** 2, wait)
    gap = 1 + np.floor(draws_cell["gap"][tr_run, tr_col] * 90)
    wait = np.where(k == 0, np.where(tr_col == 0, 0, gap), np.maximum(wait, 1))
    wait = wait.astype(np.int64)
    cumulative = np.cumsum(wait)
    run_first_tr = np.searchsorted(tr_run, np.arange(n))
    run_tr_count = np.bincount(tr_run, minlength=n)
    before = cumulative[run_first_tr] - wait[run_first_tr]
    at = begin[tr_run] + cumulative - before[tr_run]

    # outcomes
    cell_template = template.ravel()[cells]
    cell_kind = _T_KIND[cell_template]
    forced = np.zeros(n, dtype=bool)
    np.logical_or.at(forced, cell_run, cell_kind == _FORCE)
    fail_kind = np.zeros(n, dtype=np.int64)
    failing_cells = _T_FAILS[cell_template]
    fail_kind[cell_run[failing_cells]] = cell_kind[failing_cells]
    result = np.where(
        has_fail,
        np.where(fail_kind == _TMO, R_TIMEOUT, R_EXCEPTION),
        np.where(forced, R_FORCE, category),
    )
    end = at[run_first_tr + run_tr_count - 1]

    # step result codes on COMPLETE and ERROR
    complete_code = np.array([R_LOADED, R_NONE, R_DONE, R_APPROVED])[step_type]
    complete_code = np.where(step_type == MATCH, np.where(_T_KIND[tr_template] == _FORCE, R_FORCE, category[tr_run]), complete_code)
    tr_result = np.where(
        to == COMPLETE, complete_code, np.where(to == ERROR, np.where(timed_out, R_TIMEOUT, R_EXCEPTION), R_NONE)
    )
    by_user = ((prev == ERROR) & (to == ACTIVE)) | ((prev == SUSPEND) & (to == ACTIVE)) | (
        (prev == NOTIFIED) & (to == COMPLETE)
    )
    user = np.floor(draws_cell["user"] * n_users).astype(np.int64)
    tr_user = np.where(by_user, user[tr_run, tr_col], -1)

    # when the counts show: all LOAD (MATCH) steps complete
    cell_last_at = at[cell_first + cell_count - 1]
    cell_type = step_types.ravel()[cells]
    cell_ok = ~failing_cells
    load_done = _done_at(n, cell_run, cell_type == LOAD, cell_ok, cell_last_at, step_types == LOAD)
    match_done = _done_at(n, cell_run, cell_type == MATCH, cell_ok, cell_last_at, step_types == MATCH)

    # who is assigned, what error shows
    needs_user = (cell_type == NOTICE) | (cell_kind == _FORCE) | (cell_template == _RETRIED) | (
        (cell_type == MATCH) & (cell_kind == _TMO)
    )
    cell_user = np.where(needs_user, user.ravel()[cells], -1)
    error_kind = np.where(cell_kind == _TMO, _TMO, _EXC)
    has_error = np.isin(_T_STATUS[cell_template], ERROR).any(axis=1)
    pick = draws_cell["error"].ravel()[cells]
    first, count = _ERROR_FIRST[cell_type, error_kind], _ERROR_COUNT[cell_type, error_kind]
    cell_error = np.where(has_error & (count > 0), first + np.floor(pick * count).astype(np.int64), -1)
    cell_subject = subjects[step_ids.ravel()[cells]]

    return {
        "workflow_id": versions["workflow_id"][v],
        "end": end,
        "failed": has_fail,
        "result": result,
        "loaded": loaded,
        "matched": matched,
        "suggested": suggested,
        "unmatched": unmatched,
        "load_done": load_done,
        "match_done": match_done,
        "late": late,
        "cell_run": cell_run,
        "cell_step_id": step_ids.ravel()[cells],
        "cell_first": cell_first,
        "cell_count": cell_count,
        "cell_user": cell_user,
        "cell_error": cell_error,
        "cell_subject": cell_subject,
        "tr_cell": tr_cell,
        "tr_from": prev,
        "tr_to": to,
        "tr_result": tr_result,
        "tr_at": at,
        "tr_user": tr_user,
        "run_first_tr": run_first_tr,
        "run_tr_count": run_tr_count,
    }


def _done_at(n, cell_run, is_type, cell_ok, cell_last_at, planned):
    """When every planned step of a type has completed (NEVER if one did not)."""
    done = np.zeros(n, dtype=np.int64)
    np.maximum.at(done, cell_run[is_type], np.where(cell_ok[is_type], cell_last_at[is_type], NEVER))
    completed = np.bincount(cell_run[is_type & cell_ok], minlength=n)
    return np.where(completed == planned.sum(axis=1), done, NEVER)


BLOCK_RUNS = 20_000
"""Primary runs simulated at once: a busier day is drawn in blocks, so memory does not grow with it."""


def simulate_day(
    seed: int,
    day: int,
    runs_per_day: int,
    first_run_id: int,
    versions: dict,
    code_names: list[str],
    code_weights: np.ndarray,
    code_volume: np.ndarray,
    code_risk: np.ndarray,
    subjects: np.ndarray,
    n_users: int,
) -> Iterator[tuple[DayRuns, int]]:
    """The runs of business `day` (days since the epoch), reruns of their failures included, in blocks.

    Yields `(runs, frontier)`: a block of at most BLOCK_RUNS primary runs (in begin order) with their
    reruns, and a time before which no later block (of this day or a later one) has a transition.
    Block 0 draws from the day's streams, so a day of up to BLOCK_RUNS runs is one block; block b > 0
    from streams keyed on b as well. Run ids follow the blocks: a block's primaries, then its reruns.
    """
    rng = np.random.default_rng([seed, 7, day, 0])
    weekday = (day + 3) % 7  # Monday = 0
    expected = runs_per_day * (1.0 if weekday < 5 else 0.15) * (1 + 0.08 * rng.standard_normal())
    n = max(0, int(round(expected)))
    code = rng.choice(len(code_names), size=n, p=code_weights)
    in_batch = rng.random(n) < 0.65
    offset = np.where(in_batch, 4 * 3600 + rng.random(n) * 5 * 3600, 9 * 3600 + rng.random(n) * 12 * 3600)
    begin = day * DAY + offset.astype(np.int64)
    order = np.lexsort((code, begin))
    code, begin = code[order], begin[order]
    rng_rerun = np.random.default_rng([seed, 7, day, 1])
    u = rng_rerun.random((n, 2))
    keys = _run_keys(code, code_names, day)

    next_run_id = first_run_id
    for block, lo in enumerate(range(0, max(n, 1), BLOCK_RUNS)):
        hi = min(n, lo + BLOCK_RUNS)
        if block:
            rng = np.random.default_rng([seed, 7, day, 0, block])
            rng_rerun = np.random.default_rng([seed, 7, day, 1, block])
        primary = simulate_runs(rng, versions, code[lo:hi], begin[lo:hi], code_volume, code_risk, subjects, n_users)
        # reruns of failed runs, same business date, begun 15 minutes to 3 hours after the failure
        parents = np.flatnonzero(primary["failed"] & (u[lo:hi, 0] < 0.6))
        rerun_begin = primary["end"][parents] + 900 + (u[lo + parents, 1] * 9900).astype(np.int64)
        rerun = simulate_runs(
            rng_rerun, versions, code[lo + parents], rerun_begin, code_volume, code_risk * 0.5, subjects, n_users
        )
        size = hi - lo
        run_id = next_run_id + np.arange(size + len(parents), dtype=np.int64)
        next_run_id += len(run_id)
        parent_run_id = np.concatenate([np.full(size, -1, dtype=np.int64), run_id[parents]])
        block_keys = keys[lo:hi] + [keys[lo + p] + ".R" for p in parents.tolist()]
        runs = _merge(primary, rerun, size, run_id, np.concatenate([code[lo:hi], code[lo + parents]]), parent_run_id,
                      block_keys, day, np.concatenate([begin[lo:hi], rerun_begin]))
        frontier = int(begin[hi]) if hi < n else (day + 1) * DAY
        yield runs, frontier


def _run_keys(code: np.ndarray, code_names: list[str], day: int) -> list[str]:
    """Run keys: workflow code, business date, sequence of the code that day (reruns add ".R")."""
    n = len(code)
    date = np.datetime64(day, "D").astype(str).replace("-", "")
    by_code = np.lexsort((np.arange(n), code))
    sequence = np.empty(n, dtype=np.int64)
    sorted_codes = code[by_code]
    starts = np.searchsorted(sorted_codes, sorted_codes, side="left")
    sequence[by_code] = np.arange(n) - starts + 1
    return [f"{code_names[c]}.{date}.{q:03d}" for c, q in zip(code.tolist(), sequence.tolist())]


def _merge(a: dict, b: dict, n_a: int, run_id, code, parent_run_id, keys, day, begin) -> DayRuns:
    """Primary runs and reruns as one DayRuns (indexes of b shifted past a)."""
    cells_a = len(a["cell_run"])
    trs_a = len(a["tr_at"])
    shift = {"cell_run": n_a, "cell_first": trs_a, "tr_cell": cells_a, "run_first_tr": trs_a}
    merged = {}
    for name in a:
        merged[name] = np.concatenate([a[name], b[name] + shift[name] if name in shift else b[name]])
    return DayRuns(
        run_id=run_id, code=code, parent_run_id=parent_run_id, run_key=keys, business_day=day, begin=begin, **merged
    )


@dataclass
class RunsView:
    """The run rows visible as of a time (indexes into a DayRuns plus the projected columns)."""

    index: np.ndarray
    status: np.ndarray  # object strings
    result: np.ndarray  # object strings or None
    end: np.ndarray  # -1: null
    last_update: np.ndarray
    loaded: np.ndarray  # -1: null
    matched: np.ndarray
    suggested: np.ndarray
    unmatched: np.ndarray


def project_runs(day: DayRuns, as_of: int) -> RunsView:
    """The ows_workflow_run rows of `day` as of `as_of` (late commits show an older state)."""
    visible = np.flatnonzero(day.begin <= as_of)
    seen_at = np.where(day.late > 0, np.maximum(day.begin, as_of - day.late), as_of)
    tr_run = np.repeat(np.arange(len(day.run_id)), day.run_tr_count)
    seen = day.tr_at <= seen_at[tr_run]
    seen_count = np.bincount(tr_run[seen], minlength=len(day.run_id))
    last = (day.run_first_tr + np.maximum(seen_count, 1) - 1)[visible]
    closed = day.end[visible] <= seen_at[visible]
    open_status = np.where(day.tr_to[last] == SUSPEND, "SUSPEND", "ACTIVE")
    status = np.where(closed, np.where(day.failed[visible], "ERROR", "COMPLETE"), open_status).astype(object)
    result = np.where(closed, RESULT_CODES[day.result[visible]], None)
    show_loaded = day.load_done[visible] <= seen_at[visible]
    show_matched = day.match_done[visible] <= seen_at[visible]
    return RunsView(
        index=visible,
        status=status,
        result=result,
        end=np.where(closed, day.end[visible], -1),
        last_update=day.tr_at[last],
        loaded=np.where(show_loaded, day.loaded[visible], -1),
        matched=np.where(show_matched, day.matched[visible], -1),
        suggested=np.where(show_matched, day.suggested[visible], -1),
        unmatched=np.where(show_matched, day.unmatched[visible], -1),
    )


@dataclass
class StepsView:
    """The step status rows visible as of a time."""

    cell: np.ndarray
    status: np.ndarray
    result: np.ndarray
    begin: np.ndarray
    end: np.ndarray  # -1: null
    last_update: np.ndarray
    error_name: np.ndarray  # object, None when not in error
    error_message: np.ndarray
    assigned_user: np.ndarray


def project_steps(day: DayRuns, as_of: int, users: list[str]) -> StepsView:
    """The ows_run_step_status rows of `day` as of `as_of`: one per step reached."""
    first_at = day.tr_at[day.cell_first]
    cells = np.flatnonzero(first_at <= as_of)
    seen = day.tr_at <= as_of
    seen_count = np.bincount(day.tr_cell[seen], minlength=len(day.cell_first))
    last = day.cell_first[cells] + seen_count[cells] - 1
    to = day.tr_to[last]
    final = (to == COMPLETE) | (to == ERROR)
    in_error = to == ERROR
    error_name = np.full(len(cells), None, dtype=object)
    error_message = np.full(len(cells), None, dtype=object)
    for i in np.flatnonzero(in_error).tolist():
        cell = int(cells[i])
        if day.cell_error[cell] < 0:
            continue
        name, template = ERROR_LIST[int(day.cell_error[cell])]
        run = int(day.cell_run[cell])
        error_name[i] = name
        error_message[i] = template.format(
            subject=day.cell_subject[cell],
            date=np.datetime64(day.business_day, "D").astype(str).replace("-", ""),
            n=int(day.run_id[run] % 9973) + 17,
        )
    user_index = day.cell_user[cells]
    users_array = np.array(users + [None], dtype=object)
    return StepsView(
        cell=cells,
        status=STATUSES[to],
        result=np.where(final, RESULT_CODES[day.tr_result[last]], None),
        begin=first_at[cells],
        end=np.where(final, day.tr_at[last], -1),
        last_update=day.tr_at[last],
        error_name=error_name,
        error_message=error_message,
        assigned_user=users_array[user_index],
    )
