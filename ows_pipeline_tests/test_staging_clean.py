"""Typing and cleaning: every kind of input a database driver or a spreadsheet hands over."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from ows_pipeline.staging.clean import clean_frame, dtype_problems

UTC = dt.timezone.utc


def test_mixed_python_values_are_typed_or_reported():
    frame = pd.DataFrame({
        "project_id": [1, "2", " 3 ", 4.0, 4.5, "x", None],
        "project_code": [" ab ", "cd", 12.0, "", None, "Ef", "g"],
        "project_name": ["n"] * 7,
        "business_unit": [None] * 7,
        "owner": ["  "] * 7,
        "active_flag": ["Y", "n", " N ", True, 1, "maybe", None],
        "created_at": [
            dt.datetime(2026, 1, 1, 10),  # naive: UTC
            dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            "2026-01-01T10:00:00Z",
            "  ",
            45000.5,  # a spreadsheet serial number is not a time
            pd.Timestamp("2026-07-01 11:00", tz="Europe/London"),
            "yesterday",
        ],
        "updated_at": ["2026-01-02"] * 7,
    }, dtype=object)
    clean, issues = clean_frame(frame, "ows_project")
    assert clean["project_id"].tolist()[:4] == [1, 2, 3, 4]
    assert clean["project_code"].tolist()[:3] == ["AB", "CD", "12"] and clean["project_code"].isna().tolist()[3:5] == [
        True, True]
    assert clean["owner"].isna().all() and clean["business_unit"].isna().all()
    assert clean["active_flag"].tolist()[:5] == [True, False, False, True, True]
    stamps = clean["created_at"]
    assert stamps.iloc[0] == stamps.iloc[1] == stamps.iloc[2] == pd.Timestamp("2026-01-01 10:00", tz="UTC")
    assert stamps.iloc[5] == pd.Timestamp("2026-07-01 10:00", tz="UTC")  # BST to UTC
    assert stamps.iloc[3] is pd.NaT or pd.isna(stamps.iloc[3])  # blank is null, not an error
    found = {issue.column: issue.positions.tolist() for issue in issues}
    assert found == {"project_id": [4, 5], "active_flag": [5], "created_at": [4, 6]}
    assert dtype_problems(clean, "ows_project") == []
    assert str(clean["project_id"].dtype) == "Int64" and str(clean["project_code"].dtype) == "str"


def test_typed_frames_from_drivers_pass_through():
    frame = pd.DataFrame({
        "hist_id": np.array([1, 2], dtype=np.int64), "run_id": [10, 11], "step_id": [5, 6],
        "from_status": [None, "active"], "to_status": ["active", "complete"], "result_code": [None, "matched"],
        "changed_at": pd.to_datetime(["2026-11-19 10:00", "2026-11-19 11:00"]).tz_localize("UTC"),
        "changed_by": ["sys", None],
    })
    clean, issues = clean_frame(frame, "ows_run_step_history")
    assert not issues
    assert clean["to_status"].tolist() == ["ACTIVE", "COMPLETE"] and clean["result_code"].tolist()[1] == "MATCHED"
    assert str(clean["changed_at"].dtype) == "datetime64[us, UTC]"
