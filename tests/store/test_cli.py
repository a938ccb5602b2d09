"""`touchpoints customers ...` and `touchpoints audit ...`: output and exit codes, run through
the real entry point on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from flows.store import audit
from flows.store.customers import import_customers
from tests.store.support import csv_file, past_the_guard

ROWS = [
    "C-1001,Ada Lovelace,ada@example.com,Europe/London,north,Fibre 500,2025-01-01,2026-12-31,sam@northwind.example,surveys",
    "C-1002,Zoë Ångström,zoe@example.com,Europe/Oslo,south,,,,,",
]


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def tp(store_settings, capsys, monkeypatch, tmp_path):
    """Run `touchpoints ARGS...` in this process; no touchpoints.yaml, so no category check."""
    from flows.cli import main

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.setenv("TOUCHPOINTS_CONFIG_FILE", str(tmp_path / "absent.yaml"))
    from flows.settings import reset_settings

    reset_settings()

    def run(*args: str) -> Run:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


def test_customers_import_prints_counts_and_exits_0_when_every_row_is_good(tp, tmp_path, store):
    path = csv_file(tmp_path / "crm.csv", *ROWS)
    run = tp("customers", "import", str(path))
    assert run.code == 0, run.err
    assert run.out.strip() == f"imported {path}: 2 created, 0 updated, 0 unchanged, 0 rejected"
    again = tp("customers", "import", str(path))
    assert (again.code, again.out.strip()) == (
        0, f"imported {path}: 0 created, 0 updated, 2 unchanged, 0 rejected")
    with store.session() as session:
        rows = audit.query(session, action="customers.imported")
        assert len(rows) == 2 and all(r.actor.startswith("cli:") for r in rows)


def test_customers_import_lists_bad_rows_as_file_line_reason_and_exits_1(tp, tmp_path, store):
    path = csv_file(tmp_path / "crm.csv", ROWS[0], "C-9,Bob,bob@,UTC,,,,,,", ROWS[1])
    run = tp("customers", "import", str(path))
    assert run.code == 1
    assert run.out.splitlines() == [
        f"imported {path}: 2 created, 0 updated, 0 unchanged, 1 rejected",
        f"{path}:3: email: 'bob@' is not an email address",
    ]
    assert "error: 1 of 3 row(s)" in run.err and "good ones were kept" in run.err
    assert "Traceback" not in run.err
    assert "C-1002" in tp("customers", "list").out


def test_customers_import_json_report(tp, tmp_path):
    path = csv_file(tmp_path / "crm.csv", ROWS[0], ",x,x@example.com,UTC,,,,,,")
    run = tp("customers", "import", str(path), "--json")
    report = json.loads(run.out)
    assert run.code == 1 and (report["created"], report["rejected"]) == (1, 1)
    assert report["errors"] == [{"index": 1, "line": 3, "item": None, "customer_id": None,
                                 "reason": "id is required"}]


def test_customers_import_of_a_missing_file_is_an_error_without_traceback(tp, tmp_path):
    run = tp("customers", "import", str(tmp_path / "nope.csv"))
    assert run.code == 1 and "no such file" in run.err and "Traceback" not in run.err


def test_customers_list_filters_by_region_and_prints_json(tp, tmp_path, store):
    import_customers(store, csv_file(tmp_path / "crm.csv", *ROWS), actor="cli:ops")
    table = tp("customers", "list")
    assert table.code == 0
    lines = table.out.splitlines()
    assert lines[0].split() == ["ID", "NAME", "EMAIL", "REGION", "PLAN", "CONTRACT", "END"]
    assert lines[1].split()[:4] == ["C-1001", "Ada", "Lovelace", "ada@example.com"]
    assert "Zoë Ångström" in lines[2] and lines[-1] == "2 customer(s)"
    north = json.loads(tp("customers", "list", "--region", "south", "--json").out)
    assert [c["id"] for c in north] == ["C-1002"] and north[0]["name"] == "Zoë Ångström"
    assert "no customers in region west" in tp("customers", "list", "--region", "west").out


def test_customers_show_prints_fields_preferences_and_attributes(tp, tmp_path, store):
    path = csv_file(tmp_path / "crm.csv", ROWS[0] + ",gold",
                    header="id,name,email,timezone,region,plan,contract_start,contract_end,"
                           "account_owner,unsubscribed,tier")
    import_customers(store, path, actor="cli:ops")
    run = tp("customers", "show", "C-1001")
    assert run.code == 0
    assert "name:                Ada Lovelace" in run.out
    assert "unsubscribed:        surveys" in run.out
    assert '  tier: "gold"' in run.out
    data = json.loads(tp("customers", "show", "C-1001", "--json").out)
    assert data["preferences"] == {"surveys": False} and data["contract_end"] == "2026-12-31"
    missing = tp("customers", "show", "C-404")
    assert missing.code == 1 and "unknown customer 'C-404'" in missing.err
    assert "touchpoints customers list" in missing.err


def test_audit_lists_rows_with_filters(tp, store):
    with store.session() as session:
        audit.record(session, action="journey.started", result="started", actor=audit.SYSTEM,
                     touchpoint="sale", step="welcome", customer_id="C-1", reason="1 member(s)")
        audit.record(session, action="email.sent", result="sent", actor=audit.SYSTEM,
                     touchpoint="renewal", customer_id="C-2", reason="to zoe@example.com")
        audit.record(session, action="journey.cancelled", result="cancelled", actor="cli:ops",
                     touchpoint="sale", customer_id="C-1")
    run = tp("audit")
    assert run.code == 0 and len(run.out.splitlines()) == 3
    assert run.out.splitlines()[0].startswith("#1 ")
    assert "journey.started  started  sale/welcome  C-1  system  1 member(s)" in run.out
    assert [ln.split()[0] for ln in tp("audit", "--customer", "C-1").out.splitlines()] == ["#1", "#3"]
    assert [ln.split()[0] for ln in tp("audit", "--touchpoint", "renewal").out.splitlines()] == ["#2"]
    assert [ln.split()[0] for ln in tp("audit", "--action", "journey.*").out.splitlines()] == ["#1", "#3"]
    rows = json.loads(tp("audit", "--json", "--customer", "C-2").out)["rows"]
    assert [(r["seq"], r["action"], r["reason"]) for r in rows] == [(2, "email.sent", "to zoe@example.com")]
    assert len(rows[0]["hash"]) == 64
    assert tp("audit", "--customer", "C-404").out.strip() == "no audit rows match"


def test_an_audit_listing_that_stops_at_its_limit_says_so(tp, store):
    with store.session() as session:
        audit.record_many(session, [{"action": "email.sent", "result": "sent", "actor": "system",
                                     "customer_id": f"C-{i % 2}"} for i in range(60)])
    text = tp("audit").out.splitlines()
    assert len(text) == 51 and text[0].startswith("#11 ") and text[49].startswith("#60 ")
    assert text[50] == ("showing the newest 50 of 60 matching rows; use --limit N for more, "
                        "--limit 0 for all")
    assert tp("audit", "--limit", "1").out.splitlines()[1].startswith("showing the newest 1 of 60")
    assert "showing" not in tp("audit", "--limit", "0").out
    listing = json.loads(tp("audit", "--json", "--customer", "C-1", "--limit", "20").out)
    assert (listing["shown"], listing["total"], listing["truncated"], listing["limit"]) == (
        20, 30, True, 20)
    assert [r["seq"] for r in listing["rows"]] == list(range(22, 61, 2))
    whole = json.loads(tp("audit", "--json", "--limit", "0").out)
    assert (whole["shown"], whole["total"], whole["truncated"]) == (60, 60, False)


def test_audit_verify_exits_0_when_intact_and_1_naming_the_first_bad_row(tp, store):
    with store.session() as session:
        audit.record_many(session, [{"action": "email.sent", "result": "sent", "actor": "system",
                                     "customer_id": f"C-{i}"} for i in range(5)])
    ok = tp("audit", "verify")
    assert ok.code == 0 and ok.out.splitlines()[0] == "audit trail intact: 5 rows"
    with past_the_guard(store) as connection:
        connection.exec_driver_sql("UPDATE audit SET result = 'bounced' WHERE seq = 3")
    bad = tp("audit", "verify")
    assert bad.code == 1 and bad.out == ""
    assert "audit trail broken at row 3 (edited): row 3 was edited" in bad.err
    assert "the 2 row(s) before it are intact" in bad.err and "Traceback" not in bad.err
    as_json = json.loads(tp("audit", "verify", "--json").out)
    assert (as_json["ok"], as_json["first_bad_seq"], as_json["problem"]) == (False, 3, "edited")


def test_an_unreachable_database_is_reported_with_a_hint(tp, monkeypatch):
    from flows.settings import reset_settings

    monkeypatch.setenv("TOUCHPOINTS_DATABASE_URL", "postgresql+psycopg://tp@127.0.0.1:1/touchpoints")
    reset_settings()
    run = tp("audit", "verify")
    assert run.code == 1
    assert "error: cannot reach the database postgresql+psycopg://tp@127.0.0.1:1/touchpoints" in run.err
    assert "TOUCHPOINTS_DATABASE_URL" in run.err and "Traceback" not in run.err


def test_audit_verify_checks_the_latest_checkpoint_and_catches_a_truncated_tail(tp, store):
    with store.session() as session:
        audit.record_many(session, [{"action": "email.sent", "result": "sent", "actor": "system"}
                                    for _ in range(4)])
    unanchored = tp("audit", "verify")
    assert unanchored.code == 0 and "no signed checkpoint yet" in unanchored.err
    made = tp("audit", "checkpoint")
    assert made.code == 0 and made.out.startswith("checkpoint: 4 rows, head ")
    assert "audit-checkpoints.jsonl" in made.out
    ok = tp("audit", "verify")
    assert ok.code == 0 and ok.err == ""
    assert "reaches the signed checkpoint of" in ok.out and "(4 rows)" in ok.out
    with past_the_guard(store) as connection:
        connection.exec_driver_sql("DELETE FROM audit WHERE seq = 4")
    bad = tp("audit", "verify")
    assert bad.code == 1
    assert "audit trail broken at row 4 (truncated): rows 4 to 4 are missing" in bad.err


def test_audit_head_prints_the_anchor_and_verify_expect_checks_against_it(tp, store):
    with store.session() as session:
        audit.record_many(session, [{"action": "email.sent", "result": "sent", "actor": "system"}
                                    for _ in range(3)])
    head = json.loads(tp("audit", "head", "--json").out)
    with store.read_session() as session:
        assert (head["rows"], head["hash"]) == audit.head(session)
    assert head["anchor"] == f"3:{head['hash']}" and head["at"]
    text = tp("audit", "head").out
    assert f"rows: 3\nhash: {head['hash']}\n" in text and f"anchor: 3:{head['hash']}" in text
    kept = tp("audit", "verify", "--expect", head["anchor"])
    assert kept.code == 0 and "the head you kept" in kept.out
    assert tp("audit", "verify", "--expect", head["hash"]).code == 0
    with past_the_guard(store) as connection:
        connection.exec_driver_sql("DELETE FROM audit WHERE seq = 3")
    gone = tp("audit", "verify", "--expect", head["anchor"])
    assert gone.code == 1 and "(truncated): the head you kept" in gone.err


def test_audit_checkpoint_reports_a_failing_sink_but_still_writes_the_file(tp, store, monkeypatch):
    from flows.settings import reset_settings

    monkeypatch.setenv("TOUCHPOINTS_AUDIT_CHECKPOINT_SINK", "http://127.0.0.1:1/audit")
    reset_settings()
    run = tp("audit", "checkpoint")
    assert run.code == 1 and "Traceback" not in run.err
    assert "the checkpoint was written to" in run.err and "http://127.0.0.1:1/audit" in run.err
    assert "TOUCHPOINTS_AUDIT_CHECKPOINT_SINK" in run.err
    assert tp("audit", "verify").code == 0 and "reaches the signed checkpoint" in tp("audit", "verify").out


def test_rotating_the_key_as_documented_keeps_old_rows_verifying(tp, store, store_settings,
                                                                  monkeypatch):
    from flows.settings import reset_settings

    with store.session() as session:
        audit.record(session, action="email.sent", result="sent", actor="system")
    assert tp("audit", "checkpoint").code == 0
    old_secret = store_settings.signing_key()  # the audit key was derived from it
    monkeypatch.setenv("TOUCHPOINTS_AUDIT_KEY", "the new audit key")
    reset_settings()
    run = tp("audit", "verify")  # the old key not listed: every row fails
    assert run.code == 1 and "(edited)" in run.err and "TOUCHPOINTS_AUDIT_PREVIOUS_KEYS" in run.err
    monkeypatch.setenv("TOUCHPOINTS_AUDIT_PREVIOUS_KEYS", json.dumps([old_secret]))
    reset_settings()
    with store.session() as session:  # written under the new key
        audit.record(session, action="email.sent", result="sent", actor="system")
    rotated = tp("audit", "verify")
    assert rotated.code == 0 and rotated.out.startswith("audit trail intact: 2 rows")
    assert "reaches the signed checkpoint" in rotated.out  # signed with the old key
