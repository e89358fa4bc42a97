"""Manual exports of OWS tables (`ows_export/`), loaded like a database extract.

A file is named after its table and as-of date: `ows_feed_2026-11-01.csv`, or with a time,
`ows_feed_2026-11-01T093000Z.xlsx` (UTC). Its rows are typed and validated by the staging
suite of that table (the same rules as extracts), and all or nothing: one failing row refuses
the file. An export at least as new as the latest staged batch of its table replaces (full
tables) or upserts (incremental tables) `stg_ows_<table>`; an older one leaves staging alone.
Either way a table with a dimension gets its SCD2 history merged at the export's as-of time,
so a late export of an older date is slotted into history where it belongs.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Optional

import sqlalchemy as sa

from ows_pipeline.source.schema import SOURCE_TABLES_BY_NAME
from ows_pipeline.uploads.formats import FORMATS, parse_file
from ows_pipeline.uploads.schema import export_kind, match_header
from ows_pipeline.uploads.limits import UploadLimits
from ows_pipeline.uploads.names import shown_name
from ows_pipeline.uploads.problems import FileRejected, Problem, reject, shown
from ows_pipeline.uploads.reference import KeyCounts
from ows_pipeline.warehouse.batches import record_batch
from ows_pipeline.warehouse.schema.ledger import etl_batches

_NAME = re.compile(
    # what browsers and file managers add to a copy is allowed after the date: " (1)", " - Copy", "_copy"
    r"(?P<table>ows_[a-z_]+?)_(?P<date>\d{4}-\d{2}-\d{2})(?:T(?P<time>\d{6})Z?)?(?:[ _-][^.]*)?(?P<ext>\.[A-Za-z]+)",
    re.IGNORECASE,
)

# Tables with an SCD2 dimension, and the dimension's name.
DIMENSIONS = {
    "ows_project": "dim_project",
    "ows_feed": "dim_feed",
    "ows_match_process": "dim_match_process",
    "ows_workflow": "dim_workflow",
}


def export_target(file_name: str) -> tuple[str, dt.datetime]:
    """The OWS table and the as-of time (UTC) named by an export's file name."""
    expected = "name it <table>_<YYYY-MM-DD>.<ext>, e.g. ows_feed_2026-11-01.csv, with a table among: " + ", ".join(
        SOURCE_TABLES_BY_NAME
    )
    shown = shown_name(file_name)
    match = _NAME.fullmatch(file_name)
    if not match or match["ext"].lower() not in FORMATS:
        raise reject("export_name", f"'{shown}' does not name an OWS table and an as-of date", expected, value=shown)
    table = match["table"].lower()
    if table not in SOURCE_TABLES_BY_NAME:
        raise reject("export_name", f"'{shown_name(table)}' is not an OWS table", expected, value=shown)
    try:
        day = dt.date.fromisoformat(match["date"])
        clock = dt.time(int(match["time"][:2]), int(match["time"][2:4]), int(match["time"][4:])) if match["time"] else dt.time(0)
    except ValueError:
        raise reject("export_name", f"'{shown}' holds an impossible date or time", expected, value=shown) from None
    return table, dt.datetime.combine(day, clock, tzinfo=dt.timezone.utc)


@dataclass
class ExportRows:
    """The rows of an export (raw and typed), with their numbers in the file."""

    raw: object  # pandas DataFrame, as read
    clean: object  # pandas DataFrame, typed by staging
    issues: list
    row_numbers: list[int]
    warnings: list[Problem] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.row_numbers)


@dataclass
class ExportPlan:
    """A parsed export of one OWS table, ready to be validated and loaded in the caller's transaction."""

    table_name: str
    as_of: dt.datetime
    rows: ExportRows
    records_batch: bool = True  # the staging batch row is the upload's batch row

    @property
    def asset_key(self) -> str:
        return "ows_export_upload"

    def load(self, conn: sa.Connection, *, batch_id: str, source_file: str, loaded_at: dt.datetime):
        return load_export(conn, self, batch_id=batch_id, source_file=source_file, loaded_at=loaded_at)


def prepare_export(file_name: str, data: bytes, limits: UploadLimits) -> ExportPlan:
    """Parse an export and type it with the staging cleaner; FileRejected on any problem of the file."""
    import pandas as pd

    from ows_pipeline.staging.clean import clean_frame

    table_name, as_of = export_target(file_name)
    parsed = parse_file(file_name, data, limits)
    kind = export_kind(SOURCE_TABLES_BY_NAME[table_name].table)
    positions, problems, warnings = match_header(kind, parsed)
    if problems:
        raise FileRejected(problems)
    names = kind.column_names
    index = [positions[n] for n in names]
    columns = {n: [row[i] for row in parsed.rows] for n, i in zip(names, index)}
    del parsed.rows
    raw = pd.DataFrame({n: pd.Series(v, dtype=object) for n, v in columns.items()})
    del columns
    clean, issues = clean_frame(raw, table_name)
    warnings += normalised_texts(raw, clean, table_name, parsed.row_numbers)
    return ExportPlan(table_name, as_of, ExportRows(raw, clean, issues, parsed.row_numbers, warnings))


def normalised_texts(raw, clean, table_name: str, numbers: list[int], listed: int = 1000) -> list[Problem]:
    """A warning for each text value the staging cleaner changed (blanks trimmed, codes upper-cased)."""
    import numpy as np

    from ows_pipeline.staging.clean import column_kind

    warnings: list[Problem] = []
    changed_total = 0
    for column in SOURCE_TABLES_BY_NAME[table_name].table.columns:
        if column_kind(column) not in ("str", "code"):
            continue
        written = raw[column.name]
        is_text = written.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
        stored = clean[column.name].astype(object).to_numpy()
        values = written.to_numpy(dtype=object)
        changed = [i for i in np.flatnonzero(is_text) if _stored_text(stored[i]) != (values[i] or None)]
        changed_total += len(changed)
        for i in changed[: max(listed - len(warnings), 0)]:
            now = _stored_text(stored[i])
            what = f"stored as '{shown(now)}'" if now is not None else "a value of only blanks, stored as empty"
            warnings.append(Problem(
                "normalised", f"the value was changed on loading: {what} (blanks trimmed, codes upper-cased)",
                "nothing to do if that is meant; otherwise write the value as OWS holds it",
                row=int(numbers[i]), field=column.name, value=shown(values[i]), severity="WARNING",
            ))
    if changed_total > len(warnings):
        warnings.append(Problem("more_warnings", f"{changed_total - len(warnings):,} more changed values are not listed",
                                "see the warnings above: the others are of the same kinds", severity="WARNING"))
    return warnings


def _stored_text(value):
    return value if isinstance(value, str) else None


def refuse_without_parents(conn: sa.Connection, table_name: str, clean) -> None:
    """An export whose parent tables are not loaded at all cannot join: one refusal, not one per row."""
    from ows_pipeline.staging.suites import SUITES
    from ows_pipeline.warehouse.schema.staging import STAGING_TABLES

    missing = []
    for rule in SUITES[table_name]:
        parent = rule.params.get("table", "").removeprefix("stg_") if rule.kind == "references" else ""
        used = parent and bool(clean[rule.columns[0]].notna().any())
        if used and parent != table_name and parent not in missing and rule.severity == "ERROR":
            empty = conn.execute(sa.select(sa.literal(1)).select_from(STAGING_TABLES[parent]).limit(1)).first() is None
            if empty:
                missing.append(parent)
    if missing:
        exports = " and ".join(f"the {name} export" for name in missing)
        raise reject(
            "parents_not_loaded",
            f"{table_name} rows refer to {', '.join(missing)}, which the warehouse does not hold yet: "
            "no row could be matched",
            f"load {exports} (or run the extraction) first, then upload this file again",
        )


_RULE_FIXES = {
    "valid_type": "write {field} in its OWS form: timestamps YYYY-MM-DD HH:MM:SS (UTC, or with an offset), "
                  "dates YYYY-MM-DD, flags Y or N, ids and counts as whole numbers",
    "not_null": "fill in {field} on every row: OWS always has a value there",
    "max_length": "shorten {field} to the length OWS allows ({limit} characters)",
    "unique": "keep one row per {field}: remove or correct the repeated rows",
    "allowed_values": "use one of {values} in {field}",
    "code_format": "write {field} as OWS shows it: capital letters A-Z, digits and _ . - only",
    "min_value": "use a value of at least {minimum} in {field}",
    "not_before": "{field} must not be before {other}: check the two dates on this row",
    "not_in_future": "check {field}: it is after the export's as-of date in the file name",
    "references": "export the matching {parent} rows too (load its export first), or correct {field}",
    "one_open_per_key": "keep only one open run (empty end_date) per {field}",
}


def rule_fix(rule, field_name: Optional[str]) -> str:
    """The fix of a staging rule, in the words of someone correcting the file."""
    if rule is None or rule.kind not in _RULE_FIXES:
        return "correct the value in the file and upload it again"
    params = rule.params
    values = params.get("values", ())
    return _RULE_FIXES[rule.kind].format(
        field=field_name or ", ".join(rule.columns),
        limit=params.get("lengths", {}).get(field_name, "the"),
        values=", ".join(values),
        minimum=params.get("min"),
        other=rule.columns[-1] if len(rule.columns) > 1 else "",
        parent=params.get("table", "").removeprefix("stg_"),
    )


def latest_staged_as_of(conn: sa.Connection, table_name: str) -> Optional[dt.datetime]:
    """The as-of time of the newest successful staging batch of `table_name` (extract or export)."""
    query = sa.select(sa.func.max(etl_batches.c.as_of)).where(
        etl_batches.c.asset_key == f"stg_{table_name}", etl_batches.c.status == "SUCCESS"
    )
    value = conn.execute(query).scalar_one_or_none()
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value


def staged_counts(conn: sa.Connection, table_name: str, clean, full: bool) -> KeyCounts:
    """New, changed, unchanged and removed keys of `clean` against `stg_ows_<table>`."""
    import pandas as pd

    from ows_pipeline.staging.clean import clean_frame
    from ows_pipeline.staging.suites import key_columns
    from ows_pipeline.warehouse.schema.staging import STAGING_TABLES

    table = STAGING_TABLES[table_name]
    source = SOURCE_TABLES_BY_NAME[table_name].table
    names = [c.name for c in source.columns]
    key = list(key_columns(table_name))
    result = conn.execute(sa.select(*(table.c[n] for n in names)))
    staged_raw = pd.DataFrame(result.all(), columns=names, dtype=object)
    staged, _ = clean_frame(staged_raw, table_name)
    new_hash = pd.util.hash_pandas_object(clean[names], index=False).rename("new")
    old_hash = pd.util.hash_pandas_object(staged[names], index=False).rename("old")
    left = pd.concat([clean[key].reset_index(drop=True), new_hash.reset_index(drop=True)], axis=1)
    right = pd.concat([staged[key].reset_index(drop=True), old_hash.reset_index(drop=True)], axis=1)
    both = left.merge(right, on=key, how="outer", indicator=True)
    new = int((both["_merge"] == "left_only").sum())
    removed = int((both["_merge"] == "right_only").sum()) if full else 0
    matched = both[both["_merge"] == "both"]
    changed = int((matched["new"] != matched["old"]).sum())
    return KeyCounts(new=new, changed=changed, unchanged=len(matched) - changed, removed=removed)


def load_export(conn: sa.Connection, plan: ExportPlan, *, batch_id: str, source_file: str, loaded_at: dt.datetime):
    """Validate with the staging suite and load, all or nothing, inside the caller's transaction."""
    import numpy as np

    from ows_pipeline.staging.quarantine import ERROR_COLUMNS, error_rows, error_tuples, load_staging, rule_context
    from ows_pipeline.staging.rules import evaluate_suite
    from ows_pipeline.staging.suites import ERROR, SUITES
    from ows_pipeline.warehouse.bulk import insert_rows
    from ows_pipeline.warehouse.schema.ledger import data_errors

    table_name, rows = plan.table_name, plan.rows
    source = SOURCE_TABLES_BY_NAME[table_name]
    refuse_without_parents(conn, table_name, rows.clean)
    numbers = np.asarray(rows.row_numbers, dtype=np.int64)
    # the staging batch's own rule context: lookups into the staged tables, in this transaction
    outcomes = evaluate_suite(SUITES[table_name], rows.clean, rows.raw, rows.issues, rule_context(conn, plan.as_of))
    errors = error_rows(outcomes, rows.clean, rows.raw, numbers, table_name, batch_id, source_file, loaded_at)
    failing = errors[errors["severity"] == ERROR]
    if len(failing):
        rules = {rule.name: rule for rule in SUITES[table_name]}
        raise FileRejected(
            [
                Problem(rule=r.rule, message=str(r.message).rstrip("."), row=r.row_number, field=r.field,
                        value=shown(r.value), fix=rule_fix(rules.get(r.rule), r.field))
                for r in failing.itertuples(index=False)
            ]
        )
    insert_rows(conn, data_errors, ERROR_COLUMNS, error_tuples(errors))
    full = source.mode == "full"
    latest = latest_staged_as_of(conn, table_name)
    late = latest is not None and plan.as_of < latest
    details: dict = {"table": table_name, "as_of": plan.as_of, "late": late, "materialized": []}
    dimension = DIMENSIONS.get(table_name)
    counts = None
    if dimension is None and not late:
        counts = staged_counts(conn, table_name, rows.clean, full)
    if not late:
        load_staging(conn, table_name, rows.clean, batch_id, source.mode)
        details["materialized"].append(f"stg_{table_name}")
    if dimension is not None:
        counts = merge_dimension(conn, table_name, rows.clean, plan.as_of, batch_id, full=full,
                                 source_file=source_file)
        details["materialized"].append(dimension)
        details["dimension"] = dimension
    if counts is None:
        counts = KeyCounts(unchanged=0)
        details["note"] = "older than the staged data and no dimension to slot it into: nothing changed"
    record_batch(  # a late export is not a staging batch: it must not count as the newest staged data
        conn,
        batch_id=batch_id,
        asset_key=plan.asset_key if late else f"stg_{table_name}",
        source=source_file,
        mode=f"upload-{source.mode}" + ("-late" if late else ""),
        as_of=plan.as_of,
        rows_in=len(rows),
        rows_loaded=len(rows),
        rows_rejected=0,
        status="SUCCESS",
        message=counts.describe(),
        started_at=loaded_at,
    )
    details["as_of"] = plan.as_of.isoformat()
    details["late"] = "yes" if late else "no"
    return counts, details


def with_project_metadata(conn: sa.Connection, frame):
    """Project rows with business unit, cost centre and owner from `ref_project_metadata` where it has them."""
    import pandas as pd

    from ows_pipeline.warehouse.schema.uploads import ref_project_metadata as ref

    columns = ("business_unit", "cost_centre", "owner")
    found = pd.DataFrame(
        conn.execute(sa.select(ref.c.project_code, *(ref.c[c] for c in columns))).all(),
        columns=["project_code", *columns],
        dtype=object,
    )
    out = frame.copy()
    if "cost_centre" not in out.columns:
        out["cost_centre"] = pd.Series([None] * len(out), dtype=object, index=out.index)
    if len(found) == 0 or len(out) == 0:
        return out
    joined = out[["project_code"]].merge(found, on="project_code", how="left")
    for column in columns:
        overlay = joined[column].to_numpy(dtype=object)
        keep = pd.isna(overlay)
        current = out[column].astype(object).to_numpy()
        out[column] = pd.Series([c if k else o for c, o, k in zip(current, overlay, keep)], index=out.index,
                                dtype=out[column].dtype if column != "cost_centre" else object)
    return out


def dimension_counts(conn: sa.Connection, spec, frame, as_of: dt.datetime, *, full: bool) -> KeyCounts:
    """Keys of the batch against the dimension's state at `as_of` (before merging): new, changed, same, removed."""
    from ows_pipeline.scd2 import row_hashes

    dim = spec.table
    key = spec.natural_key
    at = sa.bindparam("at", as_of, type_=dim.c.valid_from.type)
    state = {
        tuple(r[:-2]): (r[-2], r[-1])
        for r in conn.execute(
            sa.select(*(dim.c[k] for k in key), dim.c.row_hash, dim.c.is_deleted).where(
                dim.c.valid_from <= at, sa.or_(dim.c.valid_to.is_(None), dim.c.valid_to > at)
            )
        )
    }
    live = {k: h for k, (h, deleted) in state.items() if not deleted}
    if not live:  # nothing live at that time (e.g. the first load): every key is new
        return KeyCounts(new=len(frame))
    hashes = row_hashes(frame, spec.tracked)
    keys = list(zip(*(frame[k].astype(object).map(lambda v: None if pd_isna(v) else int(v)) for k in key)))
    new = changed = unchanged = 0
    for k, h in zip(keys, hashes):
        if k not in live:
            new += 1
        elif live[k] != h:
            changed += 1
        else:
            unchanged += 1
    removed = len(set(live) - set(keys)) if full else 0
    return KeyCounts(new=new, changed=changed, unchanged=unchanged, removed=removed)


def pd_isna(value) -> bool:
    import pandas as pd

    return value is None or bool(pd.isna(value))


def merge_dimension(conn, table_name: str, clean, as_of: dt.datetime, batch_id: str, *, full: bool,
                    source_file: str) -> KeyCounts:
    """Merge the export into its SCD2 dimension at `as_of`, in the caller's transaction; count the keys."""
    from ows_pipeline.scd2 import merge_scd2
    from ows_pipeline.warehouse.schema.dimensions import DIMENSIONS as SPECS

    spec = SPECS[DIMENSIONS[table_name]]
    rows = with_project_metadata(conn, clean) if table_name == "ows_project" else clean
    counts = dimension_counts(conn, spec, rows, as_of, full=full)
    merge_scd2(
        conn, spec, rows, as_of, full=full, batch_id=batch_id, on_duplicate="fail",
        source_file=source_file, asset_key=spec.asset_key, record_etl_batch=False,
        source=source_file,
    )
    return counts
