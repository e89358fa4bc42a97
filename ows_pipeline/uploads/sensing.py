"""One tick of the upload sensor, as plain logic: find stable new files, register them, ask for runs.

Cheap with a large archive: only the top level of each kind sub-folder is listed (the
`processed/` and `rejected/` archives never are), a file is hashed once, and the cursor
remembers files waiting to settle and files whose run was already requested.

A file is *stable* when its size and modification time are unchanged since the previous
tick, or when it was last modified more than `settle_seconds` ago. Files refused without
reading (symlinks, unsafe names, too large, unknown formats) are rejected right here;
everything else gets one run, keyed on the content hash. The same bytes seen again (under
any name) are recorded as a DUPLICATE and archived without a run.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Optional

import sqlalchemy as sa

from ows_pipeline.uploads import registry
from ows_pipeline.uploads.formats import file_format
from ows_pipeline.uploads.kinds import KIND_NAMES
from ows_pipeline.uploads.landing import PROCESSED, REJECTED, Candidate, LandingFolder, name_problem
from ows_pipeline.uploads.limits import UploadLimits
from ows_pipeline.uploads.problems import FileRejected, Problem
from ows_pipeline.uploads.processing import reject_upload, too_large


@dataclass(frozen=True)
class UploadRequest:
    """A run to request: process upload `upload_id` of `kind`."""

    upload_id: int
    kind: str
    file_name: str
    sha256: str
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
    state.setdefault("seen", {})
    state.setdefault("requested", {})
    return state


def _preflight(candidate: Candidate, limits: UploadLimits) -> Optional[Problem]:
    """Why a file is refused before reading it, or None."""
    if candidate.is_symlink:
        return Problem(
            "symlink",
            f"'{candidate.name}' is a symbolic link; links are never followed",
            "copy the file itself into the landing folder",
            value=candidate.name,
        )
    if not candidate.is_regular:
        return Problem("not_a_file", f"'{candidate.name}' is not a regular file", "upload a plain file")
    problem = name_problem(candidate.name)
    if problem:
        return problem
    if candidate.size > limits.max_bytes:
        return too_large(candidate.size, limits)
    try:
        file_format(candidate.name)
    except FileRejected as exc:
        return exc.problems[0]
    return None


def sensor_tick(
    engine: sa.Engine,
    landing: LandingFolder,
    cursor: Optional[str],
    limits: Optional[UploadLimits] = None,
    now: Optional[float] = None,
    budget_seconds: float = 20.0,
) -> Tick:
    """Scan the landing folder once; never raises for a bad file (its problem is recorded instead).

    Stable files are handled oldest first until `budget_seconds` are spent (hashing many large
    files must not outlast the sensor's time limit); the rest wait for the next tick.
    """
    limits = limits or UploadLimits.from_env()
    now = time.time() if now is None else now
    started = time.monotonic()
    state = _load_cursor(cursor)
    tick = Tick()
    landing.ensure()
    seen, requested = state["seen"], state["requested"]
    next_seen: dict[str, list] = {}
    next_requested: dict[str, list] = {}
    handled = 0
    for candidate in landing.scan():
        key = candidate.relative
        signature = [candidate.size, candidate.mtime_ns]
        if requested.get(key, [None, None])[:2] == signature:
            next_requested[key] = requested[key]  # its run is requested; the run will move it
            continue
        settled = now - candidate.mtime_ns / 1e9 >= limits.settle_seconds
        if not settled and seen.get(key) != signature:
            next_seen[key] = signature
            tick.waiting.append(key)
            continue
        if handled and time.monotonic() - started > budget_seconds:
            next_seen[key] = signature  # stable: handled first thing next tick
            tick.deferred.append(key)
            continue
        handled += 1
        try:
            _handle(engine, landing, candidate, limits, tick, next_requested)
        except Exception as exc:  # noqa: BLE001 - one bad file never stops the sensor
            next_seen[key] = signature
            tick.failures.append(key)
            tick.log.append(f"{key}: could not be registered, will retry next tick: {type(exc).__name__}: {exc}")
    stray = landing.stray_files()
    if stray:
        tick.log.append(
            f"{len(stray)} file(s) at the top of the landing folder are ignored ({', '.join(stray[:5])}): "
            f"move them into one of {', '.join(k + '/' for k in KIND_NAMES)}"
        )
    tick.cursor = json.dumps({"seen": next_seen, "requested": next_requested}, sort_keys=True)
    return tick


def _handle(
    engine: sa.Engine,
    landing: LandingFolder,
    candidate: Candidate,
    limits: UploadLimits,
    tick: Tick,
    next_requested: dict,
) -> None:
    key = candidate.relative
    modified = registry.dt.datetime.fromtimestamp(candidate.mtime_ns / 1e9, registry.dt.timezone.utc)
    problem = _preflight(candidate, limits)
    if problem is not None:
        with engine.begin() as conn:
            upload_id = registry.register(
                conn, file_name=candidate.name, kind=candidate.kind, sha256=None, size_bytes=candidate.size,
                modified_at=modified, status=registry.RECEIVED, current_path=key,
            )
            upload = registry.get(conn, upload_id)
        reject_upload(engine, landing, upload, [problem])
        tick.rejected.append(key)
        tick.log.append(f"{key}: rejected: {problem.describe()}")
        return

    sha = registry.sha256_of_file(candidate.path)
    with engine.begin() as conn:
        original = registry.originals_by_sha(conn, [sha]).get(sha)
        if original is not None and original.status == registry.RECEIVED and original.current_path == key:
            upload_id = original.upload_id  # registered before the cursor was saved: ask again (same run key)
        elif original is not None:
            upload_id = None
        else:
            upload_id = registry.register(
                conn, file_name=candidate.name, kind=candidate.kind, sha256=sha, size_bytes=candidate.size,
                modified_at=modified, status=registry.RECEIVED, current_path=key,
                run_key=registry.run_key_for(sha),
            )
    if upload_id is not None:
        next_requested[key] = [candidate.size, candidate.mtime_ns, upload_id]
        tick.requests.append(UploadRequest(upload_id, candidate.kind, candidate.name, sha, registry.run_key_for(sha)))
        tick.log.append(f"{key}: registered as upload {upload_id}, run requested")
        return
    _record_duplicate(engine, landing, candidate, sha, modified, original)
    tick.duplicates.append(key)
    tick.log.append(f"{key}: same bytes as upload {original.upload_id} ({original.file_name}, {original.status})")


def _record_duplicate(engine, landing: LandingFolder, candidate: Candidate, sha: str, modified, original) -> None:
    """Register the same bytes again as a DUPLICATE and archive them beside the original's fate."""
    archive = REJECTED if original.status == registry.REJECTED else PROCESSED
    target = landing.archive_target(archive, candidate.kind, candidate.name)
    location = landing.relative(target)
    summary = (
        f"same bytes as upload {original.upload_id} ('{original.file_name}', {original.status.lower()}, "
        f"now at {original.current_path}); not loaded again"
    )
    with engine.begin() as conn:
        registry.register(
            conn, file_name=candidate.name, kind=candidate.kind, sha256=sha, size_bytes=candidate.size,
            modified_at=modified, status=registry.DUPLICATE, duplicate_of=original.upload_id,
            error_summary=summary, current_path=location, processed_at=registry.utc_now(),
        )
    if archive == REJECTED:
        report = {
            "file": candidate.name,
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
    else:
        landing.move(candidate.path, target)
