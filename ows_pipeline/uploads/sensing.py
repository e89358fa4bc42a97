"""One tick of the upload sensor, as plain logic: find settled new files, register them, ask for runs.

Cheap with a large archive: only the top level of each kind sub-folder is listed (the
`processed/` and `rejected/` archives never are), a file is hashed once, and the cursor
remembers files waiting to settle and files whose run was already requested.

A file is *settled* when two observations at least `settle_seconds` apart (two ticks) saw the
same size, modification time and, for files up to `SMALL_FILE` bytes, the same content (for
larger files, the same first and last 64 KiB). The file's own timestamps are never trusted:
a copy that keeps an old modification time and is still being appended to keeps waiting.

The same bytes seen before (under any name) are recorded as a DUPLICATE and archived, before
the name or the format is judged. Files refused without loading (links, special files,
folders named like data files, oversize files, refused formats, names with invisible
characters) are rejected right here, and each still gets a run, which fails with the refusal:
every refusal reaches the user the same way (registry row, `rejected/` and its errors file,
a failed run and its failure notice).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Optional

import sqlalchemy as sa

from ows_pipeline.uploads import registry
from ows_pipeline.uploads.formats import file_format
from ows_pipeline.uploads.landing import PROCESSED, REJECTED, Candidate, LandingFolder
from ows_pipeline.uploads.limits import UploadLimits
from ows_pipeline.uploads.names import name_problem, shown_name
from ows_pipeline.uploads.problems import FileRejected, Problem
from ows_pipeline.uploads.processing import reject_upload, too_large
from ows_pipeline.uploads.schema import KIND_NAMES

SMALL_FILE = 4 * 1024 * 1024
_EDGE = 64 * 1024


@dataclass(frozen=True)
class UploadRequest:
    """A run to request: process (or report the refusal of) upload `upload_id` of `kind`."""

    upload_id: int
    kind: str
    file_name: str
    sha256: Optional[str]
    run_key: str


@dataclass
class Tick:
    """What one tick found and did."""

    requests: list[UploadRequest] = field(default_factory=list)
    cursor: str = "{}"
    waiting: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)


def _load_cursor(cursor: Optional[str]) -> dict:
    try:
        state = json.loads(cursor) if cursor else {}
    except ValueError:
        state = {}
    if not isinstance(state, dict):
        state = {}
    for part in ("seen", "requested", "refused"):
        if not isinstance(state.get(part), dict):
            state[part] = {}
    return state


def observe(candidate: Candidate) -> list:
    """What two observations must agree on: size, modification time and a digest of the content."""
    if not candidate.is_regular:
        return [candidate.size, candidate.mtime_ns, None]
    digest = hashlib.sha256()
    try:
        fd = os.open(candidate.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return [candidate.size, candidate.mtime_ns, None]
    with os.fdopen(fd, "rb") as handle:
        if candidate.size <= SMALL_FILE:
            digest.update(handle.read(SMALL_FILE + 1))
        else:
            digest.update(handle.read(_EDGE))
            handle.seek(max(candidate.size - _EDGE, 0))
            digest.update(handle.read(_EDGE))
    return [candidate.size, candidate.mtime_ns, digest.hexdigest()]


def _unreadable(candidate: Candidate, limits: UploadLimits) -> Optional[Problem]:
    """Why a file is refused without reading it, or None."""
    name = shown_name(candidate.name)
    if candidate.is_symlink:
        return Problem(
            "symlink",
            f"'{name}' is a symbolic link (a shortcut); links are never followed",
            "copy the file itself into the landing folder",
            value=name,
        )
    if candidate.is_dir:
        return Problem(
            "folder",
            f"'{name}' is a folder, not a file, although its name ends like a data file",
            "drop the files themselves (not a folder) into the drop folder, one upload per file",
            value=name,
        )
    if not candidate.is_regular:
        return Problem(
            "not_a_file",
            f"'{name}' is not a regular file (a pipe, socket or device)",
            "upload a plain file",
            value=name,
        )
    if candidate.size > limits.max_bytes:
        return too_large(candidate.size, limits)
    return None


def preflight(candidate: Candidate, limits: UploadLimits) -> Optional[Problem]:
    """Every refusal the sensor makes itself, in order (the duplicate check comes before the name's)."""
    problem = _unreadable(candidate, limits)
    if problem is None:
        problem = name_problem(candidate.name)
    if problem is None:
        try:
            file_format(candidate.name)
        except FileRejected as exc:
            problem = exc.problems[0]
    return problem


def sensor_tick(
    engine: sa.Engine,
    landing: LandingFolder,
    cursor: Optional[str],
    limits: Optional[UploadLimits] = None,
    now: Optional[float] = None,
    budget_seconds: float = 20.0,
) -> Tick:
    """Scan the landing folder once; never raises for a bad file (its problem is recorded instead).

    Settled files are handled oldest first until `budget_seconds` are spent (hashing many large
    files must not outlast the sensor's time limit); the rest wait for the next tick.
    `now` is the time of this observation (the settle time is measured between observations).
    """
    limits = limits or UploadLimits.from_env()
    now = time.time() if now is None else now
    started = time.monotonic()
    state = _load_cursor(cursor)
    tick = Tick()
    landing.ensure()
    seen, requested, refused = state["seen"], state["requested"], state["refused"]
    next_seen: dict[str, list] = {}
    next_requested: dict[str, list] = {}
    next_refused: dict[str, list] = {}
    handled = observed = 0
    for candidate in landing.scan():
        key = candidate.relative
        shown = shown_name(key)
        quick = [candidate.size, candidate.mtime_ns]
        if requested.get(key, [None, None])[:2] == quick:
            next_requested[key] = requested[key]  # its run is requested; the run will move it
            continue
        if refused.get(key) == quick:
            next_refused[key] = quick  # refused, and could not be moved: said once
            continue
        previous = seen.get(key)
        if observed and time.monotonic() - started > budget_seconds:
            if previous:
                next_seen[key] = previous  # observed again next tick
            tick.deferred.append(key)
            continue
        signature = observe(candidate)
        observed += 1
        if not previous or previous[:3] != signature:
            next_seen[key] = signature + [now]
            tick.waiting.append(key)
            continue
        if now - previous[3] < limits.settle_seconds:
            next_seen[key] = previous
            tick.waiting.append(key)
            continue
        if handled and time.monotonic() - started > budget_seconds:
            next_seen[key] = previous  # settled: handled first thing next tick
            tick.deferred.append(key)
            continue
        handled += 1
        try:
            _handle(engine, landing, candidate, limits, tick, next_requested, next_refused)
        except Exception as exc:  # noqa: BLE001 - one bad file never stops the sensor
            next_seen[key] = previous
            tick.failures.append(key)
            tick.log.append(
                f"{shown}: could not be registered, will retry next tick: "
                f"{type(exc).__name__}: {shown_name(str(exc)[:300])}"
            )
    for name in landing.stray_files():
        tick.log.append(
            f"'{shown_name(name)}' lies at the top of the landing folder and is ignored: move it into one of "
            f"{', '.join(k + '/' for k in KIND_NAMES)}"
        )
    for folder in landing.folders():
        tick.log.append(f"the folder '{shown_name(folder)}' is ignored: drop files, not folders, into the drop folders")
    tick.cursor = json.dumps(
        {"seen": next_seen, "requested": next_requested, "refused": next_refused}, sort_keys=True
    )
    return tick


def _handle(
    engine: sa.Engine,
    landing: LandingFolder,
    candidate: Candidate,
    limits: UploadLimits,
    tick: Tick,
    next_requested: dict,
    next_refused: dict,
) -> None:
    key = candidate.relative
    modified = registry.dt.datetime.fromtimestamp(candidate.mtime_ns / 1e9, registry.dt.timezone.utc)
    unreadable = _unreadable(candidate, limits)
    sha = None if unreadable else registry.sha256_of_file(candidate.path)
    with engine.begin() as conn:
        earlier = registry.unmoved_refusal(conn, key)
        original = registry.originals_by_sha(conn, [sha]).get(sha) if sha else None
    if earlier is not None and earlier.size_bytes == candidate.size and earlier.sha256 == sha:
        # refused before, and still here because it could not be moved
        next_refused[key] = [candidate.size, candidate.mtime_ns]
        return
    if original is not None and not (original.status == registry.RECEIVED and original.current_path == key):
        _record_duplicate(engine, landing, candidate, sha, modified, original, tick)
        return
    problem = unreadable or preflight(candidate, limits)
    if problem is not None:
        _refuse(engine, landing, candidate, sha, modified, problem, tick, next_refused)
        return
    with engine.begin() as conn:
        if original is not None:
            upload_id = original.upload_id  # registered before the cursor was saved: ask again (same run key)
        else:
            upload_id = registry.register(
                conn, file_name=shown_name(candidate.name), kind=candidate.kind, sha256=sha,
                size_bytes=candidate.size, modified_at=modified, status=registry.RECEIVED, current_path=key,
                run_key=registry.run_key_for(sha),
            )
    next_requested[key] = [candidate.size, candidate.mtime_ns, upload_id]
    tick.requests.append(
        UploadRequest(upload_id, candidate.kind, shown_name(candidate.name), sha, registry.run_key_for(sha))
    )
    tick.log.append(f"{shown_name(key)}: registered as upload {upload_id}, run requested")


def _refuse(engine, landing: LandingFolder, candidate: Candidate, sha, modified, problem: Problem, tick: Tick,
            next_refused: dict) -> None:
    """Register the refusal, move the file to `rejected/` and ask for the run that reports it."""
    key = candidate.relative
    with engine.begin() as conn:
        upload_id = registry.register(
            conn, file_name=shown_name(candidate.name), kind=candidate.kind, sha256=sha, size_bytes=candidate.size,
            modified_at=modified, status=registry.RECEIVED, current_path=key,
        )
        upload = registry.get(conn, upload_id)
    outcome = reject_upload(engine, landing, upload, [problem])
    if outcome.location == key:
        next_refused[key] = [candidate.size, candidate.mtime_ns]
    tick.rejected.append(key)
    tick.requests.append(UploadRequest(upload_id, candidate.kind, upload.file_name, sha,
                                       registry.refusal_run_key(upload_id)))
    tick.log.append(f"{shown_name(key)}: rejected: {problem.describe()}")


def _record_duplicate(engine, landing: LandingFolder, candidate: Candidate, sha: str, modified, original,
                      tick: Tick) -> None:
    """Register the same bytes again as a DUPLICATE and archive them beside the original's fate.

    A copy of a refused file is refused again: it gets the run that reports it.
    """
    archive = REJECTED if original.status == registry.REJECTED else PROCESSED
    target = landing.archive_target(archive, candidate.kind, candidate.name)
    location = landing.relative(target)
    summary = (
        f"same bytes as upload {original.upload_id} ('{original.file_name}', {original.status.lower()}, "
        f"now at {original.current_path}); not loaded again"
    )
    with engine.begin() as conn:
        upload_id = registry.register(
            conn, file_name=shown_name(candidate.name), kind=candidate.kind, sha256=sha, size_bytes=candidate.size,
            modified_at=modified, status=registry.DUPLICATE, duplicate_of=original.upload_id,
            error_summary=summary, current_path=location, processed_at=registry.utc_now(),
        )
    if archive == REJECTED:
        report = {
            "file": shown_name(candidate.name),
            "kind": candidate.kind,
            "sha256": sha,
            "status": registry.DUPLICATE,
            "summary": summary,
            "problems": [
                {
                    "rule": "duplicate_of_rejected",
                    "message": f"identical to the rejected upload '{original.file_name}': {original.error_summary}",
                    "fix": f"correct the problems listed in {original.current_path}.errors.json and upload again",
                    "row": None, "field": None, "value": None, "severity": "ERROR",
                }
            ],
        }
        landing.move_with_report(candidate.path, target, report)
        tick.requests.append(UploadRequest(upload_id, candidate.kind, shown_name(candidate.name), sha,
                                           registry.refusal_run_key(upload_id)))
    else:
        landing.move(candidate.path, target)
    tick.duplicates.append(candidate.relative)
    tick.log.append(
        f"{shown_name(candidate.relative)}: same bytes as upload {original.upload_id} "
        f"('{original.file_name}', {original.status})"
    )
