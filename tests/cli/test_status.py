"""`touchpoints status` shows the installation's health on one screen: the service and its
parts (or that none runs), the backlog, the latest failures with their reasons and the alerts;
`--json` holds the same. A section it cannot read says why, and nothing raises a traceback."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flows.cli import main
from flows.cli.remote import ServiceInfo, write_service_info
from flows.cli.status import collect, render
from flows.store.tables import Event, Journey, Member, WorkUnit
from tests.web.test_api_remote import dead_pid

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


@pytest.fixture
def config(monkeypatch):
    from flows.settings import get_settings, reset_settings

    monkeypatch.setenv("TOUCHPOINTS_CONFIG_FILE", str(REPO / "touchpoints.yaml"))
    reset_settings()
    return get_settings()


@pytest.fixture
def busy(store, store_settings, config):
    """A store with work in hand: units in each state, waiting members, an event stuck in the
    inbox, failures in the audit and an alert sent."""
    from flows.engine.alerts import bump
    from flows.store import audit

    with store.session() as session:
        for jid, tp, n in (("j-1", "sale", 2), ("j-2", "outage", 3)):
            session.add(Journey(id=jid, touchpoint=tp, entry_key=jid, trigger={},
                                status="active", started_at=NOW))
            session.flush()
            for i in range(n):
                session.add(Member(journey_id=jid, customer_id=f"C-{jid}-{i}", status="waiting",
                                   lane="", results={}, due_at=NOW + timedelta(days=3)))
        for uid, status in (("u-1", "queued"), ("u-2", "queued"), ("u-3", "launched"),
                            ("u-4", "leased"), ("u-5", "done")):
            session.add(WorkUnit(id=uid, kind="start", touchpoint="sale", params={},
                                 status=status, attempts=0, reason=""))
        session.add(Event(id="evt-stuck", type="contract.signed", data={}, occurred_at=NOW,
                          received_at=NOW, source="api:crm", status="received", result={}))
        audit.record(session, action="journey.failed", result="failed", actor="system",
                     touchpoint="outage", customer_id="C-1001",
                     reason="step notice: ValueError: no region [north]")
        audit.record(session, action="event.refused", result="refused", actor="api:crm",
                     reason="contract.signed from api:crm: its data does not fit the contract")
        audit.record(session, action="email.sent", result="sent", actor="system")
        bump(session, "failed:outage", count=4, detail={}, now=NOW)
        bump(session, "stuck-members:sale", count=1, detail={"now": 2}, now=NOW)
        bump(session, "cursor:audit", count=0, detail={"seq": 3}, now=NOW)
    return store_settings


def test_without_a_service_it_says_so_and_shows_the_backlog_failures_and_alerts(busy, capsys):
    main(["status"])
    text = capsys.readouterr().out
    assert "no service running (no " in text and "serve.json" in text
    assert "units: 2 queued, 1 launched, 1 leased (running)" in text
    assert "members waiting: outage 3, sale 2" in text
    assert "events not dispatched: 1 (oldest received 2026-11-24T10:00)" in text
    assert "event.refused: contract.signed from api:crm" in text
    assert "journey.failed outage C-1001: step notice: ValueError: no region [north]" in text
    assert "email.sent" not in text
    assert "to ops@northwind.example" in text and "5 pending, 0 sent" in text
    assert "stuck-members:sale: 1 pending of 1, 2 stuck now" in text
    assert "cursor:" not in text


def test_json_holds_the_same(busy, capsys):
    main(["status", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["service"]["running"] is False
    assert summary["backlog"]["units"] == {"queued": 2, "launched": 1, "leased": 1}
    assert summary["backlog"]["waiting"] == {"outage": 3, "sale": 2}
    assert summary["backlog"]["events_not_dispatched"] == 1
    assert [f["action"] for f in summary["failures"]] == ["event.refused", "journey.failed"]
    assert {r["key"] for r in summary["alerts"]["rows"]} == {"failed:outage", "stuck-members:sale"}


def _serve_json(settings, pid: int, url: str = "http://127.0.0.1:9") -> None:
    write_service_info(settings, ServiceInfo(pid=pid, web_url=url,
                                             prefect_url="http://127.0.0.1:4200",
                                             started_at="2026-11-24T09:00:00+0000",
                                             extra={"roles": ["housekeeping", "web"]}))


def test_a_running_service_shows_each_part_ok_degraded_or_standing_by(busy):
    _serve_json(busy, os.getpid())
    healthz = {"ok": True, "degraded": True, "parts": {
        "dispatch": {"ok": True, "failures": 0},
        "housekeeping": {"ok": True, "standby": True},
        "smtp": {"ok": False, "failures": 2, "retry_in_s": 4.0,
                 "error": "cannot connect to smtp://mail:25: [Errno 111] Connection refused"}}}
    summary = collect(busy, fetch=lambda url: healthz)
    assert summary["service"]["parts"] == {
        "dispatch": "ok", "housekeeping": "standby",
        "smtp": "degraded: cannot connect to smtp://mail:25: [Errno 111] Connection refused "
                "(2 failure(s), retry in 4.0s)"}
    screen = "\n".join(render(summary))
    assert f"[yellow]degraded[/]: pid {os.getpid()} at http://127.0.0.1:9, roles " \
           "housekeeping, web" in screen
    assert "Prefect UI: http://127.0.0.1:4200" in screen
    assert "[Errno 111]" in screen.replace("\\[", "[")  # shown, not taken for markup


def test_a_service_whose_healthz_does_not_answer_or_a_stale_file_is_said(busy, capsys):
    import httpx

    _serve_json(busy, os.getpid())

    def refused(url):
        raise httpx.ConnectError("connection refused")

    note = collect(busy, fetch=refused)["service"]["note"]
    assert "http://127.0.0.1:9/healthz does not answer: ConnectError: connection refused" in note
    _serve_json(busy, dead_pid())
    main(["status"])
    assert "which has exited (a stale file" in capsys.readouterr().out


def test_the_real_healthz_of_a_served_app_is_read(engine, settings, server, capsys, config):
    engine.health["housekeeping"] = {"ok": False, "failures": 1, "error": "database is locked"}
    _serve_json(settings, os.getpid(), server)
    main(["status", "--json"])
    service = json.loads(capsys.readouterr().out)["service"]
    assert service["answering"] and service["degraded"]
    assert service["parts"] == {"housekeeping": "degraded: database is locked (1 failure(s))"}


def test_an_unreachable_database_and_a_broken_file_are_said_with_exit_code_1(
        tmp_path, monkeypatch, capsys):
    from flows.settings import reset_settings

    broken = tmp_path / "touchpoints.yaml"
    broken.write_text("version: 1\ntouchpoints: [\n")
    monkeypatch.setenv("TOUCHPOINTS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TOUCHPOINTS_CONFIG_FILE", str(broken))
    monkeypatch.setenv("TOUCHPOINTS_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    reset_settings()
    try:
        with pytest.raises(SystemExit) as exit_:
            main(["status"])
        assert exit_.value.code == 1
        out = capsys.readouterr()
        assert "Traceback" not in out.out + out.err
        assert "no service running" in out.out
        assert out.out.count("cannot read it: cannot reach the database") == 3
    finally:
        reset_settings()


def test_a_broken_file_leaves_the_rest_of_the_screen(busy, tmp_path, monkeypatch, capsys):
    from flows.settings import reset_settings

    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\ntouchpoints: [\n")
    monkeypatch.setenv("TOUCHPOINTS_CONFIG_FILE", str(broken))
    reset_settings()
    main(["status"])
    text = capsys.readouterr().out
    assert "to ? (touchpoints.yaml cannot be read:" in text
    assert "units: 2 queued" in text
