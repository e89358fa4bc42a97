"""Uploads that never surprise: hostile files refused fast and small, ordinary files and names
accepted, values loaded exactly as written, every refusal seen (on SQLite and PostgreSQL)."""

from __future__ import annotations

import email
import email.policy
import json
import os
import resource
import shutil
import socket
import time
import tracemalloc
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from ows_pipeline.defs.runs.sensors import ows_run_failure_sensor
from ows_pipeline.defs.uploads.assets import defs as upload_defs, ows_upload_sensor
from ows_pipeline.resources import SmtpResource, WarehouseResource, make_engine
from ows_pipeline.uploads.landing import LandingFolder
from ows_pipeline.uploads.limits import UploadLimits
from ows_pipeline.uploads.names import safe_name, shown_name
from ows_pipeline.uploads.processing import process_upload
from ows_pipeline.uploads.sensing import sensor_tick
from ows_pipeline.warehouse.schema import create_warehouse_tables, data_errors
from ows_pipeline.warehouse.schema.uploads import ref_feed_sla, ref_project_metadata, upload_registry
from ows_pipeline_tests.upload_corpus import (
    BAD_FILES, GOOD_ROWS, HEADER, PEOPLES_NAMES, alias_bomb, issue_bomb, workbook_bytes,
)

DEFAULTS = UploadLimits(settle_seconds=0)
BOMB_SECONDS = 5.0
BOMB_MIB = 64
DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=DATABASES)
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'warehouse.db'}"
    return request.getfixturevalue("pg_url")


class Landing:
    def __init__(self, root: Path, url: str, limits: UploadLimits = DEFAULTS):
        self.engine = make_engine(url, role="warehouse")
        create_warehouse_tables(self.engine)
        self.folder = LandingFolder(root / "landing")
        self.folder.ensure()
        self.limits = limits
        self.cursor = None
        self.clock = time.time() + 60

    def drop(self, kind: str, name: str, content) -> Path:
        path = self.folder.root / kind / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    def tick(self):
        self.clock += 1
        tick = sensor_tick(self.engine, self.folder, self.cursor, self.limits, now=self.clock)
        self.cursor = tick.cursor
        return tick

    def settle_and_run(self):
        self.tick()
        return [process_upload(self.engine, self.folder, r.upload_id, limits=self.limits) for r in self.tick().requests]

    def rows(self, table):
        with self.engine.connect() as conn:
            return conn.execute(sa.select(table)).all()


# ------------------------------------------------------------------ limits that bound work and memory


def test_the_619_byte_yaml_with_73_aliases_is_refused_in_seconds_and_small(tmp_path, url):
    """Pins the bomb that took 155 s and 3.1 GiB: 73 aliases (under the limit of 100) expanding to 9**9 values."""
    data = issue_bomb()
    assert len(data) == 619 and data.count(b"*") == 73 and DEFAULTS.max_yaml_aliases == 100
    landing = Landing(tmp_path, url)
    landing.drop("feed_sla", "laughs.yaml", data)
    landing.tick()
    (request,) = landing.tick().requests
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    started = time.monotonic()
    try:
        outcome = process_upload(landing.engine, landing.folder, request.upload_id, limits=DEFAULTS)
        seconds = time.monotonic() - started
        peak_mib = tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
    rss_growth_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert outcome.status == "REJECTED"
    assert [p.rule for p in outcome.problems] == ["too_many_values"]
    assert seconds < BOMB_SECONDS, seconds
    assert peak_mib < BOMB_MIB, peak_mib
    assert rss_growth_mib < 300, rss_growth_mib
    (entry,) = landing.rows(upload_registry)
    assert entry.status == "REJECTED" and "expansion bomb" in entry.error_summary and len(entry.error_summary) < 1000


HOSTILE = [
    ("laughs_9x7.yaml", alias_bomb(7, 9).encode()),
    ("laughs_wide.yaml", alias_bomb(3, 90).encode()),
    ("deep.yaml", b"[" * 200_000 + b"]" * 200_000),
    ("deep.json", b"[" * 500_000 + b"]" * 500_000),
    ("values.json", b"[" + b",".join([b"{}"] * 3_000_000) + b"]"),
    ("digits.json", b'[{"feed_code": "A", "sla_minutes": ' + b"7" * 1_000_000 + b"}]"),
    ("long_value.csv", (HEADER + 'A,07:30,30,"' + "x" * 5_000_000 + "\n").encode()),
]


@pytest.mark.parametrize("name,data", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_documents_are_refused_in_seconds_under_a_small_memory_budget(name, data):
    from ows_pipeline.uploads.processing import prepare
    from ows_pipeline.uploads.problems import FileRejected

    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(FileRejected) as caught:
            prepare("feed_sla", name, data, DEFAULTS)
        seconds = time.monotonic() - started
        peak_mib = (tracemalloc.get_traced_memory()[1] - len(data)) / 2**20
    finally:
        tracemalloc.stop()
    assert seconds < BOMB_SECONDS, seconds
    assert peak_mib < BOMB_MIB + len(data) / 2**20 * 2, peak_mib  # at most the text twice, plus a little
    text = " ".join(p.describe() for p in caught.value.problems)
    for python in ("recursion", "field limit", "sys.set_int_max_str_digits", "constructor", "Traceback"):
        assert python not in text, text
    assert len(text) < 2000


# ------------------------------------------------------------------ values loaded exactly as written


ROUND_TRIP = {
    "feed_code": "0042",
    "expected_arrival_time": "12:30",
    "sla_minutes": 30,
    "owner_team": "\tOps team  ",
    "escalation_contact": "  ops@example.com\nor +44 20 7946 0000",
}


def _files_with(values: dict) -> dict[str, bytes]:
    names = list(values)
    quoted = ",".join('"' + str(values[n]).replace('"', '""') + '"' for n in names)
    yaml_lines = "".join(
        f"  {n}: {json.dumps(values[n]) if isinstance(values[n], str) and values[n] != values[n].strip() else values[n]}\n"
        for n in names
    )
    return {
        "round.csv": (",".join(names) + "\n" + quoted + "\n").encode(),
        "round.json": json.dumps([values]).encode(),
        # unquoted 0042 and 12:30: YAML 1.1 would read 34 and 750
        "round.yaml": ("-" + yaml_lines[1:]).encode(),
        "round.xlsx": workbook_bytes([names, [values[n] for n in names]]),
    }


@pytest.mark.parametrize("name", ["round.csv", "round.json", "round.yaml", "round.xlsx"])
def test_values_round_trip_byte_for_byte(tmp_path, url, name):
    landing = Landing(tmp_path, url)
    landing.drop("feed_sla", name, _files_with(ROUND_TRIP)[name])
    (outcome,) = landing.settle_and_run()
    assert outcome.status == "LOADED", outcome.summary
    (row,) = landing.rows(ref_feed_sla)
    stored = {c: getattr(row, c) for c in ROUND_TRIP}
    assert stored == ROUND_TRIP
    assert stored["owner_team"].encode() == ROUND_TRIP["owner_team"].encode()
    assert [w.rule for w in outcome.warnings] == []  # nothing was changed, so nothing is warned about


def test_yaml_plain_scalars_stay_text_as_written(tmp_path, url):
    landing = Landing(tmp_path, url)
    landing.drop("project_metadata", "meta.yaml",
                 "- project_code: NO\n  business_unit: 2026-11-01\n  cost_centre: 0420\n  owner: 1_000\n"
                 "- project_code: YES\n  business_unit: ~\n  cost_centre: 1e3\n  owner: .inf\n")
    (outcome,) = landing.settle_and_run()
    assert outcome.status == "LOADED", outcome.summary
    rows = {r.project_code: (r.business_unit, r.cost_centre, r.owner) for r in landing.rows(ref_project_metadata)}
    assert rows == {"NO": ("2026-11-01", "0420", "1_000"), "YES": (None, "1E3", ".inf")}
    (warning,) = outcome.warnings  # 1e3 was upper-cased as a code: said, with the value
    assert warning.rule == "normalised" and warning.row == 2 and "1E3" in warning.message


def test_every_normalisation_is_a_warning_naming_the_value(tmp_path, url):
    landing = Landing(tmp_path, url)
    landing.drop("feed_sla", "sla.csv", HEADER + '" feed_a\n",7:30,30,Ops,\nFEED_B,08:00:00,30,Ops,\n')
    (outcome,) = landing.settle_and_run()
    assert outcome.status == "LOADED", outcome.summary
    notes = {(w.row, w.field): w for w in outcome.warnings}
    # the quoted line break makes the second record start on line 4 of the file
    assert set(notes) == {(2, "feed_code"), (2, "expected_arrival_time"), (4, "expected_arrival_time")}
    assert "upper-cased" in notes[2, "feed_code"].message and "'FEED_A'" in notes[2, "feed_code"].message
    assert notes[2, "feed_code"].value == " feed_a\\n"
    assert "'07:30'" in notes[2, "expected_arrival_time"].message
    with landing.engine.connect() as conn:
        stored = conn.execute(sa.select(data_errors.c.row_number, data_errors.c.field, data_errors.c.severity)).all()
    assert sorted(stored) == sorted((r, f, "WARNING") for r, f in notes)
    assert sorted((r.feed_code, r.expected_arrival_time) for r in landing.rows(ref_feed_sla)) == [
        ("FEED_A", "07:30"), ("FEED_B", "08:00")
    ]


# ------------------------------------------------------------------ names


def _content_for(kind: str, name: str, index: int) -> bytes:
    if kind == "project_metadata":
        return f"project_code,owner\nP{index},Owner {index}\n".encode()
    if kind == "ows_export":
        return ("project_id,project_code,project_name,business_unit,owner,active_flag,created_at,updated_at\n"
                f"{index},P{index},Project {index},BU,ann,Y,2025-01-01 00:00:00,2026-10-01 00:00:00\n").encode()
    if name.endswith(".xlsx"):
        return workbook_bytes([GOOD_ROWS[0], [f"FEED_{index}", "07:30", 30, f"Ops {index}", None]])
    return (HEADER + f"FEED_{index},07:30,30,Ops {index},\n").encode()


def test_windows_style_names_are_accepted_shown_as_dropped_and_archived_safely(tmp_path, url):
    landing = Landing(tmp_path, url)
    for index, (kind, name) in enumerate(PEOPLES_NAMES):
        landing.drop(kind, name, _content_for(kind, name, index))
        (outcome,) = landing.settle_and_run()
        assert outcome.status == "LOADED", (name, outcome.summary)
    entries = {e.file_name: e for e in landing.rows(upload_registry)}
    assert set(entries) == {name for _kind, name in PEOPLES_NAMES}
    for kind, name in PEOPLES_NAMES:
        entry = entries[name]
        assert entry.status == "LOADED"
        assert entry.current_path == f"processed/{kind}/{safe_name(name)}"
        assert Path(entry.current_path).suffix == Path(name).suffix.lower()
        assert (landing.folder.root / entry.current_path).is_file()


def test_the_same_bytes_under_a_strange_name_are_a_duplicate_not_a_name_problem(tmp_path, url):
    landing = Landing(tmp_path, url)
    content = HEADER + "FEED_A,07:30,30,Ops,\n"
    landing.drop("feed_sla", "sla.csv", content)
    landing.settle_and_run()
    landing.drop("feed_sla", "sla (copy)\n.csv", content)  # even a name that would be refused
    landing.tick()
    tick = landing.tick()
    assert tick.duplicates == ["feed_sla/sla (copy)\n.csv"] and tick.rejected == []
    duplicate = [e for e in landing.rows(upload_registry) if e.status == "DUPLICATE"][0]
    assert duplicate.file_name == "sla (copy)\\n.csv" and "\n" not in duplicate.current_path


def test_a_forged_newline_name_gives_one_escaped_log_line(tmp_path, monkeypatch, capfd):
    forged = "ok.csv\n2026-12-02 09:00:00 - dagster - INFO - all uploads loaded.csv"
    monkeypatch.setenv("OWS_LANDING_DIR", str(tmp_path / "landing"))
    monkeypatch.setenv("OWS_UPLOAD_SETTLE_SECONDS", "0")
    warehouse = WarehouseResource(url=f"sqlite:///{tmp_path / 'w.db'}")
    with dg.DagsterInstance.ephemeral() as instance:
        context = dg.build_sensor_context(instance=instance, resources={"warehouse": warehouse})
        first = ows_upload_sensor(context)
        (tmp_path / "landing" / "feed_sla" / forged).write_text(HEADER + "FEED_A,07:30,30,Ops,\n")
        context = dg.build_sensor_context(instance=instance, cursor=first.cursor, resources={"warehouse": warehouse})
        seen = ows_upload_sensor(context)
        capfd.readouterr()
        context = dg.build_sensor_context(instance=instance, cursor=seen.cursor, resources={"warehouse": warehouse})
        result = ows_upload_sensor(context)
    written = capfd.readouterr()
    lines = (written.out + written.err).splitlines()  # the sensor's log as the console shows it
    about = [line for line in lines if "all uploads loaded" in line]
    assert len(about) == 1, lines
    assert "\n" not in about[0] and "ok.csv\\n2026-12-02" in about[0]
    (request,) = result.run_requests  # the run that reports the refusal
    assert "\n" not in request.tags["ows/upload_file"] and request.run_key.startswith("upload-refused-")
    engine = warehouse.get_engine()
    with engine.connect() as conn:
        (entry,) = conn.execute(sa.select(upload_registry)).all()
        errors = conn.execute(sa.select(data_errors)).all()
    stored = [entry.file_name, entry.error_summary, entry.current_path] + [
        v for e in errors for v in (e.source_file, e.message, e.value) if v
    ]
    assert all("\n" not in v for v in stored), stored
    assert entry.status == "REJECTED" and entry.file_name == shown_name(forged)
    report = (tmp_path / "landing" / (entry.current_path + ".errors.json")).read_text()
    assert "\n2026-12-02" not in json.loads(report)["summary"]


# ------------------------------------------------------------------ every refusal seen


class _Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp_inbox():
    from aiosmtpd.controller import Controller

    inbox = _Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def _sensor_refusals(landing_root: Path, warehouse: WarehouseResource, instance, drops) -> list:
    context = dg.build_sensor_context(instance=instance, resources={"warehouse": warehouse})
    first = ows_upload_sensor(context)
    for make in drops:
        make(landing_root)
    cursor = first.cursor
    for _ in range(2):
        context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"warehouse": warehouse})
        result = ows_upload_sensor(context)
        cursor = result.cursor
    return result.run_requests


def test_a_sensor_refusal_sends_the_failure_notice_through_a_real_smtp_server(tmp_path, monkeypatch, smtp_inbox, url):
    inbox, port = smtp_inbox
    monkeypatch.setenv("OWS_LANDING_DIR", str(tmp_path / "landing"))
    monkeypatch.setenv("OWS_UPLOAD_SETTLE_SECONDS", "0")
    monkeypatch.setenv("OWS_UPLOAD_MAX_BYTES", "100000")
    warehouse = WarehouseResource(url=url)
    drops = [
        lambda root: (root / "feed_sla" / "macros.xlsm").write_bytes(workbook_bytes(GOOD_ROWS)),
        lambda root: (root / "feed_sla" / "huge.csv").write_text(HEADER + "FEED_A,07:30,30,Ops,\n" * 10_000),
        lambda root: (root / "feed_sla" / "March list.csv").mkdir(),
        lambda root: os.symlink("/etc/passwd", root / "project_metadata" / "passwd.csv"),
    ]
    smtp = SmtpResource(host="127.0.0.1", port=port, starttls=False, from_addr="ows@example.org",
                        recipients="ops@example.org")
    bound = dg.Definitions.merge(upload_defs, dg.Definitions(resources={"warehouse": warehouse}))
    with dg.DagsterInstance.ephemeral() as instance:
        requests = _sensor_refusals(tmp_path / "landing", warehouse, instance, drops)
        assert sorted(r.tags["ows/upload_file"] for r in requests) == ["March list.csv", "huge.csv", "macros.xlsm",
                                                                      "passwd.csv"]
        for request in requests:
            run = bound.resolve_job_def(request.job_name).execute_in_process(
                run_config=request.run_config, instance=instance, tags=request.tags, raise_on_error=False
            )
            assert not run.success
            failure = [e for e in run.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE][0]
            context = dg.build_run_status_sensor_context(
                sensor_name="ows_run_failure_sensor", dagster_event=failure, dagster_instance=instance,
                dagster_run=instance.get_run_by_id(run.run_id), resources={"smtp": smtp},
            ).for_run_failure()
            ows_run_failure_sensor(context)
    deadline = time.monotonic() + 10
    while len(inbox.messages) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    bodies = [email.message_from_bytes(m.content, policy=email.policy.default).get_content() for m in inbox.messages]
    assert len(bodies) == 4
    expected = {"macros.xlsm": "macro-enabled", "huge.csv": "OWS_UPLOAD_MAX_BYTES", "March list.csv": "is a folder",
                "passwd.csv": "symbolic link"}
    for name, reason in expected.items():
        (body,) = [b for b in bodies if f"Upload '{name}' was rejected by ows_upload_sensor" in b]
        assert reason in body, body
    engine = warehouse.get_engine()
    with engine.connect() as conn:
        entries = conn.execute(sa.select(upload_registry)).all()
    assert {e.status for e in entries} == {"REJECTED"} and all(e.run_id for e in entries)
    for entry in entries:
        assert entry.current_path.startswith("rejected/")
        assert (tmp_path / "landing" / (entry.current_path + ".errors.json")).is_file()
    # re-executing a run that reported a refusal does not report it again
    folder = LandingFolder(tmp_path / "landing")
    assert {process_upload(engine, folder, e.upload_id).status for e in entries} == {"SKIPPED"}


# ------------------------------------------------------------------ settled, whatever the timestamps say


def test_a_growing_file_with_an_old_timestamp_is_loaded_once_and_complete(tmp_path, url):
    landing = Landing(tmp_path, url, UploadLimits(settle_seconds=0))
    rows = [f"FEED_{i:02d},07:30,30,Ops,\n" for i in range(40)]
    old = time.time() - 86_400
    path = landing.drop("feed_sla", "copied.csv", HEADER + "".join(rows[:4]) + "FEED_04,07:")
    os.utime(path, (old, old))  # a copy that kept the original's timestamp
    assert landing.tick().requests == []
    with open(path, "a") as handle:  # ... and is still being appended to
        handle.write("30,30,Ops,\n" + "".join(rows[5:20]))
    os.utime(path, (old, old))
    assert landing.tick().requests == []
    with open(path, "a") as handle:
        handle.write("".join(rows[20:]))
    os.utime(path, (old, old))
    assert landing.tick().requests == []
    (request,) = landing.tick().requests  # unchanged across two observations: settled
    outcome = process_upload(landing.engine, landing.folder, request.upload_id, limits=landing.limits)
    assert outcome.status == "LOADED" and outcome.rows == 40
    assert sorted(r.feed_code for r in landing.rows(ref_feed_sla)) == [f"FEED_{i:02d}" for i in range(40)]
    assert len(landing.rows(upload_registry)) == 1
    assert landing.tick().requests == [] and landing.tick().requests == []


def test_a_same_size_rewrite_with_the_same_timestamp_is_seen(tmp_path, url):
    landing = Landing(tmp_path, url, UploadLimits(settle_seconds=0))
    path = landing.drop("feed_sla", "sla.csv", HEADER + "FEED_A,07:30,30,Ops,\n")
    stamp = os.stat(path).st_mtime_ns
    landing.tick()
    path.write_text(HEADER + "FEED_B,07:30,30,Ops,\n")
    os.utime(path, ns=(stamp, stamp))
    assert landing.tick().requests == []  # the content changed: not settled yet
    (request,) = landing.tick().requests
    assert process_upload(landing.engine, landing.folder, request.upload_id, limits=landing.limits).status == "LOADED"
    assert [r.feed_code for r in landing.rows(ref_feed_sla)] == ["FEED_B"]


# ------------------------------------------------------------------ messages in the user's words


def test_every_corpus_refusal_speaks_the_users_words():
    from ows_pipeline.uploads.processing import error_summary, prepare
    from ows_pipeline.uploads.problems import FileRejected

    import tempfile

    from ows_pipeline.uploads.sensing import preflight
    from ows_pipeline_tests.upload_corpus import CORPUS_LIMITS

    with tempfile.TemporaryDirectory() as folder:
        for index, bad in enumerate(BAD_FILES):
            landing = LandingFolder(Path(folder) / str(index))
            landing.ensure()
            bad.write(landing.root / bad.kind / bad.name)
            (candidate,) = landing.scan()
            problems = [preflight(candidate, CORPUS_LIMITS)]
            if problems[0] is None:
                try:
                    prepare(bad.kind, bad.name, candidate.path.read_bytes(), CORPUS_LIMITS)
                    continue
                except FileRejected as exc:
                    problems = exc.problems
            text = error_summary(problems)
            assert all(p.fix for p in problems if p.severity == "ERROR"), bad.case
            for python in ("Error:", "recursion", "field limit", "int_max_str_digits", "constructor", "tag:yaml.org",
                           "Traceback", "NoneType", "\n"):
                assert python not in text, (bad.case, text)


@pytest.mark.skipif(shutil.which("chattr") is None, reason="needs chattr (e2fsprogs) to make a folder immutable")
def test_a_refusal_that_cannot_be_moved_says_so_once(tmp_path, url):
    """A folder the sensor may not change (immutable, even for root): the refusal is still registered,
    reported by a failing run with a clear note, and never registered again."""
    import subprocess

    landing = Landing(tmp_path, url)
    landing.drop("feed_sla", "macros.xlsm", workbook_bytes(GOOD_ROWS))
    drop_folder = landing.folder.root / "feed_sla"
    if subprocess.run(["chattr", "+i", str(drop_folder)], capture_output=True).returncode != 0:
        pytest.skip("this file system cannot make a folder immutable")
    try:
        landing.tick()
        (request,) = landing.tick().requests
        assert request.run_key.startswith("upload-refused-")
        outcome = process_upload(landing.engine, landing.folder, request.upload_id, limits=DEFAULTS)
        assert outcome.status == "REJECTED" and outcome.location == "feed_sla/macros.xlsm"
        (entry,) = landing.rows(upload_registry)
        assert entry.status == "REJECTED" and entry.current_path == "feed_sla/macros.xlsm"
        assert "could not be moved" in entry.error_summary and "will not be read again" in entry.error_summary
        report = json.loads((landing.folder.root / "rejected" / "feed_sla" / "macros.xlsm.errors.json").read_text())
        assert "could not be moved" in report["summary"]
        assert [landing.tick().requests for _ in range(3)] == [[], [], []]
        landing.cursor = None  # a lost cursor does not register it again either
        assert [landing.tick().requests for _ in range(2)] == [[], []]
        assert len(landing.rows(upload_registry)) == 1
    finally:
        subprocess.run(["chattr", "-i", str(drop_folder)], check=False)
