"""Great Expectations 1.x: run a staging suite on a cleaned batch and publish Data Docs.

Imported only inside the staging step (Great Expectations costs seconds and hundreds of MB
to import). The fast path (`ows_pipeline.staging.rules`, `set_rules`) decides quarantine and
gives the checks their exact numbers; this module runs the same suite with GX for reporting, on
a bounded sample of the batch (`StagingBatch.sample`: failing rows first, then the first rows):
one validation per table and batch, result format SUMMARY (counts, percentages and a sample of
failing values), progress bars off, an ephemeral context whose suites, validation results and
Data Docs live on disk under `data_docs_dir()`, so the site keeps every table's history.

Rules a sample cannot show by itself (value types after cleaning, uniqueness over the batch,
lookups into other staged tables, open runs across batches, future dates, cut display texts)
are shown through a per-row column `rule__<name>` computed on the whole batch, expected True.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from ows_pipeline.staging.batch import DERIVED_KINDS
from ows_pipeline.staging.data_docs import data_docs_dir
from ows_pipeline.staging.rules import RuleOutcome
from ows_pipeline.staging.suites import Rule

DATASOURCE = "ows_warehouse"

# Value types are not checked with GX's type expectations: under pandas 3, GX 1.24 reports a
# `str` column as `str` (not `object`), a nullable `Int64` one as `int64`, and
# `expect_column_values_to_be_in_type_list` fails columns holding nulls. Types are checked
# with pandas' own dtypes (`clean.dtype_problems`) and per value by the cleaning step; GX
# shows the per-row outcome through `rule__valid_type`.


@dataclass
class ExpectationSummary:
    """One GX expectation's result, tied back to its rule."""

    rule: str
    expectation: str
    column: Optional[str]
    success: bool
    unexpected_count: Optional[int]
    unexpected_percent: Optional[float]
    partial_unexpected: list = field(default_factory=list)
    observed_value: Optional[str] = None


@dataclass
class GxReport:
    """The GX validation of one staging batch and where its Data Docs page is."""

    success: bool
    expectations: list[ExpectationSummary]
    page_path: Optional[Path]
    index_path: Path
    seconds: float
    rows: int = 0  # rows validated (a bounded sample of the batch)

    def for_rule(self, rule_name: str) -> list[ExpectationSummary]:
        return [e for e in self.expectations if e.rule == rule_name]


def derived_column(rule: Rule) -> str:
    return f"rule__{rule.name}"


def gx_frame(clean: pd.DataFrame, outcomes: list[RuleOutcome]) -> pd.DataFrame:
    """The cleaned rows plus a pass/fail column for each rule GX cannot express itself.

    Columns already present (a `StagingBatch.sample`) are kept as they are.
    """
    extra = {}
    for outcome in outcomes:
        if outcome.rule.kind in DERIVED_KINDS and derived_column(outcome.rule) not in clean.columns:
            ok = np.ones(len(clean), dtype=bool)
            ok[outcome.failing_positions] = False
            extra[derived_column(outcome.rule)] = ok
    return clean.assign(**extra) if extra else clean


def expectations_for(rule: Rule) -> list:
    """The GX expectations that express `rule` (imports great_expectations)."""
    import great_expectations.expectations as gxe

    meta = {"rule": rule.name, "severity": rule.severity, "description": rule.description}
    kind, cols = rule.kind, rule.columns
    out: list = []
    if kind in DERIVED_KINDS:
        out.append(gxe.ExpectColumnValuesToBeInSet(column=derived_column(rule), value_set=[True], meta=meta))
    elif kind == "not_null":
        out += [gxe.ExpectColumnValuesToNotBeNull(column=c, meta=meta) for c in cols]
    elif kind == "max_length":
        lengths = rule.params["lengths"]
        out += [gxe.ExpectColumnValueLengthsToBeBetween(column=c, max_value=lengths[c], meta=meta) for c in cols]
    elif kind == "unique":
        if len(cols) == 1:
            out.append(gxe.ExpectColumnValuesToBeUnique(column=cols[0], meta=meta))
        else:
            out.append(gxe.ExpectCompoundColumnsToBeUnique(column_list=list(cols), meta=meta))
    elif kind == "allowed_values":
        out.append(gxe.ExpectColumnValuesToBeInSet(column=cols[0], value_set=list(rule.params["values"]), meta=meta))
    elif kind == "code_format":
        out.append(gxe.ExpectColumnValuesToMatchRegex(column=cols[0], regex=rule.params["regex"], meta=meta))
    elif kind == "min_value":
        out += [gxe.ExpectColumnValuesToBeBetween(column=c, min_value=rule.params["min"], meta=meta) for c in cols]
    elif kind == "not_before":
        out.append(gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A=cols[0], column_B=cols[1], or_equal=True, ignore_row_if="either_value_is_missing", meta=meta
        ))
    else:  # pragma: no cover - suites are checked by tests
        raise ValueError(f"no GX expectation for rule kind {kind}")
    return out


def _context(docs_dir: Path):
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    store = docs_dir / "_gx_store"
    config = DataContextConfig(store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False))
    config.stores["expectations_store"] = {
        "class_name": "ExpectationsStore",
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(store / "suites")},
    }
    config.stores["validation_results_store"] = {
        "class_name": "ValidationResultsStore",
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(store / "results")},
    }
    config.data_docs_sites = {
        "local_site": {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }
    }
    config.progress_bars = ProgressBarsConfig(globally=False)
    config.analytics_enabled = False
    return gx.get_context(project_config=config, mode="ephemeral")


def run_suite(
    table_name: str,
    rules: tuple[Rule, ...],
    clean: pd.DataFrame,
    outcomes: list[RuleOutcome] = (),
    *,
    batch_id: str,
    docs_dir: Optional[Path] = None,
    build_docs: bool = True,
    partial_unexpected_count: int = 20,
) -> GxReport:
    """Validate cleaned rows (a bounded sample) with GX and (re)build this validation's Data Docs pages."""
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

    started = time.perf_counter()
    docs_dir = Path(docs_dir) if docs_dir else data_docs_dir()
    docs_dir.mkdir(parents=True, exist_ok=True)
    context = _context(docs_dir)
    asset_name = f"stg_{table_name}"
    batch = (
        context.data_sources.add_pandas(DATASOURCE)
        .add_dataframe_asset(asset_name)
        .add_batch_definition_whole_dataframe("batch")
    )
    suite = gx.ExpectationSuite(name=asset_name, meta={"notes": f"Staging rules of {asset_name}, kept in code."})
    for rule in rules:
        for expectation in expectations_for(rule):
            suite.add_expectation(expectation)
    suite = context.suites.add_or_update(suite)
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{asset_name}_{batch_id}", data=batch, suite=suite)
    )
    result = validation.run(
        batch_parameters={"dataframe": gx_frame(clean, outcomes)},
        result_format={"result_format": "SUMMARY", "partial_unexpected_count": partial_unexpected_count},
        run_id=RunIdentifier(run_name=batch_id),
    )
    summaries = [_summary(r) for r in result.results]
    page = None
    if build_docs:
        with _site_lock(docs_dir):
            page = _build_docs(context, asset_name, batch_id)
    return GxReport(bool(result.success), summaries, page, docs_dir / "index.html", time.perf_counter() - started,
                    len(clean))


@contextlib.contextmanager
def _site_lock(docs_dir: Path):
    """One index writer at a time: staging steps of several tables may run in parallel processes."""
    lock_path = docs_dir / "_gx_store" / ".lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no lock
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_docs(context, asset_name: str, batch_id: str) -> Optional[Path]:
    """Render this validation's page and the suite's, and rebuild the index over every stored result."""
    keys = [
        k for k in context.validation_results_store.list_keys()
        if k.run_id.run_name == batch_id and k.expectation_suite_identifier.name == asset_name
    ]
    suite_keys = [k for k in context.expectations_store.list_keys() if k.name == asset_name]
    context.build_data_docs(site_names=["local_site"], resource_identifiers=keys + suite_keys)
    if not keys:
        return None
    url = context.get_docs_sites_urls(resource_identifier=keys[0], site_name="local_site")[0]["site_url"]
    return Path(url.removeprefix("file://")) if url else None


def _summary(result) -> ExpectationSummary:
    config = result.expectation_config
    kwargs = config.kwargs
    column = kwargs.get("column") or ",".join(kwargs.get("column_list") or []) or (
        f"{kwargs.get('column_A')},{kwargs.get('column_B')}" if "column_A" in kwargs else None
    )
    details = result.result or {}
    return ExpectationSummary(
        rule=(config.meta or {}).get("rule", ""),
        expectation=config.type,
        column=column,
        success=bool(result.success),
        unexpected_count=details.get("unexpected_count"),
        unexpected_percent=details.get("unexpected_percent"),
        partial_unexpected=[str(v) for v in (details.get("partial_unexpected_list") or [])][:10],
        observed_value=None if details.get("observed_value") is None else str(details.get("observed_value")),
    )
