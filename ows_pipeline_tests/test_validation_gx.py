"""Great Expectations runs the same suite as the fast path, agrees with it, and keeps Data Docs history."""

from __future__ import annotations

import sqlalchemy as sa

from ows_pipeline.staging import gx_runner
from ows_pipeline.staging.data_docs import data_docs_dir, data_docs_index_path
from ows_pipeline.staging.quarantine import stage_rows
from ows_pipeline.staging.suites import SUITES
from ows_pipeline.warehouse.schema import create_warehouse_tables
from ows_pipeline_tests.test_staging_rules import AS_OF, _stage_valid_parents, seeded_runs

def test_gx_counts_match_the_fast_path_and_data_docs_keep_history(sqlite_url, ows_home, monkeypatch):
    engine = sa.create_engine(sqlite_url)
    create_warehouse_tables(engine)
    _stage_valid_parents(engine, "ows_workflow_run")
    result = stage_rows(engine, "ows_workflow_run", seeded_runs(), batch_id="gx-1", as_of=AS_OF, sample_rows=1000)
    engine.dispose()

    docs = ows_home / "elsewhere"
    monkeypatch.setenv("OWS_DATA_DOCS_DIR", str(docs))
    assert data_docs_dir() == docs and data_docs_index_path() == docs / "index.html"
    report = gx_runner.run_suite("ows_workflow_run", SUITES["ows_workflow_run"], result.sample, result.check_results,
                                 batch_id="gx-1")
    assert not report.success
    for outcome in result.check_results:
        expectations = report.for_rule(outcome.rule.name)
        assert expectations, f"no GX expectation for {outcome.rule.name}"
        gx_count = sum(e.unexpected_count or 0 for e in expectations)
        # (The untyped value, records_loaded "abc", is in a nullable column: not_null agrees too.)
        assert gx_count == outcome.unexpected_count, outcome.rule.name
    sample = report.for_rule("allowed_status")[0]
    assert sample.partial_unexpected == ["DONE"]

    assert report.page_path is not None and report.page_path.exists()
    assert report.page_path.is_relative_to(docs)
    # A second validation (another table) keeps the first one listed on the index.
    projects = stage_rows(sa.create_engine(sqlite_url), "ows_project", _projects(), batch_id="gx-2", as_of=AS_OF,
                          sample_rows=1000)
    second = gx_runner.run_suite("ows_project", SUITES["ows_project"], projects.sample, projects.check_results,
                                 batch_id="gx-2")
    assert second.success and report.page_path.exists()
    index = data_docs_index_path().read_text()
    assert "stg_ows_workflow_run" in index and "stg_ows_project" in index


def _projects():
    from ows_pipeline_tests.test_staging_rules import valid_frames

    return valid_frames()["ows_project"]
