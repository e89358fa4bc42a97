"""Processing one registered upload, all or nothing.

Success: the rows are loaded, the registry, `etl_batches` and warnings in `data_errors` are
written in the same transaction, then the file moves to `processed/<kind>/`.
Refusal: nothing is loaded; every problem goes to `data_errors`, the registry says REJECTED,
and the file moves to `rejected/<kind>/` beside `<file>.errors.json`. The bytes are kept.
A failure of the warehouse itself (not of the file) leaves the file where it is, still
RECEIVED, so that re-executing the run loads it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Optional

import sqlalchemy as sa

from ows_pipeline.uploads import registry
from ows_pipeline.uploads.formats import parse_file
from ows_pipeline.uploads.schema import REFERENCE_KINDS, validate
from ows_pipeline.uploads.landing import PROCESSED, REJECTED, LandingFolder, read_upload
from ows_pipeline.uploads.limits import UploadLimits
from ows_pipeline.uploads.problems import ERROR, FileRejected, Problem, reject, shown
from ows_pipeline.uploads.reference import KeyCounts, load_reference
from ows_pipeline.warehouse.schema.uploads import REFERENCE_TABLES
from ows_pipeline.warehouse.batches import new_batch_id, record_batch, record_failed_batch
from ows_pipeline.warehouse.schema.ledger import data_errors

SKIPPED = "SKIPPED"


class UploadNotFound(RuntimeError):
    """The registered file is no longer where the registry says it is."""


@dataclass
class UploadOutcome:
    """What processing did with one upload."""

    upload_id: int
    kind: str
    file_name: str
    status: str  # LOADED, REJECTED or SKIPPED (already processed)
    location: str  # where the file now lies, relative to the landing folder
    asset_key: str
    batch_id: Optional[str] = None
    rows: int = 0
    counts: Optional[KeyCounts] = None
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    details: dict = field(default_factory=dict)

    @property
    def summary(self) -> str:
        if self.status == registry.LOADED and self.counts is not None:
            return f"{self.file_name}: {self.rows} rows, keys {self.counts.describe()}"
        if self.status == registry.REJECTED:
            return f"{self.file_name} rejected: {error_summary(self.problems)}"
        return f"{self.file_name}: {self.status.lower()}"


def asset_key_of(kind: str) -> str:
    """The asset an upload of `kind` materializes."""
    return REFERENCE_KINDS[kind].asset_key if kind in REFERENCE_KINDS else "ows_export_upload"


def error_summary(problems: list[Problem]) -> str:
    errors = [p for p in problems if p.severity == ERROR] or problems
    if not errors:
        return ""
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return errors[0].describe() + more


def _error_rows(problems: list[Problem], *, batch_id: str, asset_key: str, source_file: str, now: dt.datetime):
    return [
        {
            "batch_id": batch_id,
            "asset_key": asset_key,
            "source_file": source_file,
            "row_number": p.row,
            "record_key": None,
            "field": p.field,
            "value": p.value,
            "rule": p.rule,
            "severity": p.severity,
            "message": p.message + (f". Fix: {p.fix}" if p.fix else ""),
            "created_at": now,
        }
        for p in problems
    ]


def _insert_problems(conn: sa.Connection, problems: list[Problem], **where) -> None:
    rows = _error_rows(problems, **where)
    for start in range(0, len(rows), 5000):
        conn.execute(sa.insert(data_errors), rows[start : start + 5000])


def reject_upload(
    engine: sa.Engine,
    landing: LandingFolder,
    upload: sa.Row,
    problems: list[Problem],
    *,
    warnings: list[Problem] = (),
    batch_id: Optional[str] = None,
    run_id: Optional[str] = None,
    details: Optional[dict] = None,
) -> UploadOutcome:
    """Record the refusal (registry, data_errors, failed batch) and move the file to `rejected/`."""
    batch_id = batch_id or new_batch_id()
    now = registry.utc_now()
    asset_key = asset_key_of(upload.kind)
    source = landing.absolute(upload.current_path)
    target = landing.archive_target(REJECTED, upload.kind, source.name)
    location = landing.relative(target)
    summary = error_summary(problems)
    with engine.begin() as conn:
        _insert_problems(
            conn, list(problems) + list(warnings), batch_id=batch_id, asset_key=asset_key,
            source_file=upload.file_name, now=now,
        )
        registry.update(
            conn,
            upload.upload_id,
            status=registry.REJECTED,
            error_count=sum(1 for p in problems if p.severity == ERROR),
            error_summary=summary[:4000],
            current_path=location,
            batch_id=batch_id,
            run_id=run_id,
            processed_at=now,
        )
    record_failed_batch(
        engine,
        batch_id=batch_id,
        asset_key=asset_key,
        run_id=run_id,
        source=upload.file_name,
        mode="upload",
        rows_in=None,
        rows_loaded=0,
        rows_rejected=None,
        message=summary[:4000],
    )
    report = {
        "file": upload.file_name,
        "kind": upload.kind,
        "upload_id": upload.upload_id,
        "sha256": upload.sha256,
        "size_bytes": upload.size_bytes,
        "received_at": upload.received_at,
        "rejected_at": now,
        "batch_id": batch_id,
        "status": registry.REJECTED,
        "summary": summary,
        "error_count": sum(1 for p in problems if p.severity == ERROR),
        "problems": [p.as_dict() for p in problems],
        "warnings": [p.as_dict() for p in warnings],
        "how_to_fix": "Correct every problem listed, then drop the corrected file into "
        f"{upload.kind}/ again. This file is kept unchanged beside this report.",
    }
    try:
        landing.move_with_report(source, target, report)
    except OSError as exc:
        location = _keep_in_place(engine, landing, upload, source, target, report, exc)
    return UploadOutcome(
        upload_id=upload.upload_id,
        kind=upload.kind,
        file_name=upload.file_name,
        status=registry.REJECTED,
        location=location,
        asset_key=asset_key,
        batch_id=batch_id,
        problems=list(problems),
        warnings=list(warnings),
        details=details or {},
    )


def _keep_in_place(engine, landing: LandingFolder, upload, source, target, report: dict, exc: OSError) -> str:
    """The refused object cannot be moved (permissions, a busy folder): say so everywhere it is shown."""
    note = (
        f"it could not be moved to {landing.relative(target)} ({exc.strerror or type(exc).__name__}), so it is "
        f"still in {upload.kind}/: delete or move it yourself; it will not be read again"
    )
    report["summary"] = f"{report['summary']} Note: {note}."
    report["how_to_fix"] = f"{report['how_to_fix']} Note: {note}."
    try:
        landing.write_report(target, report)
    except OSError:
        pass  # the registry and the run still say it
    with engine.begin() as conn:
        registry.update(conn, upload.upload_id, current_path=upload.current_path,
                        error_summary=report["summary"][:4000])
    return upload.current_path


def report_refusal(engine: sa.Engine, upload: sa.Row, run_id: Optional[str]) -> UploadOutcome:
    """The outcome of an upload the sensor refused (or a copy of a refused one), for the run that reports it."""
    asset_key = asset_key_of(upload.kind)
    with engine.begin() as conn:
        if upload.status == registry.DUPLICATE:
            problems = [Problem("duplicate_of_rejected", upload.error_summary or "the same bytes were refused before",
                                "correct the problems of the first upload and upload the corrected file")]
        else:
            rows = conn.execute(
                sa.select(data_errors).where(data_errors.c.batch_id == upload.batch_id).order_by(data_errors.c.error_id)
            ).all() if upload.batch_id else []
            problems = [
                Problem(r.rule, (r.message or '').rstrip('.'), row=r.row_number, field=r.field, value=r.value, severity=r.severity)
                for r in rows
            ] or [Problem("rejected", upload.error_summary or "refused")]
        registry.update(conn, upload.upload_id, run_id=run_id)
    return UploadOutcome(
        upload_id=upload.upload_id, kind=upload.kind, file_name=upload.file_name, status=registry.REJECTED,
        location=upload.current_path, asset_key=asset_key, batch_id=upload.batch_id,
        problems=[p for p in problems if p.severity == ERROR], warnings=[p for p in problems if p.severity != ERROR],
        details={"refused_by": "ows_upload_sensor"},
    )


def process_upload(
    engine: sa.Engine,
    landing: LandingFolder,
    upload_id: int,
    *,
    limits: Optional[UploadLimits] = None,
    run_id: Optional[str] = None,
) -> UploadOutcome:
    """Load one RECEIVED upload or reject it, all or nothing. Re-processing a finished one is a no-op."""
    limits = limits or UploadLimits.from_env()
    with engine.connect() as conn:
        upload = registry.get(conn, upload_id)
    if upload is None:
        raise LookupError(f"upload {upload_id} is not in upload_registry")
    asset_key = asset_key_of(upload.kind)
    if upload.run_id is None and (
        upload.status == registry.REJECTED
        or (upload.status == registry.DUPLICATE and upload.current_path.startswith(REJECTED + "/"))
    ):
        return report_refusal(engine, upload, run_id)
    if upload.status != registry.RECEIVED:
        return UploadOutcome(
            upload_id, upload.kind, upload.file_name, SKIPPED, upload.current_path, asset_key, upload.batch_id
        )
    path = landing.absolute(upload.current_path)
    batch_id = new_batch_id()
    read_at = _signature(path)
    try:
        data = read_upload(path, limits.max_bytes)
    except FileNotFoundError:
        with engine.begin() as conn:
            registry.update(
                conn, upload_id, status=registry.REJECTED, run_id=run_id, processed_at=registry.utc_now(),
                error_summary="the file was removed from the landing folder before it was processed",
            )
        raise UploadNotFound(
            f"{upload.current_path} (upload {upload_id}) is no longer in the landing folder {landing.root}; "
            "it was moved or deleted by hand. Drop the file again to upload it."
        ) from None
    except OverflowError as exc:
        return reject_upload(engine, landing, upload, [too_large(exc.args[0], limits)], batch_id=batch_id, run_id=run_id)
    except OSError as exc:
        problem = Problem("not_a_file", f"the upload cannot be opened as a plain file: {exc.strerror or exc}",
                          "upload the file itself, not a link or a special file")
        return reject_upload(engine, landing, upload, [problem], batch_id=batch_id, run_id=run_id)
    sha = hashlib.sha256(data).hexdigest()
    if (upload.sha256 and sha != upload.sha256) or read_at is None or read_at[0] != len(data):
        problem = Problem(
            "changed_after_arrival",
            "the file changed after it was registered (it was still being written or was replaced)",
            "write the file elsewhere and move it into the landing folder when complete, then upload again",
        )
        return reject_upload(engine, landing, upload, [problem], batch_id=batch_id, run_id=run_id)

    try:
        plan = prepare(upload.kind, upload.file_name, data, limits)
    except FileRejected as exc:
        return reject_upload(engine, landing, upload, exc.problems, batch_id=batch_id, run_id=run_id)
    except MemoryError:
        problem = Problem("too_large_to_read", "reading the file needs more memory than this worker has",
                          "split the file into smaller ones (or send it as CSV), and upload them one by one")
        return reject_upload(engine, landing, upload, [problem], batch_id=batch_id, run_id=run_id)
    except (RecursionError, ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        problem = Problem("unreadable", f"the file cannot be read ({shown(type(exc).__name__ + ': ' + str(exc)[:200])})",
                          "export the data again from its source, as CSV UTF-8 or .xlsx")
        return reject_upload(engine, landing, upload, [problem], batch_id=batch_id, run_id=run_id)
    del data

    target = landing.archive_target(PROCESSED, upload.kind, path.name)
    location = landing.relative(target)
    now = registry.utc_now()
    try:
        with _writing(engine) as conn:
            counts, details = plan.load(conn, batch_id=batch_id, source_file=upload.file_name, loaded_at=now)
            _insert_problems(
                conn, plan.rows.warnings, batch_id=batch_id, asset_key=plan.asset_key,
                source_file=upload.file_name, now=now,
            )
            if not getattr(plan, "records_batch", False):
                record_batch(
                    conn,
                    batch_id=batch_id,
                    asset_key=plan.asset_key,
                    run_id=run_id,
                    source=upload.file_name,
                    mode="upload",
                    rows_in=len(plan.rows),
                    rows_loaded=len(plan.rows),
                    rows_rejected=0,
                    status="SUCCESS",
                    message=counts.describe(),
                    started_at=now,
                )
            registry.update(
                conn,
                upload.upload_id,
                status=registry.LOADED,
                current_path=location,
                batch_id=batch_id,
                run_id=run_id,
                rows_in=len(plan.rows),
                keys_new=counts.new,
                keys_changed=counts.changed,
                keys_unchanged=counts.unchanged,
                keys_removed=counts.removed,
                error_count=0,
                error_summary=None,
                processed_at=registry.utc_now(),
            )
            if _signature(path) != read_at:  # still being written: roll everything back
                raise reject(
                    "changed_while_loading",
                    "the file changed while it was being loaded (something is still writing to it)",
                    "let the copy finish (or write the file elsewhere and move it in when complete), "
                    "then upload it again",
                )
    except FileRejected as exc:  # refused by a rule that needs the warehouse (rolled back)
        return reject_upload(
            engine, landing, upload, exc.problems, warnings=plan.rows.warnings, batch_id=batch_id, run_id=run_id
        )
    landing.move(path, target)
    return UploadOutcome(
        upload_id=upload.upload_id,
        kind=upload.kind,
        file_name=upload.file_name,
        status=registry.LOADED,
        location=location,
        asset_key=plan.asset_key,
        batch_id=batch_id,
        rows=len(plan.rows),
        counts=counts,
        warnings=plan.rows.warnings,
        details=details,
    )


def _signature(path) -> Optional[tuple]:
    try:
        info = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns


@contextmanager
def _writing(engine: sa.Engine):
    """One transaction that takes the write lock up front (SQLite `BEGIN IMMEDIATE`)."""
    with engine.connect() as conn:
        conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            yield conn


def too_large(size: int, limits: UploadLimits) -> Problem:
    return Problem(
        "file_too_large",
        f"the file has {size:,} bytes, more than the limit of {limits.max_bytes:,} (OWS_UPLOAD_MAX_BYTES)",
        "split it into smaller files, or raise OWS_UPLOAD_MAX_BYTES",
    )


@dataclass
class ReferencePlan:
    """A validated reference list, ready to replace its table."""

    kind_name: str
    rows: object  # ValidatedRows

    @property
    def asset_key(self) -> str:
        return REFERENCE_KINDS[self.kind_name].asset_key

    def load(self, conn: sa.Connection, *, batch_id: str, source_file: str, loaded_at: dt.datetime):
        kind = REFERENCE_KINDS[self.kind_name]
        counts = load_reference(
            conn, REFERENCE_TABLES[self.kind_name], kind, self.rows,
            batch_id=batch_id, source_file=source_file, loaded_at=loaded_at,
        )
        return counts, {"table": REFERENCE_TABLES[self.kind_name].name}


def prepare(kind: str, file_name: str, data: bytes, limits: UploadLimits):
    """Parse and validate an upload's bytes into a plan that can load it; FileRejected otherwise."""
    if kind == "ows_export":
        from ows_pipeline.uploads.exports import prepare_export

        return prepare_export(file_name, data, limits)
    if kind not in REFERENCE_KINDS:
        raise reject("unknown_kind", f"'{kind}' is not an upload kind", "use feed_sla/ or project_metadata/")
    table = parse_file(file_name, data, limits)
    rows, problems = validate(REFERENCE_KINDS[kind], table, limits.max_problems)
    if problems:
        raise FileRejected(problems)
    return ReferencePlan(kind, rows)
