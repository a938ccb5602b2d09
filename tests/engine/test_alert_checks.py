"""The housekeeping loop finds what went wrong (refused events, given-up units, an unreachable
SMTP server, stuck members and units, events not dispatched, tasks past their last escalation)
and each kind reaches the operations address through the same throttle: one email per kind and
subject per hour, counting what happened since the last one, with a link to look at."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from sqlalchemy import select

from flows.engine import alert_checks
from flows.engine.alert_checks import probe_smtp, run_checks
from flows.engine.alerts import flush_due
from flows.errors import DeliveryError, EventDataError
from flows.store.tables import Alert, AuditRow, Event, Journey, Member, Task, WorkUnit
from tests.engine.test_alerts import OPS, ops_engine  # noqa: F401 - the fixture
from tests.fixtures.mail import free_port

_ids = itertools.count(1)


@pytest.fixture
def checks(ops_engine, clock, monkeypatch):  # noqa: F811
    """The engine, with wall-clock time following the test's clock (units run on it)."""
    monkeypatch.setattr(alert_checks, "wall_now", lambda: clock.now)
    monkeypatch.setattr(alert_checks, "PROBE_EVERY", timedelta(days=365))  # probed on purpose
    return ops_engine


def _reports(smtp_server) -> list:
    return [m.message for m in smtp_server.messages if OPS in m.envelope_to]


def _text(message) -> str:
    return message.get_body(("plain",)).get_content()


def _tick(engine, clock) -> list[dict]:
    run_checks(engine, now=clock.now)
    return flush_due(engine, now=clock.now)


# ---------------------------------------------------------------------- making each kind happen
def _journey(session, clock, touchpoint: str = "sale") -> str:
    jid = f"j-{next(_ids)}"
    session.add(Journey(id=jid, touchpoint=touchpoint, entry_key=jid, customer_id=None,
                        trigger={}, status="active", started_at=clock.now))
    session.flush()
    return jid


def stuck_members(engine, clock, n: int) -> None:
    with engine.store.session() as session:
        jid = _journey(session, clock)
        for _ in range(n):
            session.add(Member(journey_id=jid, customer_id=f"C-{next(_ids)}", status="waiting",
                               pointer="settle_in", resume_mode="after", lane="", results={},
                               due_at=clock.now - timedelta(minutes=15, seconds=1),
                               updated_at=clock.now))


def stuck_units(engine, clock, n: int) -> None:
    since = clock.now - timedelta(minutes=10, seconds=1)
    with engine.store.session() as session:
        for _ in range(n):
            session.add(WorkUnit(id=f"start:sale:evt-{next(_ids)}", kind="start",
                                 touchpoint="sale", params={}, label="C-1001 · sale",
                                 status="queued", attempts=0, reason="", created_at=since,
                                 updated_at=since))


def undispatched(engine, clock, n: int) -> None:
    at = clock.now - timedelta(minutes=1, seconds=1)
    with engine.store.session() as session:
        for _ in range(n):
            session.add(Event(id=f"evt-{next(_ids)}", type="contract.signed", customer_id=None,
                              data={}, occurred_at=at, received_at=at, source="api:crm",
                              status="received", result={}))


def _task(session, clock, *, due, level: int, status: str = "open", team: str = "install"):
    tid = f"T-{next(_ids)}"
    session.add(Task(id=tid, key=f"k-{tid}", team=team, title=f"Schedule the install {tid}",
                     body="", status=status, due_at=due, escalation_level=level,
                     escalations=[{"after": 0.0, "to": "install-lead@northwind.example"},
                                  {"after": 86400.0, "to": "ops-director@northwind.example"}]))
    return tid


def stalled_tasks(engine, clock, n: int) -> None:
    due = clock.now - timedelta(days=1, hours=4, seconds=1)  # its last level: after 1d (+4h)
    with engine.store.session() as session:
        for _ in range(n):
            _task(session, clock, due=due, level=2)


def refused(engine, clock, n: int) -> None:
    from flows.engine.intake import refuse_bad_data

    for _ in range(n):
        with pytest.raises(EventDataError):
            refuse_bad_data(engine, type="contract.signed", data={"monthly_price": "a lot"},
                            event_id=f"evt-{next(_ids)}", source="api:crm", actor="api:crm")


def gave_up(engine, clock, n: int) -> None:
    from flows.engine import units
    from flows.engine.redrive import MAX_ATTEMPTS, UnitDriver

    with engine.store.session() as session:
        for _ in range(n):
            unit = units.queue(session, id=f"resume:c-{next(_ids)}", kind="resume",
                               touchpoint="outage", params={}, label="north · wait")
            unit.attempts = MAX_ATTEMPTS
    UnitDriver(engine, launcher=None).launch_queued()


def _unreachable() -> str:
    from flows.mail.message import build_message
    from flows.mail.smtp import SmtpTransport

    message = build_message(sender="a@northwind.example", to="b@northwind.example",
                            subject="x", text="x", html="<p>x</p>", key="k",
                            transactional=True, postal_address="12 Harbour Road, Bristol",
                            unsubscribe_url=None, preferences_url=None)
    with pytest.raises(DeliveryError) as refused_connection:
        SmtpTransport(f"smtp://127.0.0.1:{free_port()}", retries=1).send(message)
    return refused_connection.value.message


def smtp_failures(engine, clock, n: int) -> None:
    """Sends deferred the way delivery.py defers them when the server cannot be reached."""
    from flows.store import audit

    reason = f"temporary SMTP failure: {_unreachable()}"
    with engine.store.session() as session:
        for _ in range(n):
            audit.record(session, action="email.deferred", result="deferred", actor="system",
                         touchpoint="sale", customer_id="C-1001", reason=reason)


KINDS = {  # maker, subject line of a report of n
    "stuck-members": (stuck_members, "{n} member(s) stuck in sale"),
    "stuck-units": (stuck_units, "{n} unit(s) not taken by a run in sale"),
    "undispatched": (undispatched, "{n} event(s) not dispatched"),
    "stalled-tasks": (stalled_tasks, "{n} task(s) of install past their last escalation"),
    "refused": (refused, "{n} contract.signed event(s) refused"),
    "gave-up": (gave_up, "{n} unit(s) given up in outage"),
    "smtp": (smtp_failures, "SMTP server unreachable"),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_is_reported_once_an_hour_with_the_count_since_the_last_report(
        kind, checks, clock, smtp_server):
    make, subject = KINDS[kind]
    make(checks, clock, 2)
    [first] = _tick(checks, clock)
    assert (first["kind"], first["count"], first["status"]) == (kind, 2, "sent")
    first_sent = clock.now
    assert [m["Subject"] for m in _reports(smtp_server)] == [subject.format(n=2)]
    for _ in range(2):  # two more within the hour: counted, not sent
        clock.advance(minutes=20)
        make(checks, clock, 1)
        assert _tick(checks, clock) == []
    clock.advance(minutes=21)
    [second] = _tick(checks, clock)
    assert (second["count"], second["total"]) == (2, 4)
    [_, message] = _reports(smtp_server)
    assert message["Subject"] == subject.format(n=2)
    assert f"since the last report at {first_sent:%Y-%m-%d %H:%M} UTC (4 in all)" in _text(message)
    clock.advance(hours=2)  # what is still stuck, or was counted, is not reported again
    assert _tick(checks, clock) == []
    with checks.store.session() as session:
        assert session.scalar(select(AuditRow.reason).where(AuditRow.action == "alert.sent")
                              .order_by(AuditRow.seq.desc()).limit(1)).endswith(f"to {OPS}")


def test_a_stuck_member_report_names_the_members_and_what_to_do(checks, clock, smtp_server):
    stuck_members(checks, clock, 1)
    _tick(checks, clock)
    text = _text(_reports(smtp_server)[0])
    assert "at settle_in, due" in text and "more than 15 minutes ago" in text
    assert "Still so: 1, at the last check" in text and "touchpoints resume-due" in text
    assert "/runs" in text


def test_members_with_a_run_on_its_way_or_a_time_to_come_are_not_stuck(checks, clock):
    from flows.engine import units

    with checks.store.session() as session:
        jid = _journey(session, clock)
        session.add(Member(journey_id=jid, customer_id="C-1", status="waiting", pointer="w",
                           lane="", results={}, due_at=clock.now - timedelta(hours=1)))
        units.queue(session, id="resume:w", kind="resume", touchpoint="sale", journey_id=jid,
                    params={})
        later = _journey(session, clock)
        session.add(Member(journey_id=later, customer_id="C-2", status="waiting", pointer="w",
                           lane="", results={}, due_at=clock.now + timedelta(days=3)))
        ended = _journey(session, clock)
        session.get(Journey, ended).status = "cancelled"
        session.add(Member(journey_id=ended, customer_id="C-3", status="waiting", pointer="w",
                           lane="", results={}, due_at=clock.now - timedelta(hours=1)))
    assert run_checks(checks, now=clock.now)["stuck-members"] == 0


def test_a_launched_unit_waits_for_its_due_time_and_a_stuck_one_links_its_run(
        checks, clock, smtp_server):
    old = clock.now - timedelta(minutes=30)
    with checks.store.session() as session:
        for uid, due in (("resume:later", clock.now + timedelta(days=1)), ("resume:now", None)):
            session.add(WorkUnit(id=uid, kind="resume", touchpoint="sale", params={},
                                 label=uid, status="launched", launched_at=old, due_at=due,
                                 flow_run_id=f"run-{uid[7:]}", attempts=1, reason="",
                                 created_at=old, updated_at=old))
    [report] = _tick(checks, clock)
    assert report["count"] == 1
    text = _text(_reports(smtp_server)[0])
    assert "resume:now: launched since" in text and "/runs/flow-run/run-now" in text
    assert "run-later" not in text


def test_a_task_still_open_after_its_last_escalation_links_its_page(checks, clock, smtp_server):
    long_ago = clock.now - timedelta(days=3)
    with checks.store.session() as session:
        stalled = _task(session, clock, due=long_ago, level=2)
        _task(session, clock, due=long_ago, level=1)  # a level still to go
        _task(session, clock, due=long_ago, level=2, status="completed")
        _task(session, clock, due=clock.now - timedelta(days=1), level=2)  # its 4 hours to go
    [report] = _tick(checks, clock)
    assert (report["subject"], report["count"]) == ("install", 1)
    text = _text(_reports(smtp_server)[0])
    assert f"Schedule the install {stalled}" in text
    assert "escalated to ops-director@northwind.example" in text and "/t/" in text


def test_refused_events_are_counted_per_event_type_with_the_bad_fields(
        checks, clock, smtp_server):
    from flows.engine.intake import refuse_bad_data

    refused(checks, clock, 2)
    with pytest.raises(EventDataError):
        refuse_bad_data(checks, type="install.completed", data={}, event_id="evt-ic",
                        source="api:fsm", actor="api:fsm")
    reports = _tick(checks, clock)
    assert sorted((r["subject"], r["count"]) for r in reports) == [
        ("contract.signed", 2), ("install.completed", 1)]
    texts = {m["Subject"]: _text(m) for m in _reports(smtp_server)}
    assert "monthly_price:" in texts["2 contract.signed event(s) refused"]
    assert "evt-ic from api:fsm: job_id:" in texts["1 install.completed event(s) refused"]
    assert "/docs" in texts["1 install.completed event(s) refused"]


def test_a_window_deferral_is_not_an_smtp_failure(checks, clock):
    from flows.store import audit

    with checks.store.session() as session:
        audit.record(session, action="email.deferred", result="deferred", actor="system",
                     reason="outside the send window in Europe/London")
    assert run_checks(checks, now=clock.now)["smtp"] == 0


def test_an_unreachable_smtp_server_is_found_by_the_probe_at_most_every_few_minutes(
        checks, clock, smtp_server, monkeypatch):
    from flows.mail.smtp import SmtpTransport

    monkeypatch.setattr(alert_checks, "PROBE_EVERY", timedelta(minutes=5))
    dead = SmtpTransport(f"smtp://127.0.0.1:{free_port()}", retries=1)
    assert probe_smtp(checks, now=clock.now, transport=dead) == {"smtp-probe": 1}
    assert checks.health["smtp"]["ok"] is False
    assert "cannot connect to" in checks.health["smtp"]["error"]
    clock.advance(minutes=2)
    assert probe_smtp(checks, now=clock.now, transport=dead) == {"smtp-probe": 0}  # not yet
    clock.advance(minutes=4)
    assert probe_smtp(checks, now=clock.now, transport=dead) == {"smtp-probe": 1}
    [report] = flush_due(checks, now=clock.now)
    assert (report["key"], report["count"]) == ("smtp", 2)
    assert "cannot connect to smtp://127.0.0.1:" in _text(_reports(smtp_server)[0])
    clock.advance(minutes=6)
    probe_smtp(checks, now=clock.now)  # the configured server answers
    assert checks.health["smtp"]["ok"] is True
    assert flush_due(checks, now=clock.now) == []


def test_while_the_server_is_unreachable_the_alerts_wait_and_go_when_it_is_back(
        checks, clock, smtp_server):
    undispatched(checks, clock, 1)
    stuck_members(checks, clock, 1)
    run_checks(checks, now=clock.now)
    smtp_server.fail_next(421, "try again later", times=3, at="mail")
    [failed] = flush_due(checks, now=clock.now)  # the first fails, the rest wait
    assert failed["status"] == "failed"
    assert sorted(r["kind"] for r in flush_due(checks, now=clock.now)) == [
        "stuck-members", "undispatched"]


def test_the_housekeeping_loop_checks_then_sends(checks, clock, smtp_server):
    from flows.service.housekeeping import Housekeeper

    undispatched(checks, clock, 3)
    assert Housekeeper(checks, launcher=None).alerts(clock.now) == 1
    assert [m["Subject"] for m in _reports(smtp_server)] == ["3 event(s) not dispatched"]
    with checks.store.session() as session:
        row = session.get(Alert, "undispatched")
        assert (row.pending, row.total, row.detail["now"]) == (0, 3, 3)


def test_the_loop_looks_every_half_minute_and_sends_at_every_tick(checks, clock, smtp_server,
                                                                   monkeypatch):
    from flows.service import housekeeping
    from flows.service.housekeeping import ALERT_CHECK_SECONDS, Housekeeper

    seconds = [1000.0]
    monkeypatch.setattr(housekeeping, "monotonic", lambda: seconds[0])
    keeper = Housekeeper(checks, launcher=None)
    assert keeper.alerts(clock.now) == 0
    undispatched(checks, clock, 1)
    seconds[0] += ALERT_CHECK_SECONDS - 1
    assert keeper.alerts(clock.now) == 0  # not looked yet
    seconds[0] += 1
    assert keeper.alerts(clock.now) == 1
