"""Vectorised evaluation of the suites: every failing row of every rule, found with pandas.

This is the fast, complete path that decides quarantine. Rules on one row at a time run here on
each chunk of a batch; the set-based rules (`SET_KINDS`: uniqueness, references, one open run
per key) also have a pandas form here for callers holding a whole batch in one frame, while a
chunked staging batch runs them in the warehouse (`ows_pipeline.staging.set_rules`). Great
Expectations runs the same suite afterwards for reporting and Data Docs
(`ows_pipeline.staging.gx_runner`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import pandas as pd

from ows_pipeline.staging.clean import TypeIssue
from ows_pipeline.warehouse.data_errors import shorten
from ows_pipeline.staging.suites import Rule

SET_KINDS = frozenset({"unique", "references", "one_open_per_key"})
"""Rule kinds that look beyond one row (other rows of the batch, staged tables)."""


@dataclass
class RuleContext:
    """What rules need beyond the batch: the as-of time and lookups into staged tables."""

    as_of: dt.datetime
    reference_values: Callable[[str, str], np.ndarray] = lambda table, column: np.array([])
    open_rows: Callable[[str, str, str, str], pd.DataFrame] = (
        lambda table, key, id_column, open_column: pd.DataFrame(columns=[id_column, key])
    )


@dataclass
class Finding:
    """The failing rows of one rule on one field (positions in the clean frame)."""

    rule: Rule
    field: str
    positions: np.ndarray
    values: pd.Series  # the failing values as text, aligned with positions
    message: str


@dataclass
class RuleOutcome:
    """One rule's result on a batch: what the asset check reports."""

    rule: Rule
    rows_in: int
    findings: list[Finding] = field(default_factory=list)
    count: Optional[int] = None  # a batch summary: failing rows counted in the warehouse
    samples: Optional[list[str]] = None  # and their first distinct values

    @property
    def failing_positions(self) -> np.ndarray:
        if not self.findings:
            return np.array([], dtype=np.int64)
        return np.unique(np.concatenate([f.positions for f in self.findings]))

    @property
    def unexpected_count(self) -> int:
        if self.count is not None:
            return self.count
        return int(len(self.failing_positions))

    @property
    def unexpected_percent(self) -> float:
        return 100.0 * self.unexpected_count / self.rows_in if self.rows_in else 0.0

    @property
    def passed(self) -> bool:
        return self.unexpected_count == 0

    def sample_values(self, limit: int = 10) -> list[str]:
        """The first distinct failing values as `field=value`, each cut to a readable length."""
        if self.samples is not None:
            return self.samples[:limit]
        values: list[str] = []
        for finding in self.findings:
            for value in finding.values.drop_duplicates().head(limit):
                values.append(shorten(f"{finding.field}={value}"))
                if len(values) >= limit:
                    return values
        return values


def as_text(values: pd.Series) -> pd.Series:
    """Values as they are written to `data_errors.value`: ISO timestamps, `None` for null."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        text = values.dt.strftime("%Y-%m-%dT%H:%M:%S%z")
    elif pd.api.types.is_datetime64_dtype(values.dtype):
        text = values.dt.strftime("%Y-%m-%d")
    else:
        text = values.astype("str")
    return text.astype(object).where(values.notna().to_numpy(), None)


def _finding(rule: Rule, field_name: str, mask, values: pd.Series, message: str) -> Finding | None:
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return None
    positions = np.flatnonzero(mask)
    return Finding(rule, field_name, positions, as_text(values.iloc[positions]).reset_index(drop=True), message)


def _bool(series: pd.Series) -> np.ndarray:
    return series.fillna(False).to_numpy(dtype=bool)


def _on_distinct(values: pd.Series, test) -> np.ndarray:
    """A boolean test evaluated once per distinct value (codes repeat a lot), spread back over the rows."""
    codes, uniques = pd.factorize(values)
    out = np.zeros(len(values), dtype=bool)
    if len(uniques):
        result = _bool(test(pd.Series(uniques, dtype=values.dtype)))
        present = codes >= 0
        out[present] = result[codes[present]]
    return out


def evaluate_rule(
    rule: Rule, clean: pd.DataFrame, raw: pd.DataFrame, type_bad: dict[str, np.ndarray], ctx: RuleContext
) -> RuleOutcome:
    """Every failing row of `rule` on the clean frame (`raw` gives the untyped values)."""
    outcome = RuleOutcome(rule, len(clean))
    add = outcome.findings.append
    kind = rule.kind
    cols = rule.columns
    for column in cols if kind in _PER_COLUMN else ():
        values = clean[column]
        present = values.notna().to_numpy()
        if kind == "not_null":
            bad = ~present
            if column in type_bad:
                bad &= ~type_bad[column]
            found = _finding(rule, column, bad, values, f"{column} is required")
        elif kind == "valid_type":
            continue  # from the cleaning step's TypeIssues, see evaluate_suite
        elif kind == "max_length":
            limit = rule.params["lengths"][column]
            found = _finding(rule, column, _bool(values.str.len() > limit), values,
                             f"{column} is longer than {limit} characters")
        elif kind == "display_length":
            limit = rule.params["lengths"][column]
            found = _finding(rule, column, _bool(values.str.len() > limit), values,
                             f"{column} is longer than {limit} characters: cut to {limit} and kept")
        elif kind == "allowed_values":
            allowed = rule.params["values"]
            found = _finding(rule, column, present & ~_bool(values.isin(allowed)), values,
                             f"{column} is not one of {', '.join(allowed)}")
        elif kind == "code_format":
            regex = rule.params["regex"]
            matches = _on_distinct(values, lambda u: u.str.fullmatch(regex))
            found = _finding(rule, column, present & ~matches, values, f"{column} does not match {regex}")
        elif kind == "min_value":
            minimum = rule.params["min"]
            found = _finding(rule, column, _bool(values < minimum), values, f"{column} is below {minimum}")
        elif kind == "not_in_future":
            limit = pd.Timestamp(ctx.as_of.date()) + pd.Timedelta(days=rule.params["tolerance_days"])
            limit_text = f"{limit:%Y-%m-%d}"
            found = _finding(rule, column, _bool(values > limit), values,
                             f"{column} is after {limit_text} (batch as-of date + tolerance)")
        elif kind == "references":
            parent, parent_column = rule.params["table"], rule.params["column"]
            keys = ctx.reference_values(parent, parent_column)
            found = _finding(rule, column, present & ~_bool(values.isin(keys)), values,
                             f"{column} has no match in {parent}.{parent_column}")
        else:  # pragma: no cover - suites are checked by tests
            raise ValueError(f"unknown rule kind {kind}")
        if found:
            add(found)
    if kind == "unique":
        present = clean[list(cols)].notna().all(axis=1)
        dup = present & clean.duplicated(subset=list(cols), keep=False)
        found = _finding(rule, ",".join(cols), dup.to_numpy(), _joined(clean, cols),
                         f"({', '.join(cols)}) appears more than once in the batch")
        if found:
            add(found)
    elif kind == "not_before":
        column, other = cols
        bad = _bool(clean[column] < clean[other])
        found = _finding(rule, column, bad, clean[column], f"{column} is before {other}")
        if found:
            add(found)
    elif kind == "one_open_per_key":
        found = _one_open_per_key(rule, clean, ctx)
        if found:
            add(found)
    return outcome


_PER_COLUMN = {"not_null", "valid_type", "max_length", "display_length", "allowed_values", "code_format", "min_value",
               "not_in_future", "references"}


def _joined(clean: pd.DataFrame, cols: tuple[str, ...]) -> pd.Series:
    text = as_text(clean[cols[0]]).astype(str)
    for column in cols[1:]:
        text = text + "," + as_text(clean[column]).astype(str)
    return text


def _one_open_per_key(rule: Rule, clean: pd.DataFrame, ctx: RuleContext) -> Finding | None:
    (key,) = rule.columns
    id_column, open_column = rule.params["id_column"], rule.params["open_column"]
    is_open = clean[open_column].isna() & clean[key].notna()
    if not is_open.any():
        return None
    batch_open = clean.loc[is_open, [id_column, key]]
    staged = ctx.open_rows(rule.params.get("table", ""), key, id_column, open_column)
    if len(staged):
        staged = staged[~staged[id_column].isin(clean[id_column].dropna())]
    counts = pd.concat([batch_open[key], staged[key].astype("str")], ignore_index=True).value_counts()
    crowded = counts.index[counts.to_numpy() > 1]
    bad = is_open & clean[key].isin(crowded)
    return _finding(rule, key, _bool(bad), clean[key], f"another run with this {key} is open too")


def cut_to_display_limits(rules: tuple[Rule, ...], clean: pd.DataFrame) -> None:
    """Cut the texts that break a `display_length` rule to the limit, in place (the finding keeps the full value)."""
    for rule in rules:
        if rule.kind == "display_length":
            for column, limit in rule.params["lengths"].items():
                values = clean[column]
                long = _bool(values.str.len() > limit)
                if long.any():
                    clean.loc[long, column] = values[long].str.slice(0, limit)


def evaluate_suite(
    rules: tuple[Rule, ...], clean: pd.DataFrame, raw: pd.DataFrame, issues: list[TypeIssue], ctx: RuleContext,
    *, set_based: bool = True,
) -> list[RuleOutcome]:
    """Evaluate every rule of a suite; type issues from cleaning belong to the `valid_type` rule.

    With `set_based=False` the rules of `SET_KINDS` are left out (they run in the warehouse).
    Texts over a display limit are then cut in `clean` (`cut_to_display_limits`).
    """
    if not set_based:
        rules = tuple(r for r in rules if r.kind not in SET_KINDS)
    type_bad: dict[str, np.ndarray] = {}
    for issue in issues:
        mask = np.zeros(len(clean), dtype=bool)
        mask[issue.positions] = True
        type_bad[issue.column] = mask
    outcomes = []
    for rule in rules:
        outcome = evaluate_rule(rule, clean, raw, type_bad, ctx)
        if rule.kind == "valid_type":
            for issue in issues:
                values = raw[issue.column].iloc[issue.positions].astype("str").reset_index(drop=True)
                outcome.findings.append(
                    Finding(rule, issue.column, issue.positions, values, f"{issue.column} is not {issue.expected}")
                )
        outcomes.append(outcome)
    cut_to_display_limits(rules, clean)
    return outcomes
