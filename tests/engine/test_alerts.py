"""Failure reports: the failures of a batch are counted in one statement, and the operations
address gets at most one email per touch point per hour, counting what failed since the last."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event, select

from flows.engine.alerts import failure_key, flush_due, record_failures
from flows.store.tables import Alert, AuditRow
from tests.engine.conftest import REPO, make_engine

OPS = "ops@northwind.example"


@pytest.fixture
def ops_engine(store, smtp_server, clock, tmp_path, monkeypatch):
    from flows.engine.core import set_engine
    from flows.settings import reset_settings

    monkeypatch.setenv("TOUCHPOINTS_DATA_DIR", str(tmp_path / "data"))
    engine = make_engine(REPO / "touchpoints.yaml", smtp_server.url, monkeypatch, store)
    monkeypatch.setattr(engine.config.defaults, "operations", OPS)
    yield engine
    set_engine(None)
    reset_settings()


def _fail(engine, clock, *customers: str, step: str = "notice", touchpoint: str = "outage"):
    with engine.store.session() as session:
        record_failures(session, touchpoint=touchpoint, step=step, now=clock.now,
                        failures=[(c, f"ValueError: no region for {c}") for c in customers])


def _reports(smtp_server) -> list:
    return [m.message for m in smtp_server.messages if OPS in m.envelope_to]


def test_the_failures_of_a_batch_are_counted_in_one_statement(ops_engine, clock):
    statements = []

    def count(conn, cursor, statement, *args):
        if "alerts" in statement.lower():
            statements.append(statement)

    event.listen(ops_engine.store.engine, "before_cursor_execute", count)
    try:
        _fail(ops_engine, clock, "C-1001", "C-1002", "C-1003")
        _fail(ops_engine, clock, "C-1004")
    finally:
        event.remove(ops_engine.store.engine, "before_cursor_execute", count)
    assert len(statements) == 2
    with ops_engine.store.session() as session:
        row = session.get(Alert, failure_key("outage"))
        assert (row.pending, row.total, row.last_sent_at) == (4, 4, None)
        assert [e["customer_id"] for e in row.detail["examples"]] == ["C-1004"]


def test_failures_make_one_report_with_their_count_and_examples(ops_engine, clock, smtp_server):
    _fail(ops_engine, clock, "C-1001", "C-1002")
    [report] = flush_due(ops_engine)
    assert report["status"] == "sent" and report["count"] == 2
    [message] = _reports(smtp_server)
    assert message["Subject"] == "2 failed in outage"
    assert message["To"] == OPS and "Northwind" in message["From"]
    text = message.get_body(("plain",)).get_content()
    assert "2 member(s) of the touch point outage failed so far (2 in all)" in text
    assert "C-1002: ValueError: no region for C-1002" in text
    assert "touchpoints journeys retry outage" in text
    with ops_engine.store.session() as session:
        assert session.scalar(select(AuditRow.reason).where(AuditRow.action == "alert.sent")) \
            == f"2 failed member(s) reported to {OPS}"
    assert flush_due(ops_engine) == []  # nothing new


def test_a_report_links_the_run_of_the_latest_failure(ops_engine, clock, smtp_server,
                                                      monkeypatch):
    from flows.store import audit

    monkeypatch.setenv("PREFECT_API_URL", "http://prefect.example:4200/api")
    with ops_engine.store.session() as session:
        audit.record(session, action="journey.failed", result="failed", actor="system",
                     touchpoint="outage", customer_id="C-1001", flow_run_id="run-9",
                     reason="step notice: ValueError: no region for C-1001")
    _fail(ops_engine, clock, "C-1001")
    flush_due(ops_engine)
    text = _reports(smtp_server)[0].get_body(("plain",)).get_content()
    assert "The latest run: http://prefect.example:4200/runs/flow-run/run-9" in text


def test_within_the_hour_failures_wait_and_the_next_report_counts_only_them(
        ops_engine, clock, smtp_server):
    _fail(ops_engine, clock, "C-1001")
    first_sent = clock.now
    assert len(flush_due(ops_engine)) == 1
    clock.advance(minutes=20)
    _fail(ops_engine, clock, "C-1002", "C-1003")
    clock.advance(minutes=20)
    _fail(ops_engine, clock, "C-1004")
    assert flush_due(ops_engine) == []
    assert len(_reports(smtp_server)) == 1
    clock.advance(minutes=21)
    [report] = flush_due(ops_engine)
    assert (report["count"], report["total"]) == (3, 4)
    text = _reports(smtp_server)[-1].get_body(("plain",)).get_content()
    assert (f"3 member(s) of the touch point outage failed since the last report at "
            f"{first_sent:%Y-%m-%d %H:%M} UTC (4 in all)") in text


def test_a_report_the_server_refuses_is_sent_at_the_next_flush(ops_engine, clock, smtp_server):
    _fail(ops_engine, clock, "C-1001", "C-1002")
    smtp_server.fail_next(550, "mailbox unavailable", times=1, at="rcpt")
    [refused] = flush_due(ops_engine)
    assert refused["status"] == "failed" and "550" in refused["reason"]
    [again] = flush_due(ops_engine)
    assert again["status"] == "sent" and again["count"] == 2
    assert len(_reports(smtp_server)) == 1


def test_each_touch_point_has_its_own_report(ops_engine, clock, smtp_server):
    _fail(ops_engine, clock, "C-1001")
    _fail(ops_engine, clock, "C-1002", touchpoint="sale", step="welcome")
    assert sorted(r["touchpoint"] for r in flush_due(ops_engine)) == ["outage", "sale"]
    assert sorted(m["Subject"] for m in _reports(smtp_server)) == [
        "1 failed in outage", "1 failed in sale"]


def test_without_an_operations_address_nothing_is_sent(ops_engine, clock, smtp_server,
                                                        monkeypatch):
    _fail(ops_engine, clock, "C-1001")
    monkeypatch.setattr(ops_engine.config.defaults, "operations", None)
    assert flush_due(ops_engine) == [] and smtp_server.messages == []
    clock.advance(hours=2)
    monkeypatch.setattr(ops_engine.config.defaults, "operations", OPS)
    assert [r["count"] for r in flush_due(ops_engine, now=clock.now + timedelta(0))] == [1]


def test_the_operations_address_is_checked_with_the_file(tmp_path):
    from flows.config import check, load_config
    from tests.config.support import HEADER, WELCOME, write_config

    good = HEADER.replace("  timezone: Europe/London\n",
                          "  timezone: Europe/London\n  operations: ops@northwind.example\n")
    assert load_config(write_config(tmp_path, WELCOME, header=good)).defaults.operations == OPS
    bad = good.replace("ops@northwind.example", "the ops team")
    [problem] = check(write_config(tmp_path, WELCOME, header=bad))
    assert problem.path == "defaults.operations"
