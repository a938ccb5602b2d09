"""exit_when: an event ends journeys at once, at intake, in the event's own transaction.

Real parts: the shipped touchpoints.yaml (and a copy the test edits), the store on SQLite and
PostgreSQL, the session's Prefect server, an SMTP server on 127.0.0.1, a fake engine clock."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from flows.store.tables import (
    AuditRow,
    Continuation,
    Customer,
    Hold,
    Journey,
    Member,
    WorkUnit,
)
from tests.engine.conftest import CUSTOMERS, REPO, make_engine, sample_customers

pytestmark = pytest.mark.e2e

CUSTOMER = "C-1003"            # contract ends 2027-03-16: the 60-day email is due 2027-01-15
EMAIL = "siobhan.nibhriain@example.org"


def start_renewal(engine) -> str:
    from flows.engine.launch import InProcessLauncher

    result = InProcessLauncher().start("renewal", event={"id": "renewal-test", "type": "date",
                                                         "customer_id": CUSTOMER, "data": {}},
                                       customer_id=CUSTOMER, label=CUSTOMER)
    return result["journey_id"]


def subjects(smtp_server, address: str = EMAIL) -> list[str]:
    return [str(m.message["Subject"]) for m in smtp_server.messages if address in m.envelope_to]


def resume_at(engine, clock, when: datetime) -> list[dict]:
    from flows.engine.dispatch import Dispatcher
    from flows.engine.launch import InProcessLauncher

    clock.now = when
    return Dispatcher(engine, InProcessLauncher()).resume_due()


def audit(engine, **where) -> list[AuditRow]:
    with engine.store.session() as session:
        query = select(AuditRow).order_by(AuditRow.seq)
        for key, value in where.items():
            query = query.where(getattr(AuditRow, key) == value)
        rows = list(session.scalars(query))
        session.expunge_all()
    return rows


# --------------------------------------------------------------------------- a customer journey
def test_a_renewal_ends_the_renewal_journey_with_its_goal_and_no_more_contract_emails_go_out(
        engine, emit, clock, smtp_server):
    journey_id = start_renewal(engine)
    assert subjects(smtp_server) == ["Your Northwind contract ends on 16 March 2027"]

    result = emit("contract.renewed", CUSTOMER, new_contract_start="2027-03-17",
                  new_contract_end="2029-03-16")

    with engine.store.session() as session:
        journey = session.get(Journey, journey_id)
        member = session.scalar(select(Member).where(Member.journey_id == journey_id))
        assert (journey.status, member.status, member.reason) == ("done", "exited", "Renewed")
        assert member.due_at is None
        assert {c.status for c in session.scalars(select(Continuation).where(
            Continuation.journey_id == journey_id))} == {"cancelled"}
        customer = session.get(Customer, CUSTOMER)
        assert (customer.contract_start, customer.contract_end) == (date(2027, 3, 17),
                                                                    date(2029, 3, 16))
        from flows.reports.queries import journeys as journey_figures

        figures = journey_figures(session, touchpoint="renewal")["renewal"]
        assert figures["goals"] == 1 and figures["exits"] == {"Renewed": 1}
    goal = audit(engine, journey_id=journey_id, action="journey.goal")
    assert [(g.result, g.reason, g.detail["event_id"]) for g in goal] == [
        ("goal", "Renewed", result.event_id)]

    assert resume_at(engine, clock, datetime(2027, 1, 15, 12, 0, tzinfo=UTC)) == []
    assert resume_at(engine, clock, datetime(2027, 2, 20, 12, 0, tzinfo=UTC)) == []
    assert subjects(smtp_server) == ["Your Northwind contract ends on 16 March 2027"]


def test_a_renewal_of_another_customer_leaves_the_journey_alone(engine, emit, clock,
                                                               smtp_server):
    journey_id = start_renewal(engine)

    emit("contract.renewed", "C-1001")

    with engine.store.session() as session:
        assert session.get(Journey, journey_id).status == "active"
    resume_at(engine, clock, datetime(2027, 1, 15, 12, 0, tzinfo=UTC))
    assert any(s.startswith("Your options for staying") for s in subjects(smtp_server))


def test_a_resume_unit_queued_for_the_wait_is_done_and_its_run_claims_nobody(engine, emit):
    from flows.engine.launch import InProcessLauncher
    from flows.engine.redrive import queue_continuations

    journey_id = start_renewal(engine)
    with engine.store.session() as session:
        assert queue_continuations(session, journey_id=journey_id) == 1

    emit("contract.renewed", CUSTOMER)

    with engine.store.session() as session:
        unit = session.scalar(select(WorkUnit).where(WorkUnit.journey_id == journey_id,
                                                     WorkUnit.kind == "resume"))
        assert unit.status == "done" and unit.reason == "journey ended: Renewed"
        params = dict(unit.params)
    outcome = InProcessLauncher().resume("renewal", journey_id=journey_id,
                                         pointer=params["pointer"], mode="after", label="late",
                                         customer_id=CUSTOMER, continuation=unit.id,
                                         unit_id=unit.id)
    assert outcome["skipped"].startswith("unit ")
    with engine.store.session() as session:
        assert session.scalar(select(Member.status).where(
            Member.journey_id == journey_id)) == "exited"


def test_a_batch_in_flight_when_the_journey_ends_leaves_its_members_exited(engine, emit):
    from flows.engine.goals import keep_ended

    journey_id = start_renewal(engine)
    emit("contract.renewed", CUSTOMER)
    with engine.store.session() as session:   # what a step that read the member before does
        member = session.scalar(select(Member).where(Member.journey_id == journey_id))
        member.status, member.due_at = "waiting", datetime(2027, 1, 15, 10, tzinfo=UTC)
        assert keep_ended(session, journey_id=journey_id, member_ids=[member.id],
                          now=datetime(2026, 11, 24, tzinfo=UTC)) == 1
    with engine.store.session() as session:
        assert session.scalar(select(Member.status).where(
            Member.journey_id == journey_id)) == "exited"


# --------------------------------------------------------------------------- a segment journey
OUTAGE_KEY = "      key: event.data.outage_id | default(event.id)\n    steps:\n      - id: quiet_during_outage\n"
NORTH = sorted(c["id"] for c in sample_customers() if c["region"] == "north")
WITHDRAWN = """  outage.withdrawn:
    description: The NOC withdraws an outage declared in error.
    fields:
      outage_id: {type: string, description: "The outage withdrawn."}
    example: {outage_id: OUT-1042}

"""


@pytest.fixture
def outage_engine(store, smtp_server, prefect_server, clock, tmp_path, monkeypatch):
    """The shipped file with `outage.withdrawn`, which ends the outage journey it names."""
    from flows.config.loading import forget_loaded
    from flows.engine.compiler import forget_compiled
    from flows.engine.core import set_engine
    from flows.settings import reset_settings
    from flows.store.customers import import_customers

    folder = tmp_path / "project"
    folder.mkdir()
    shutil.copytree(REPO / "templates", folder / "templates")
    text = (REPO / "touchpoints.yaml").read_text(encoding="utf-8")
    assert text.count(OUTAGE_KEY) == 1 and text.count("  ticket.opened:\n") == 1
    text = text.replace("  ticket.opened:\n", WITHDRAWN + "  ticket.opened:\n")
    text = text.replace(OUTAGE_KEY, OUTAGE_KEY.replace("    steps:\n", (
        "    exit_when:\n"
        "      - {event: outage.withdrawn, reason: \"Declared in error\","
        " match: \"event.data.outage_id == trigger.data.outage_id\"}\n    steps:\n")))
    (folder / "touchpoints.yaml").write_text(text, encoding="utf-8")
    monkeypatch.setenv("TOUCHPOINTS_DATA_DIR", str(tmp_path / "data"))
    forget_loaded()
    engine = make_engine(folder / "touchpoints.yaml", smtp_server.url, monkeypatch, store)
    import_customers(store, CUSTOMERS, actor="test")
    yield engine
    set_engine(None)
    forget_compiled()
    reset_settings()


def test_a_segment_journey_ends_for_everyone_when_the_event_matches_its_trigger(
        outage_engine, clock, smtp_server):
    from flows.engine.dispatch import Dispatcher
    from flows.engine.launch import InProcessLauncher

    dispatcher = Dispatcher(outage_engine, InProcessLauncher())

    def emit(event_type: str, **data):
        return dispatcher.emit(type=event_type, data=data, source="test", actor="test")

    emit("outage.declared", outage_id="OUT-1", regions=["north"])
    emit("outage.declared", outage_id="OUT-2", regions=["north"])
    with outage_engine.store.session() as session:
        first, second = (session.scalar(select(Journey.id).where(
            Journey.entry_key.like(f"%{key}%"))) for key in ("OUT-1", "OUT-2"))
    sent = len(smtp_server.messages)

    withdrawn = emit("outage.withdrawn", outage_id="OUT-1")
    resolved = emit("outage.resolved", outage_id="OUT-1", regions=["north"])

    assert resolved.resumed == []                     # nobody of OUT-1 is waiting any more
    assert len(smtp_server.messages) == sent          # so no "your service is back"
    with outage_engine.store.session() as session:
        assert session.get(Journey, first).status == "done"
        assert session.get(Journey, second).status == "active"
        statuses = {j: sorted(session.scalars(select(Member.status).where(
            Member.journey_id == j))) for j in (first, second)}
        assert statuses == {first: ["exited"] * len(NORTH), second: ["waiting"] * len(NORTH)}
        assert not session.scalars(select(Hold).where(Hold.source.like(f"{first}:%"))).all()
        assert len(session.scalars(select(Hold).where(
            Hold.source.like(f"{second}:%"))).all()) == len(NORTH)
    rows = audit(outage_engine, journey_id=first, action="journey.exited")
    assert sorted(r.customer_id for r in rows) == NORTH
    assert {(r.result, r.reason, r.detail["event_id"]) for r in rows} == {
        ("exited", "Declared in error", withdrawn.event_id)}


# --------------------------------------------------------------------------- touchpoints check
RENEWAL_EXIT = '      - {event: contract.renewed, goal: "Renewed"}\n'


def check_with(exit_when: str, where: str = RENEWAL_EXIT) -> list[str]:
    from flows.config.checker import check_text

    text = (REPO / "touchpoints.yaml").read_text(encoding="utf-8")
    assert text.count(where) == 1
    result = check_text(text.replace(where, exit_when), file="touchpoints.yaml",
                        templates_dir=REPO / "templates")
    return [f"{d.path}: {d.message}" for d in result.diagnostics]


@pytest.mark.parametrize(("exit_when", "expected"), [
    ('      - {event: contract.renewd, goal: "Renewed"}\n',
     "touchpoints.renewal.exit_when[0].event: unknown event type 'contract.renewd'"),
    ('      - {event: contract.renewed, goal: "Renewed", reason: "also"}\n',
     "touchpoints.renewal.exit_when[0]: give exactly one of 'goal' (what was achieved) or "
     "'reason'"),
    ('      - {event: contract.renewed, goal: "Renewed", match: "event.data.end > now"}\n',
     "touchpoints.renewal.exit_when[0].match: event.data.end is not a field of "
     "contract.renewed"),
    ('      - {event: contract.renewed, goal: "Renewed", match: "event.data.plan =="}\n',
     "touchpoints.renewal.exit_when[0].match: invalid expression: unexpected 'end of "
     "template'"),
    ('      - {event: contract.renewed, goal: "Renewed", match: "event.data.term_months == \'24\'"}\n',
     "touchpoints.renewal.exit_when[0].match: event.data.term_months is a integer "
     "(contract.renewed), so it never equals '24'"),
    ('      - {event: contract.renewed, goal: "Renewed", match: "event.__class__"}\n',
     "touchpoints.renewal.exit_when[0].match: '__class__' is a private or internal name, "
     "which templates and expressions cannot use"),
    ('      - {event: contract.renewed, goal: "Renewed", when: "x"}\n',
     "touchpoints.renewal.exit_when[0].when: unknown field 'when'"),
])
def test_check_names_each_bad_exit_when(exit_when, expected):
    found = check_with(exit_when)
    assert expected in found, found


def test_check_refuses_a_segment_exit_match_that_reads_the_customer():
    found = check_with(
        "    entry:\n      rule: once\n      key: event.data.outage_id | default(event.id)\n"
        "    exit_when:\n      - {event: outage.resolved, goal: Fixed,"
        " match: \"customer.region in event.data.regions\"}\n"
        "    steps:\n      - id: quiet_during_outage\n",
        where="    entry:\n      rule: once\n      key: event.data.outage_id | default(event.id)\n"
              "    steps:\n      - id: quiet_during_outage\n")
    assert any(f.startswith("touchpoints.outage.exit_when[0].match: a segment journey ends "
                            "for all its members at once") for f in found), found


def test_the_shipped_renewal_exits_on_contract_renewed():
    from flows.config.checker import load_config

    config = load_config(REPO / "touchpoints.yaml")
    assert [(r.event, r.goal) for r in config.touchpoints["renewal"].exit_when] == [
        ("contract.renewed", "Renewed")]
    assert config.events["contract.renewed"].updates == {
        "contract_start": "new_contract_start", "contract_end": "new_contract_end",
        "plan": "plan"}


def test_the_shipped_outage_update_ends_when_its_own_outage_is_resolved():
    from flows.config.checker import load_config
    from flows.engine.goals import _matches
    from flows.store.tables import Journey as JourneyRow

    config = load_config(REPO / "touchpoints.yaml")
    (rule,) = config.touchpoints["outage-update"].exit_when
    assert (rule.event, rule.goal) == ("outage.resolved", None)
    journey = JourneyRow(id="j", touchpoint="outage-update", trigger={
        "type": "outage.updated", "data": {"outage_id": "OUT-1", "regions": ["north"]}})
    now = datetime(2026, 12, 1, tzinfo=UTC)

    def ends(**data) -> bool:
        return _matches(config, rule, journey=journey, customer=None, now=now,
                        event={"id": "e", "type": "outage.resolved", "data": data})

    assert ends(outage_id="OUT-1", regions=["north"])
    assert not ends(outage_id="OUT-2", regions=["north"])
    assert not ends(regions=["north"])  # no id: the update's first step looks for it instead
