"""A batch's bookkeeping is batch-shaped: the audit rows a step and the parking of its members
write go to the chain with one read of its head for the whole batch, and members parking on a
``wait_for`` look up early events with one query for the batch, whatever its size. An event that
did arrive early still answers the wait of the member it is about.

Real parts: the shipped touchpoints.yaml (the ``outage`` touch point), the store on SQLite and
PostgreSQL, the engine's own ``run_batch``."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from sqlalchemy import select

from flows.store.tables import AuditRow, Continuation, Event, Hold, Journey, Member
from tests.engine.test_batched_delivery import NOW, Statements, customer_ids, direct_engine

__all__ = ["direct_engine"]  # the fixture, used by name

TRIGGER = {"id": "evt-declared", "type": "outage.declared", "customer_id": None,
           "occurred_at": NOW.isoformat(), "data": {"outage_id": "OUT-7", "regions": ["north"]}}


def a_journey(engine, members: list[str], journey_id: str, touchpoint: str = "outage") -> None:
    with engine.store.session() as session:
        session.add(Journey(id=journey_id, touchpoint=touchpoint, entry_key=journey_id,
                            trigger=TRIGGER, status="active", started_at=NOW))
        session.add_all(Member(journey_id=journey_id, customer_id=cid, status="active", wave="w",
                               lane="", results={}, updated_at=NOW) for cid in members)


def run_step(engine, step_id: str, journey_id: str,
             touchpoint: str = "outage") -> tuple[dict, Statements]:
    touchpoint = engine.touchpoint(touchpoint)
    step = next(s for s in touchpoint.steps if s.id == step_id)
    with Statements(engine.store) as counted, engine.store.session() as session:
        result = engine.journeys.run_batch(session, touchpoint=touchpoint, step=step,
                                           journey_id=journey_id, wave="w", lane="", after=0,
                                           flow_run_id=None, now=NOW)
    return result, counted


def test_a_hold_over_a_batch_reads_the_audit_chain_head_once_whatever_its_size(direct_engine):
    everyone = customer_ids(direct_engine)
    reads = {}
    for size in (3, 30):
        journey_id = f"j-hold-{size}"
        a_journey(direct_engine, everyone[:size], journey_id)
        result, counted = run_step(direct_engine, "quiet_during_outage", journey_id)
        assert result["count"] == size
        reads[size] = counted.tables["audit"]
        with direct_engine.store.session() as session:
            held = session.scalars(select(Hold.customer_id).where(
                Hold.source == f"{journey_id}:quiet_during_outage")).all()
            audited = session.scalars(select(AuditRow.customer_id).where(
                AuditRow.journey_id == journey_id, AuditRow.action == "hold.started")).all()
        assert sorted(held) == sorted(audited) == sorted(everyone[:size])

    assert reads[3] == reads[30] <= 1, reads


def test_parking_a_batch_on_wait_for_looks_for_early_events_and_its_continuation_once(
        direct_engine):
    everyone = customer_ids(direct_engine)
    statements = {}
    for size in (3, 30):
        journey_id = f"j-park-{size}"
        a_journey(direct_engine, everyone[:size], journey_id)
        result, counted = run_step(direct_engine, "await_fix", journey_id)
        assert result["outcomes"] == {"waitfor": size}
        statements[size] = (counted.tables["events"], counted.tables["audit"],
                            counted.tables["continuations"])
        with direct_engine.store.session() as session:
            parked = Counter(session.scalars(select(Member.status).where(
                Member.journey_id == journey_id)))
            waiting = session.scalars(select(AuditRow.customer_id).where(
                AuditRow.journey_id == journey_id, AuditRow.action == "journey.waiting")).all()
            continuations = session.scalars(select(Continuation.kind).where(
                Continuation.journey_id == journey_id)).all()
        assert parked == {"waiting": size}
        assert sorted(waiting) == sorted(everyone[:size])
        assert continuations == ["timeout"]  # one for the whole batch, parked at one time

    assert statements[3] == statements[30], statements
    assert statements[30][0] <= 2 and statements[30][1] <= 1, statements
    assert statements[30][2] <= 2, statements  # looked up once, written once


def test_an_event_that_arrived_before_the_batch_parked_still_answers_its_member(direct_engine):
    """``await_fix`` matches on the outage id: a resolution stored before the members reached
    the wait answers every one of them, and nobody parks."""
    everyone = customer_ids(direct_engine)[:4]
    journey_id = "j-early"
    a_journey(direct_engine, everyone, journey_id)
    with direct_engine.store.session() as session:
        session.add(Event(id="evt-early", type="outage.resolved", customer_id=None,
                          occurred_at=NOW + timedelta(minutes=1),
                          received_at=NOW + timedelta(minutes=1),
                          data={"outage_id": "OUT-7"}, status="dispatched"))

    result, _ = run_step(direct_engine, "await_fix", journey_id)

    assert result["count"] == 4
    with direct_engine.store.session() as session:
        members = session.scalars(select(Member).where(Member.journey_id == journey_id)).all()
        assert {m.status for m in members} == {"active"}  # answered at once: nobody parked
        assert all(m.results["await_fix"]["event"]["id"] == "evt-early" for m in members)
        matched = session.scalars(select(AuditRow.customer_id).where(
            AuditRow.journey_id == journey_id, AuditRow.action == "journey.event")).all()
    assert sorted(matched) == sorted(everyone)


def answer(engine, event_id: str, customer_id: str, at) -> None:
    with engine.store.session() as session:
        session.add(Event(id=event_id, type="survey.answered", customer_id=customer_id,
                          occurred_at=at, received_at=at, data={}, status="dispatched"))


def test_a_wait_on_the_customers_own_event_is_answered_only_for_that_customer(direct_engine):
    """``sale``'s ``await_csat`` has no ``match``: an answer stored after the journey began
    answers its own customer's wait; one from before the journey answers nobody's."""
    everyone = customer_ids(direct_engine)
    early, stale = everyone[:2]
    answer(direct_engine, "evt-answer", early, NOW + timedelta(minutes=2))
    answer(direct_engine, "evt-old-answer", stale, NOW - timedelta(days=1))
    lookups = {}
    for size in (3, 30):
        journey_id = f"j-csat-{size}"
        a_journey(direct_engine, everyone[:size], journey_id, touchpoint="sale")
        _, counted = run_step(direct_engine, "await_csat", journey_id, touchpoint="sale")
        lookups[size] = counted.tables["events"]
        with direct_engine.store.session() as session:
            status = dict(session.execute(select(Member.customer_id, Member.status).where(
                Member.journey_id == journey_id)).all())
        assert status[early] == "active"
        assert {cid for cid, s in status.items() if s == "waiting"} == set(everyone[1:size])

    assert lookups[3] == lookups[30], lookups  # the one member it may be about looks, not 30


def test_transactional_mail_signs_no_link_and_a_template_that_reads_one_still_gets_it(
        direct_engine, smtp_server, monkeypatch):
    from flows.engine.context import EngineContext
    from flows.steps.base import Member as MemberView
    from flows.store.customers import get_customer

    signer, signed = direct_engine.signer, []
    real = signer.url
    monkeypatch.setattr(signer, "url", lambda purpose, **claims: (
        signed.append(purpose), real(purpose, **claims))[1])
    everyone = customer_ids(direct_engine)
    a_journey(direct_engine, everyone[:5], "j-links")

    result, _ = run_step(direct_engine, "outage_acknowledged", "j-links")

    assert result["count"] == 5 and len(smtp_server.messages) == 5
    assert signed == []  # the outage notice is transactional: no link in it, none signed
    with direct_engine.store.session() as session:
        member = MemberView(id=1, customer=get_customer(session, everyone[0]), results={})
        ctx = EngineContext(engine=direct_engine, touchpoint=direct_engine.touchpoint("outage"),
                            step_id="x", journey_id="j-links", trigger=TRIGGER, flow_run_id=None,
                            now=NOW, session=session)
        text = ctx.render("{{ links.unsubscribe }} {{ 'preferences' in links }}", member)
    assert text.startswith("http") and "/u/" in text and text.endswith(" True"), text
    assert signed == ["unsubscribe"]  # signed once it was read, the other never
