"""The corpus of bad uploads: each is rejected with its own clear message, nothing is loaded,
the original bytes are kept beside `<file>.errors.json`, and `data_errors` holds the problems."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from ows_pipeline.resources import make_engine
from ows_pipeline.uploads.landing import LandingFolder
from ows_pipeline.uploads.names import shown_name
from ows_pipeline.uploads.problems import FileRejected
from ows_pipeline.uploads.processing import error_summary, prepare, process_upload
from ows_pipeline.uploads.sensing import preflight, sensor_tick
from ows_pipeline.warehouse.schema.uploads import ref_feed_sla, ref_project_metadata, upload_registry
from ows_pipeline.warehouse.schema import create_warehouse_tables, data_errors
from ows_pipeline_tests.upload_corpus import ACCEPTED_WITH_WARNINGS, BAD_FILES, CORPUS_LIMITS, BadFile

LATER = time.time() + 3600  # every file counts as settled


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request, tmp_path):
    """Every corpus file on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'warehouse.db'}"
    return request.getfixturevalue("pg_url")


def _upload(tmp_path: Path, bad: BadFile, url: str):
    engine = make_engine(url, role="warehouse")
    create_warehouse_tables(engine)
    landing = LandingFolder(tmp_path / "landing")
    landing.ensure()
    path = landing.root / bad.kind / bad.name
    bad.write(path)
    original = None if path.is_symlink() or path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    first = sensor_tick(engine, landing, None, CORPUS_LIMITS, now=LATER)  # first sight: waits to settle
    tick = sensor_tick(engine, landing, first.cursor, CORPUS_LIMITS, now=LATER + 1)
    assert not tick.failures, tick.log
    outcomes = [process_upload(engine, landing, r.upload_id, limits=CORPUS_LIMITS) for r in tick.requests]
    return engine, landing, original, outcomes


def test_corpus_has_at_least_30_distinct_bad_files():
    assert len(BAD_FILES) >= 30
    assert len({b.case for b in BAD_FILES}) == len(BAD_FILES)


@pytest.mark.parametrize("bad", BAD_FILES, ids=[b.case for b in BAD_FILES])
def test_bad_file_is_rejected_with_its_own_message_and_nothing_loaded(tmp_path, bad, url):
    engine, landing, original, outcomes = _upload(tmp_path, bad, url)
    with engine.connect() as conn:
        (entry,) = conn.execute(sa.select(upload_registry)).all()
        errors = conn.execute(sa.select(data_errors).where(data_errors.c.severity == "ERROR")).all()
        loaded = conn.execute(sa.select(sa.func.count()).select_from(ref_feed_sla)).scalar_one()
        loaded += conn.execute(sa.select(sa.func.count()).select_from(ref_project_metadata)).scalar_one()
        staged = conn.execute(sa.text("SELECT COUNT(*) FROM stg_ows_project")).scalar_one()
    assert entry.status == "REJECTED", entry.error_summary
    # every refusal, by the sensor or by the run, has its run, which fails (and so sends the failure notice)
    assert [o.status for o in outcomes] == ["REJECTED"], [o.summary for o in outcomes]
    assert loaded == 0 and staged == 0
    rules = {e.rule for e in errors}
    assert bad.rule in rules, (rules, entry.error_summary)
    assert all(e.source_file == shown_name(bad.name) for e in errors)
    assert all(e.message for e in errors)
    # the file now lies in rejected/<kind>/ with its bytes unchanged, beside its report
    assert entry.current_path.startswith(f"rejected/{bad.kind}/")
    kept = landing.root / entry.current_path
    assert os.path.lexists(kept)
    if original is not None:
        assert hashlib.sha256(kept.read_bytes()).hexdigest() == original
    report = json.loads(Path(str(kept) + ".errors.json").read_text(encoding="utf-8"))
    assert report["file"] == shown_name(bad.name) and report["status"] == "REJECTED"
    assert any(p["rule"] == bad.rule and p["message"] and p["fix"] for p in report["problems"])
    assert not list((landing.root / bad.kind).iterdir()), "nothing is left in the drop folder"
    # nothing was written outside the landing folder (besides the warehouse and the symlink's target)
    assert sorted(p.name for p in tmp_path.iterdir()) in (
        ["landing", "warehouse.db", "warehouse.db-shm", "warehouse.db-wal"],
        ["landing", "warehouse.db"],
        ["landing", "outside_secret.csv", "warehouse.db", "warehouse.db-shm", "warehouse.db-wal"],
        ["landing", "outside_secret.csv", "warehouse.db"],
        ["landing"],  # PostgreSQL
        ["landing", "outside_secret.csv"],
    )


def test_every_bad_file_has_its_own_message(tmp_path):
    """Checked on the pure steps (refusal before reading, then parsing and validation)."""
    summaries = {}
    for index, bad in enumerate(BAD_FILES):
        landing = LandingFolder(tmp_path / str(index) / "landing")
        landing.ensure()
        bad.write(landing.root / bad.kind / bad.name)
        (candidate,) = landing.scan()
        problem = preflight(candidate, CORPUS_LIMITS)
        if problem is not None:
            summaries[bad.case] = error_summary([problem])
            continue
        try:
            prepare(bad.kind, bad.name, candidate.path.read_bytes(), CORPUS_LIMITS)
        except FileRejected as exc:
            summaries[bad.case] = error_summary(exc.problems)
        else:  # refused by the staging suite, which needs the warehouse (the test above covers it)
            assert bad.kind == "ows_export", bad.case
    assert len(set(summaries.values())) == len(summaries), summaries


@pytest.mark.parametrize("accepted", ACCEPTED_WITH_WARNINGS, ids=[a.case for a in ACCEPTED_WITH_WARNINGS])
def test_warnings_do_not_refuse_the_file(tmp_path, accepted, url):
    engine, landing, _original, outcomes = _upload(tmp_path, accepted, url)
    (outcome,) = outcomes
    assert outcome.status == "LOADED"
    assert accepted.rule in {w.rule for w in outcome.warnings}
    with engine.connect() as conn:
        warnings = conn.execute(sa.select(data_errors.c.rule, data_errors.c.severity)).all()
        rows = conn.execute(sa.select(ref_feed_sla)).all()
    assert (accepted.rule, "WARNING") in warnings
    assert len(rows) == 1


def test_formula_like_text_is_kept_verbatim(tmp_path):
    formula = next(a for a in ACCEPTED_WITH_WARNINGS if a.rule == "formula_like")
    engine, _landing, _original, _outcomes = _upload(tmp_path, formula, f"sqlite:///{tmp_path / 'warehouse.db'}")
    with engine.connect() as conn:
        row = conn.execute(sa.select(ref_feed_sla)).one()
    assert row.owner_team == '=HYPERLINK("http://x")'
    assert row.escalation_contact == "@SUM(A1)"
