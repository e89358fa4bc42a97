"""The rows of the demo's run tables as column batches: numpy arrays, no Python object per value.

A `Batch` holds at most CHUNK_ROWS rows of one table; `demo.writer` turns it into what each
database takes fastest. Times are integer seconds since the epoch (UTC), dates days since it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa

from ows_pipeline.demo.runs import RESULT_CODES, STATUSES, DayRuns, project_runs, project_steps
from ows_pipeline.source import schema as source_schema

CHUNK_ROWS = 50_000
"""Rows per batch: memory stays flat whatever the day's volume."""


@dataclass
class Column:
    kind: str  # "int", "ts" (seconds), "date" (days) or "text" (object array, None for null)
    values: np.ndarray
    null: np.ndarray | None = None  # True where the value is null (int, ts)


@dataclass
class Batch:
    table: sa.Table
    columns: dict[str, Column]

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())).values)


def _int(values, null=None) -> Column:
    return Column("int", np.asarray(values, dtype=np.int64), null)


def _ts(values, null=None) -> Column:
    return Column("ts", np.asarray(values, dtype=np.int64), null)


def _text(values) -> Column:
    return Column("text", np.asarray(values, dtype=object))


def _run_batch(runs: DayRuns, view, picks: np.ndarray) -> Batch:
    """ows_workflow_run rows for the positions `picks` of `view`."""
    idx = view.index[picks]
    parent = runs.parent_run_id[idx]
    matched = view.matched[picks]
    no_counts = matched < 0
    loaded = view.loaded[picks]
    end = view.end[picks]
    keys = np.array(runs.run_key, dtype=object)[idx] if len(idx) else np.zeros(0, dtype=object)
    return Batch(source_schema.ows_workflow_run, {
        "run_id": _int(runs.run_id[idx]),
        "workflow_id": _int(runs.workflow_id[idx]),
        "run_key": _text(keys),
        "parent_run_id": _int(parent, parent < 0),
        "business_date": Column("date", np.full(len(idx), runs.business_day, dtype=np.int64)),
        "status": _text(view.status[picks]),
        "result_code": _text(view.result[picks]),
        "records_loaded": _int(loaded, loaded < 0),
        "matched_cnt": _int(matched, no_counts),
        "suggested_cnt": _int(view.suggested[picks], no_counts),
        "unmatched_cnt": _int(view.unmatched[picks], no_counts),
        "begin_date": _ts(runs.begin[idx]),
        "end_date": _ts(end, end < 0),
        "last_update_date": _ts(view.last_update[picks]),
    })


def _step_batch(runs: DayRuns, view, picks: np.ndarray) -> Batch:
    """ows_run_step_status rows for the positions `picks` of `view`."""
    cells = view.cell[picks]
    end = view.end[picks]
    return Batch(source_schema.ows_run_step_status, {
        "run_id": _int(runs.run_id[runs.cell_run[cells]]),
        "step_id": _int(runs.cell_step_id[cells]),
        "activity_status": _text(view.status[picks]),
        "result_code": _text(view.result[picks]),
        "assigned_user": _text(view.assigned_user[picks]),
        "error_name": _text(view.error_name[picks]),
        "error_message": _text(view.error_message[picks]),
        "begin_date": _ts(view.begin[picks]),
        "end_date": _ts(end, end < 0),
        "last_update_date": _ts(view.last_update[picks]),
    })


def _chunked(n: int) -> Iterator[slice]:
    for start in range(0, n, CHUNK_ROWS):
        yield slice(start, start + CHUNK_ROWS)


def run_and_step_batches(runs: DayRuns, run_view, run_picks, step_view, step_picks) -> Iterator[Batch]:
    for part in _chunked(len(run_picks)):
        yield _run_batch(runs, run_view, run_picks[part])
    for part in _chunked(len(step_picks)):
        yield _step_batch(runs, step_view, step_picks[part])


def day_batches(runs: DayRuns, as_of: int, users: list[str]) -> Iterator[Batch]:
    """The run and step status rows of a block of runs as of `as_of`."""
    run_view = project_runs(runs, as_of)
    step_view = project_steps(runs, as_of, users)
    yield from run_and_step_batches(
        runs, run_view, np.arange(len(run_view.index)), step_view, np.arange(len(step_view.cell))
    )


def changed_since(runs: DayRuns, previous: int, as_of: int, users: list[str]):
    """What an advance from `previous` to `as_of` rewrites in a block of runs.

    Returns (run ids to delete, {run id: step ids to delete}, batches to insert).
    """
    if len(runs.tr_at) == 0 or (runs.tr_at.max() <= previous and runs.begin.max(initial=0) <= previous):
        return [], {}, iter(())
    n = len(runs.run_id)
    old_runs, new_runs = project_runs(runs, previous), project_runs(runs, as_of)
    old_lud = np.full(n, -1, dtype=np.int64)
    old_lud[old_runs.index] = old_runs.last_update
    existed = old_lud[new_runs.index] >= 0
    changed_run = existed & (old_lud[new_runs.index] != new_runs.last_update)
    run_picks = np.flatnonzero(~existed | changed_run)

    n_cells = len(runs.cell_first)
    old_steps, new_steps = project_steps(runs, previous, users), project_steps(runs, as_of, users)
    old_cell_lud = np.full(n_cells, -1, dtype=np.int64)
    old_cell_lud[old_steps.cell] = old_steps.last_update
    cell_existed = old_cell_lud[new_steps.cell] >= 0
    changed_cell = cell_existed & (old_cell_lud[new_steps.cell] != new_steps.last_update)
    step_picks = np.flatnonzero(~cell_existed | changed_cell)

    changed_cells = new_steps.cell[changed_cell]
    by_run: dict[int, list[int]] = {}
    for run_id, step_id in zip(runs.run_id[runs.cell_run[changed_cells]].tolist(), runs.cell_step_id[changed_cells].tolist()):
        by_run.setdefault(run_id, []).append(step_id)
    gone = runs.run_id[new_runs.index[changed_run]].tolist()
    return gone, by_run, run_and_step_batches(runs, new_runs, run_picks, new_steps, step_picks)


class HistoryClock:
    """Numbers step transitions in time order across blocks of runs: hist_id follows changed_at.

    A block's transitions are kept until no later block can add an earlier one (the block's
    frontier), then sorted by (changed_at, run, step, order) and numbered.
    """

    _FIELDS = ("at", "run_id", "cell_order", "step_id", "from_", "to", "result", "user")

    def __init__(self):
        self.next_id = 1
        self.pending = {name: np.zeros(0, dtype=np.int64) for name in self._FIELDS}

    def add(self, runs: DayRuns, release_before: int) -> dict[str, np.ndarray]:
        cells = runs.tr_cell
        fresh = {
            "at": runs.tr_at,
            "run_id": runs.run_id[runs.cell_run[cells]],
            "cell_order": np.arange(len(cells), dtype=np.int64),
            "step_id": runs.cell_step_id[cells],
            "from_": runs.tr_from,
            "to": runs.tr_to,
            "result": runs.tr_result,
            "user": runs.tr_user,
        }
        merged = {name: np.concatenate([self.pending[name], fresh[name].astype(np.int64)]) for name in self._FIELDS}
        ready = merged["at"] < release_before
        out = {name: merged[name][ready] for name in self._FIELDS}
        self.pending = {name: merged[name][~ready] for name in self._FIELDS}
        order = np.lexsort((out["cell_order"], out["run_id"], out["at"]))
        out = {name: values[order] for name, values in out.items()}
        out["hist_id"] = self.next_id + np.arange(len(order), dtype=np.int64)
        self.next_id += len(order)
        return out


def history_batches(released: dict, previous: int | None, as_of: int, users: list[str]) -> Iterator[Batch]:
    """History rows among `released` with changed_at in (previous, as_of]."""
    at = released["at"]
    pick = at <= as_of
    if previous is not None:
        pick &= at > previous
    users_array = np.array(users + ["WFENGINE"], dtype=object)
    from_statuses = np.append(STATUSES, None)  # index -1: no previous status
    picked = {name: array[pick] for name, array in released.items()}
    for part in _chunked(len(picked["at"])):
        rows = {name: array[part] for name, array in picked.items()}
        yield Batch(source_schema.ows_run_step_history, {
            "hist_id": _int(rows["hist_id"]),
            "run_id": _int(rows["run_id"]),
            "step_id": _int(rows["step_id"]),
            "from_status": _text(from_statuses[rows["from_"]]),
            "to_status": _text(STATUSES[rows["to"]]),
            "result_code": _text(RESULT_CODES[rows["result"]]),
            "changed_at": _ts(rows["at"]),
            "changed_by": _text(users_array[rows["user"]]),
        })
