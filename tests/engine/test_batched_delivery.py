"""A batch's emails go out batch-shaped: the batch's suppressions, preferences and holds are read
with one query each, whatever its size; the ledger says ``sending`` (committed) before each
chunk's SMTP conversation and is settled after it; a member whose journey ended between two
chunks gets nothing; a crash after a chunk went out re-sends it with the same Message-IDs.

Real parts: the shipped touchpoints.yaml, the store on SQLite and PostgreSQL, an SMTP server on
127.0.0.1, the session's Prefect server for the fan-outs."""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import event, select, update

from flows.store.tables import AuditRow, Customer, Delivery, Hold, Journey, Member, Preference
from flows.store.tables import Suppression
from flows.steps.base import Defer, Next
from tests.engine.test_redrive import Crash, expire_leases

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)  # a Tuesday, 10:00 London: the window is open


class Statements:
    """Every SQL statement the store runs while counting, by the table it reads first."""

    def __init__(self, store) -> None:
        self.tables: Counter[str] = Counter()
        self.engine = store.engine

    def _seen(self, conn, cursor, statement, parameters, context, executemany) -> None:
        found = re.search(r"\bFROM\s+\"?(\w+)", statement, re.IGNORECASE)
        if statement.lstrip().upper().startswith("SELECT") and found:
            self.tables[found.group(1)] += 1

    def __enter__(self) -> Statements:
        event.listen(self.engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc) -> None:
        event.remove(self.engine, "before_cursor_execute", self._seen)


@pytest.fixture
def direct_engine(store, smtp_server, tmp_path):
    """The shipped config on ``store`` with the sample customers, sending to ``smtp_server``."""
    from flows.config import load_config
    from flows.engine.core import Engine
    from flows.settings import Settings
    from flows.store.customers import import_customers

    assert import_customers(store, REPO / "docs" / "examples" / "customers.csv", actor="test").ok
    settings = Settings(data_dir=tmp_path / "data", config_file=REPO / "touchpoints.yaml",
                        secret_key="test", smtp_url=smtp_server.url, smtp_backoff_seconds=0.01)
    return Engine(settings, config=load_config(REPO / "touchpoints.yaml"), store=store)


def customer_ids(engine) -> list[str]:
    with engine.store.session() as session:
        return list(session.scalars(select(Customer.id).order_by(Customer.id)))


def reachable(engine, n: int) -> list[str]:
    """``n`` customers a survey reaches now: subscribed, and in Europe (the window is open)."""
    with engine.store.session() as session:
        opted_out = set(session.scalars(select(Preference.customer_id).where(
            Preference.category == "surveys", Preference.subscribed.is_(False))))
        ids = [cid for cid, tz in session.execute(select(Customer.id, Customer.timezone)
                                                   .order_by(Customer.id))
               if cid not in opted_out and tz.startswith("Europe/")]
    assert len(ids) >= n
    return ids[:n]


def run_survey(engine, customers: list[str], *, journey_id: str = "j-batch",
               counted: Statements | None = None) -> dict:
    """The shipped ``install_nps`` survey step over one batch of ``customers``, as the engine
    runs a batch: members of a journey, one EngineContext, the step's run function."""
    from flows.engine.context import EngineContext
    from flows.steps.base import Member as MemberView
    from flows.steps.survey import run
    from flows.store.customers import get_customer

    touchpoint = engine.touchpoint("install")
    step = next(s for s in touchpoint.steps if s.id == "install_nps")
    with engine.store.session() as session:
        if session.get(Journey, journey_id) is None:
            session.add(Journey(id=journey_id, touchpoint="install", entry_key=journey_id,
                                trigger={"id": "evt-1", "type": "install.completed", "data": {}},
                                status="active", started_at=NOW))
            session.add_all(Member(journey_id=journey_id, customer_id=cid, status="active",
                                   wave="w", lane="", results={}, updated_at=NOW)
                            for cid in customers)
            session.commit()
        rows = session.scalars(select(Member).where(Member.journey_id == journey_id)
                               .order_by(Member.id)).all()
        views = [MemberView(id=r.id, customer=get_customer(session, r.customer_id), results={})
                 for r in rows]
        ctx = EngineContext(engine=engine, touchpoint=touchpoint, step_id=step.id,
                            journey_id=journey_id, trigger={"id": "evt-1", "data": {}},
                            flow_run_id=None, now=NOW, session=session,
                            customer_ids=tuple(r.customer_id for r in rows))
        try:
            with counted or contextlib.nullcontext():
                outcomes = run(config=step, ctx=ctx, members=views)
        finally:
            ctx.close()
        return {r.customer_id: outcomes.get(r.id) for r in rows}


def test_a_batch_reads_suppressions_preferences_and_holds_once_whatever_its_size(
        direct_engine, smtp_server):
    everyone = customer_ids(direct_engine)
    bounced, unsubscribed, held = everyone[0], everyone[1], everyone[2]
    with direct_engine.store.session() as session:
        address = session.get(Customer, bounced).email
        session.add(Suppression(email=address.lower(), reason="bounced: 550 no such user",
                                created_at=NOW))
        session.add(Preference(customer_id=unsubscribed, category="surveys", subscribed=False))
        session.add(Hold(customer_id=held, categories=["surveys"], reason="open outage OUT-1",
                         source="j-other:quiet", created_at=NOW, until=None))

    counted = Statements(direct_engine.store)
    outcomes = run_survey(direct_engine, everyone, counted=counted)

    assert len(everyone) > 20
    for table in ("suppressions", "preferences", "holds", "surveys", "members", "customers"):
        assert counted.tables[table] == (0 if table == "customers" else 1), counted.tables
    assert counted.tables["deliveries"] == 2, counted.tables  # the ledger, the contact policy
    results = {cid: o.result for cid, o in outcomes.items() if isinstance(o, Next)}
    assert results[bounced]["status"] == "suppressed"
    assert "address suppressed: bounced: 550" in results[bounced]["reason"]
    assert results[unsubscribed]["reason"] == "customer unsubscribed from surveys"
    assert results[held]["reason"] == "held out: open outage OUT-1"
    deferred = [cid for cid, o in outcomes.items() if isinstance(o, Defer)]  # night abroad
    assert all("outside the send window" in outcomes[cid].reason for cid in deferred)
    with direct_engine.store.session() as session:
        opted_out = set(session.scalars(select(Preference.customer_id).where(
            Preference.category == "surveys", Preference.subscribed.is_(False))))
    assert len(opted_out) > 5  # the sample data's, and ours
    assert {cid for cid, r in results.items()
            if r["reason"] == "customer unsubscribed from surveys"} == opted_out - {bounced}
    sent = [cid for cid, r in results.items() if r["status"] == "sent"]
    suppressed = [cid for cid, r in results.items() if r["status"] == "suppressed"]
    assert len(sent) + len(suppressed) + len(deferred) == len(everyone)
    assert not (set(sent) & (opted_out | {bounced, held}))
    assert len(sent) == len(smtp_server.messages) > 20
    assert smtp_server.connections == 1  # one SMTP connection for the batch
    with direct_engine.store.session() as session:
        ledger = Counter(session.scalars(select(Delivery.status)))
        assert ledger == {"sent": len(sent), "suppressed": len(suppressed),
                          "deferred": len(deferred)}
        actions = Counter(session.scalars(select(AuditRow.action)))
        assert actions["email.sent"] == len(sent)
        assert actions["email.suppressed"] == len(suppressed)
        assert actions["email.deferred"] == len(deferred)


def test_the_same_batch_again_sends_nothing_twice(direct_engine, smtp_server):
    everyone = reachable(direct_engine, 7)
    run_survey(direct_engine, everyone)
    first = len(smtp_server.messages)
    outcomes = run_survey(direct_engine, everyone)
    assert len(smtp_server.messages) == first == 7
    assert {o.result["status"] for o in outcomes.values() if isinstance(o, Next)} == {"duplicate"}


def test_each_chunk_is_sending_in_the_store_before_its_smtp_conversation(
        direct_engine, smtp_server, monkeypatch):
    from flows.engine import delivery
    from flows.engine.core import MailSession

    monkeypatch.setattr(delivery, "CHUNK_SIZE", 3)
    seen: list[dict[str, str]] = []
    real_send = MailSession.send

    def send(self, message):  # what another connection to the store sees at that moment
        with direct_engine.store.session() as other:
            seen.append(dict(other.execute(select(Delivery.message_id, Delivery.status)).all()))
        return real_send(self, message)

    monkeypatch.setattr(MailSession, "send", send)
    run_survey(direct_engine, reachable(direct_engine, 7))

    ids = [m.message["Message-ID"] for m in smtp_server.messages]
    assert len(ids) == 7
    for n, (message_id, store) in enumerate(zip(ids, seen, strict=True)):
        chunk = n // 3
        assert store[message_id] == "sending"            # durable before it went
        assert all(store[i] == "sent" for i in ids[:chunk * 3])  # earlier chunks settled
        assert len(store) == min(7, (chunk + 1) * 3)     # later chunks not yet written


def test_a_member_whose_journey_ends_between_chunks_gets_nothing(direct_engine, smtp_server,
                                                                 monkeypatch):
    from flows.engine import delivery
    from flows.engine.core import MailSession
    monkeypatch.setattr(delivery, "CHUNK_SIZE", 2)
    everyone = reachable(direct_engine, 6)
    real_send, sent = MailSession.send, []

    def send(self, message):
        result = real_send(self, message)
        sent.append(message["To"])
        if len(sent) == 2:  # the first chunk is out: the third customer leaves, as a cancel does
            with direct_engine.store.session() as other:
                other.execute(update(Member).where(Member.customer_id == everyone[2])
                              .values(status="exited", reason="cancelled"))
        return result

    monkeypatch.setattr(MailSession, "send", send)
    outcomes = run_survey(direct_engine, everyone)

    assert len(smtp_server.messages) == 5
    assert outcomes[everyone[2]] is None                  # no outcome: the step leaves it be
    with direct_engine.store.session() as session:
        assert session.scalar(select(Delivery).where(Delivery.customer_id == everyone[2])) is None
        assert session.scalar(select(Member.status).where(
            Member.customer_id == everyone[2])) == "exited"


def test_an_outage_update_resolved_between_chunks_goes_to_nobody_else(
        engine, emit, smtp_server, monkeypatch):
    from flows.engine import delivery
    from flows.engine.core import MailSession
    from flows.engine.goals import end_journeys

    monkeypatch.setattr(delivery, "CHUNK_SIZE", 2)
    real_send, sent = MailSession.send, []

    def send(self, message):
        result = real_send(self, message)
        sent.append(message["To"])
        if len(sent) == 2:  # the NOC resolves the outage while the update goes out
            with engine.store.session() as other:
                end_journeys(engine, other, {"id": "evt-resolved", "type": "outage.resolved",
                                             "customer_id": None,
                                             "data": {"outage_id": "OUT-5",
                                                      "regions": ["north"]}}, NOW)
        return result

    monkeypatch.setattr(MailSession, "send", send)
    emit("outage.updated", regions=["north"], outage_id="OUT-5")

    assert len(smtp_server.messages) == 2
    with engine.store.session() as session:
        journey = session.scalar(select(Journey).where(Journey.touchpoint == "outage-update"))
        statuses = Counter(session.scalars(select(Member.status).where(
            Member.journey_id == journey.id)))
        assert journey.status == "done" and set(statuses) == {"exited"} and statuses["exited"] > 2
        ledger = session.scalars(select(Delivery.status).where(
            Delivery.journey_id == journey.id)).all()
        assert ledger == ["sent", "sent"]


def test_a_crash_after_a_chunk_went_out_settles_it_on_re_drive_without_sending_it_again(
        engine, emit, smtp_server, monkeypatch):
    from flows.engine.delivery import ACCEPTED, Deliverer
    from flows.engine.launch import InProcessLauncher
    from flows.engine.redrive import UnitDriver
    from flows.store import audit

    real_sent = Deliverer._sent
    monkeypatch.setattr(Deliverer, "_sent", lambda self, ctx, delivered: (_ for _ in ()).throw(
        Crash("kill -9 after the SMTP conversation")))
    with pytest.raises(Crash):
        emit("outage.declared", regions=["north"], outage_id="OUT-6")
    first = {m.envelope_to[0]: m.message["Message-ID"] for m in smtp_server.messages}
    with engine.store.session() as session:
        ledger = session.scalars(select(Delivery).where(Delivery.step_id == "outage_acknowledged")).all()
        assert ledger and {row.status for row in ledger} == {ACCEPTED}  # each marked as it went
        assert {row.recipient: row.message_id for row in ledger} == first
    monkeypatch.setattr(Deliverer, "_sent", real_sent)

    expire_leases(engine)
    driver = UnitDriver(engine, InProcessLauncher())
    assert driver.watch() == 1 and driver.launch_queued() == 1

    assert len(smtp_server.messages) == len(first)  # nothing went twice
    with engine.store.session() as session:
        statuses = session.scalars(select(Delivery.status).where(
            Delivery.step_id == "outage_acknowledged")).all()
        assert set(statuses) == {"sent"} and len(statuses) == len(first)
        sent = session.scalars(select(AuditRow.customer_id).where(
            AuditRow.action == "email.sent", AuditRow.step == "outage_acknowledged")).all()
        assert len(sent) == len(first)  # each audited once, when the re-drive settled it
        assert audit.verify(session).ok


def test_a_crash_in_the_middle_of_a_chunk_sends_only_the_email_in_flight_again(
        engine, emit, smtp_server, monkeypatch):
    from flows.engine.core import MailSession
    from flows.engine.launch import InProcessLauncher
    from flows.engine.redrive import UnitDriver
    from flows.store import audit

    real_send, count = MailSession.send, []

    def send(self, message):  # the third email is taken by the server, then the process dies
        result = real_send(self, message)
        count.append(1)
        if len(count) == 3:
            raise Crash("kill -9 while the chunk goes out")
        return result

    monkeypatch.setattr(MailSession, "send", send)
    with pytest.raises(Crash):
        emit("outage.declared", regions=["north"], outage_id="OUT-7")
    monkeypatch.setattr(MailSession, "send", real_send)
    in_flight = smtp_server.messages[2]

    expire_leases(engine)
    driver = UnitDriver(engine, InProcessLauncher())
    assert driver.watch() == 1 and driver.launch_queued() == 1

    seen = Counter((m.envelope_to[0], m.message["Message-ID"]) for m in smtp_server.messages)
    twice = [key for key, n in seen.items() if n > 1]
    assert twice == [(in_flight.envelope_to[0], in_flight.message["Message-ID"])]  # one crash
    with engine.store.session() as session:
        statuses = session.scalars(select(Delivery.status).where(
            Delivery.step_id == "outage_acknowledged")).all()
        assert set(statuses) == {"sent"} and len(statuses) == len(seen)
        assert audit.verify(session).ok
