"""`touchpoints simulate`: the engine's own rules on a virtual clock, a throwaway store, no mail."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from tests.engine import simfixtures
from tests.engine.simfixtures import CUSTOMERS, TUESDAY

sim_engine = simfixtures.sim_engine  # the fixture


def run(engine, name, customer="C-1001", **options):
    from flows.engine.simulate import simulate

    options.setdefault("start", TUESDAY)
    timeline, messages = simulate(engine, name, customer, **options)
    return timeline, messages


def kinds(timeline, *wanted):
    return [(e.day, e.step, e.kind, e.subject or e.detail) for e in timeline.entries
            if e.kind in wanted]


def counts(store):
    from flows.store.tables import AuditRow, Delivery, Journey, Survey, Task

    with store.read_session() as session:
        return {model.__name__: session.scalar(select(func.count()).select_from(model))
                for model in (AuditRow, Delivery, Journey, Survey, Task)}


def test_a_simulation_leaves_the_store_and_the_clock_as_they_were_and_sends_nothing(sim_engine):
    from flows import clock

    before, now_before = counts(sim_engine.store), clock.now
    timeline, messages = run(sim_engine, "sale", answers=["csat=5@+4d"])
    assert counts(sim_engine.store) == before
    assert clock.now is now_before
    # the SMTP URL points at a closed port: a real send would have been deferred
    assert not [e for e in timeline.entries if e.kind in ("deferred", "failed")]
    assert [m["Subject"] for m in messages][:1] == [
        "Welcome to Northwind Fibre, Zoë: here's what happens next"]
    assert len(messages) == len(kinds(timeline, "message"))


def test_the_clock_is_given_back_when_the_simulation_fails(sim_engine, monkeypatch):
    from flows import clock
    from flows.engine import simulate as module

    def broken(self):
        raise RuntimeError("boom")

    monkeypatch.setattr(module.Simulation, "run", broken)
    before = clock.now
    with pytest.raises(RuntimeError):
        run(sim_engine, "sale")
    assert clock.now is before


def test_mail_outside_the_send_window_is_deferred_to_its_opening_in_the_customers_timezone(
        sim_engine):
    sunday = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
    timeline, _ = run(sim_engine, "check-in", "C-1008", start=sunday)  # Asia/Shanghai
    deferred = kinds(timeline, "deferred")
    assert deferred == [(0, "hows_it_going", "deferred",
                         "outside the send window in Asia/Shanghai")]
    sent = [e for e in timeline.entries if e.kind == "message"]
    assert sent[0].local == "Mon 30 Nov 2026 08:00"
    assert [e.until for e in timeline.entries if e.kind == "deferred"] == ["Mon 30 Nov 2026 08:00"]


def test_a_hold_in_the_store_suppresses_the_survey_with_its_reason(sim_engine):
    from flows.store.tables import Hold

    with sim_engine.store.session() as session:
        session.add(Hold(customer_id="C-1001", categories=["surveys"], source="other:hold",
                         reason="Open outage OUT-7 in the north region",
                         created_at=TUESDAY - timedelta(days=1), until=None))
    timeline, _ = run(sim_engine, "sale")
    assert kinds(timeline, "suppressed") == [
        (3, "sale_csat", "suppressed", "held out: Open outage OUT-7 in the north region")]


def test_an_unsubscribed_customer_gets_no_survey_and_the_journey_takes_the_timeout(sim_engine):
    timeline, _ = run(sim_engine, "sale", "C-1004", answers=["csat=1@+4d"])
    assert kinds(timeline, "suppressed", "skipped", "branch", "goal") == [
        (3, "sale_csat", "suppressed", "customer unsubscribed from surveys"),
        (4, None, "skipped", "csat"),
        (10, "unhappy_joiner", "branch", "else"),
        (10, "joined_happily", "goal", "Customer joined and is happy (or did not answer)"),
    ]
    assert [e.detail for e in timeline.entries if e.kind == "skipped"] == [
        "answer 1: no csat survey was sent"]


def test_the_entry_rule_refuses_a_customer_who_already_had_the_journey(sim_engine):
    from flows.store.tables import Journey

    with sim_engine.store.session() as session:
        session.add(Journey(id="j-earlier", touchpoint="sale", entry_key="C-1001|cycle:2025-01-10",
                            entry_lock=True, customer_id="C-1001", trigger={}, status="done",
                            started_at=TUESDAY - timedelta(days=30)))
    timeline, messages = run(sim_engine, "sale")
    assert [e.kind for e in timeline.entries] == ["event", "refused"]
    assert "j-earlier already holds key C-1001|cycle:2025-01-10" in timeline.entries[1].detail
    assert messages == []


def test_a_where_filter_that_is_false_starts_nothing(sim_engine):
    timeline, _ = run(sim_engine, "billing", data={"first": False})
    assert kinds(timeline, "skipped", "started") == [
        (0, None, "skipped",
         "invoice.issued did not start billing: where: event.data.first is false")]


def test_an_event_that_starts_another_touch_point_is_noted_not_run(sim_engine):
    timeline, _ = run(sim_engine, "sale", events=["install.scheduled@+1d"])
    assert kinds(timeline, "note") == [(1, None, "note", "install")]
    assert "would also start install (not simulated)" in next(
        e.detail for e in timeline.entries if e.kind == "note")


def test_a_journey_still_waiting_when_the_simulation_ends_says_so(sim_engine):
    timeline, _ = run(sim_engine, "check-in", until=timedelta(days=30))
    last = timeline.entries[-1]
    assert (last.kind, last.step, last.day) == ("open", "quiet_period", 30)
    assert last.until == "Sat 23 Jan 2027 10:00"


def test_a_customer_outside_the_segment_is_told_so(sim_engine):
    timeline, messages = run(sim_engine, "maintenance-notice", "C-1001")  # north; work: south, west
    assert kinds(timeline, "skipped") == [
        (0, None, "skipped", ("the customer is not in the segment customer.region in "
                             "event.data.regions"))]
    assert messages == []


@pytest.mark.parametrize("text, problem", [
    ("install.completed@3d", "must start with +"),
    ("install.completed@+3x", "is not a duration"),
    ("install.completed@+1d={bad", "the data is not JSON"),
    ("install.completed@+1d=[1]", "must be a JSON object"),
    ("@+1d", "names no event type"),
])
def test_bad_event_syntax_is_an_error_with_a_hint(text, problem):
    from flows.engine.simscript import parse_event
    from flows.errors import TouchpointsError

    with pytest.raises(TouchpointsError) as caught:
        parse_event(text)
    assert problem in caught.value.message
    assert "TYPE@+OFFSET" in caught.value.hint


def test_the_script_parses_offsets_data_and_answers():
    from flows.engine.simscript import parse_answer, parse_event

    event = parse_event('task.completed@+2d4h={"outcome": "done"}')
    assert (event.name, event.offset, event.data) == ("task.completed", timedelta(days=2, hours=4),
                                                      {"outcome": "done"})
    assert parse_event("outage.resolved").offset == timedelta(0)
    answer = parse_answer("install_nps=9@+1d")
    assert (answer.name, answer.value, answer.offset) == ("install_nps", "9", timedelta(days=1))


def cli(capsys, *argv):
    from flows.cli import main

    code = 0
    try:
        main(["simulate", *argv])
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("argv, message, hint", [
    (["nope", "-c", "C-1001"], "no touch point 'nope'", "one of:"),
    (["sale", "-c", "C-9999"], "unknown customer 'C-9999'", "touchpoints customers"),
    (["sale", "-c", "C-1001", "--event", "contract.sined@+1d"], "unknown event type",
     "did you mean 'contract.signed'?"),
    (["sale", "-c", "C-1001", "--answer", "nps=3@+1d"], "no survey step or question 'nps'",
     "sale_csat"),
    (["sale", "-c", "C-1001", "--format", "xml"], "--format 'xml'", "--format json"),
    (["sale", "-c", "C-1001", "--answer", "csat=9@+4d", "--start", TUESDAY.isoformat()],
     "--answer csat=9: the score must be from 1 to 5, not 9", "nps 0 to 10"),
    (["sale", "-c", "C-1001", "--until", "soon"], "--until", "e.g. --until 30d"),
    (["sale", "-c", "C-1001", "--start", "tuesday"], "--start 'tuesday'", "ISO"),
])
def test_bad_input_is_an_error_with_a_hint_never_a_traceback(sim_engine, capsys, argv, message,
                                                              hint):
    code, _, err = cli(capsys, *argv)
    assert code == 1
    assert message in err and hint in err
    assert "Traceback" not in err


def test_the_json_format_is_the_timeline_as_a_list_of_entries(sim_engine, capsys):
    code, out, _ = cli(capsys, "sale", "-c", "C-1001", "--start", TUESDAY.isoformat(),
                       "--format", "json", "--answer", "csat=2@+4d")
    assert code == 0
    entries = json.loads(out)
    tasks = [e for e in entries if e["kind"] == "task"]
    assert [t["subject"] for t in tasks] == ["Book the install for Zoë Harper (Fibre 500)",
                                             "Call Zoë Harper back: joining scored 2/5"]
    assert tasks[1]["until"] == "Sat 28 Nov 2026 14:00"  # the support SLA, 4h
    assert {"at", "day", "local", "kind"} <= set(entries[0])


def test_a_postgresql_store_is_simulated_from_the_customers_rows(postgres_store, settings,
                                                                 monkeypatch):
    from flows.engine.core import Engine, set_engine
    from flows.settings import get_settings, reset_settings
    from flows.store.customers import import_customers

    monkeypatch.setenv("TOUCHPOINTS_CONFIG_FILE", str(simfixtures.REPO / "touchpoints.yaml"))
    monkeypatch.setenv("TOUCHPOINTS_DATABASE_URL", postgres_store.url)
    reset_settings()
    engine = Engine(get_settings(), store=postgres_store)
    set_engine(engine)
    try:
        import_customers(postgres_store, CUSTOMERS, actor="test")
        before = counts(postgres_store)
        timeline, _ = run(engine, "sale", "C-1004", answers=["csat=1@+4d"])
        assert counts(postgres_store) == before
        assert kinds(timeline, "suppressed", "goal") == [
            (3, "sale_csat", "suppressed", "customer unsubscribed from surveys"),
            (10, "joined_happily", "goal", "Customer joined and is happy (or did not answer)")]
    finally:
        set_engine(None)


def test_the_contact_policy_defers_a_survey_until_the_window_frees_up(sim_engine):
    from flows.config.policy import ContactRule
    from flows.engine.core import Engine, set_engine
    from flows.store.tables import Delivery

    config = sim_engine.config.model_copy(deep=True)
    config.defaults = config.defaults.model_copy(
        update={"contact_policy": [ContactRule(max=1, per=timedelta(days=7))]})
    engine = Engine(sim_engine.settings, config=config, store=sim_engine.store)
    set_engine(engine)
    with engine.store.session() as session:  # an offer went out the day the contract was signed
        session.add(Delivery(key="earlier:offer:C-1001:customer", journey_id="earlier",
                             step_id="offer", customer_id="C-1001", touchpoint="newsletter",
                             category="marketing", recipient="zoe.harper@example.com",
                             message_id="<offer@example>", subject="An offer", status="sent",
                             created_at=TUESDAY, updated_at=TUESDAY))
    timeline, _ = run(engine, "sale")
    deferred = [e for e in timeline.entries if e.kind == "deferred"]
    assert [(e.day, e.step, e.until) for e in deferred] == [
        (3, "sale_csat", "Tue 01 Dec 2026 10:00")]
    assert deferred[0].detail.startswith("contact policy: 1 ")
    assert (7, "sale_csat", "message", "One quick question about joining Northwind") in \
        timeline.pinned()


def test_a_re_booking_is_refused_while_the_install_runs_and_starts_anew_after_it_ended(sim_engine):
    timeline, _ = run(sim_engine, "install", events=["install.scheduled@+1d",
                                                     "install.completed@+2d",
                                                     "install.scheduled@+10d"],
                      answers=["nps=9@+5d"], until=timedelta(days=11))
    assert [(day, kind) for day, _, kind, _ in kinds(timeline, "refused", "started", "goal")] == [
        (0, "started"), (1, "refused"), (5, "goal"), (10, "started")]
    refused = next(e.detail for e in timeline.entries if e.kind == "refused")
    assert refused.startswith("entry rule after_end: journey ")
    assert timeline.entries[-1].kind == "open"  # the second visit is still awaited at +11d
