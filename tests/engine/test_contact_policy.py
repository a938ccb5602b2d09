"""The contact policy: at most so many non-transactional emails per customer per window, across
every touch point, counted from the delivery ledger once per batch; the excess is deferred
until the window frees up (and the send window opens) or suppressed, with the reason audited;
transactional mail is never limited. Real store (both databases), real SMTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, select

from flows.config.checker import check
from flows.store.tables import AuditRow, Continuation, Delivery, Member
from tests.engine.conftest import CUSTOMERS, make_engine
from tests.engine.policy_setup import enter, resume, run_step, write_config

POLICY = """\
  contact_policy:
    - {max: 2, per: 7d}
    - {max: 1, per: 14d, categories: [surveys], action: suppress}
"""
ZOE = "zoe.harper@example.com"


def _engine(store, smtp_server, tmp_path, monkeypatch, defaults: str = POLICY):
    from flows.store.customers import import_customers

    monkeypatch.setenv("TOUCHPOINTS_DATA_DIR", str(tmp_path / "data"))
    engine = make_engine(write_config(tmp_path / "cfg", defaults=defaults), smtp_server.url,
                         monkeypatch, store)
    import_customers(store, CUSTOMERS, actor="test")
    return engine


@pytest.fixture
def policy_engine(store, smtp_server, clock, tmp_path, monkeypatch):
    from flows.engine.core import set_engine
    from flows.settings import reset_settings

    yield _engine(store, smtp_server, tmp_path, monkeypatch)
    set_engine(None)
    reset_settings()


def newsletter(engine, now, *ids: str, number: int) -> dict:
    entered = enter(engine, "news", now, event_id=f"news-{number}", ids=list(ids))
    run_step(engine, "news", "letter", entered["journey_id"], entered["wave"], now)
    return entered


def mail_to(smtp_server, address: str) -> list:
    return [m for m in smtp_server.messages if address in m.envelope_to]


def ledger(engine, journey_id: str) -> list[Delivery]:
    with engine.store.session() as session:
        return list(session.scalars(select(Delivery).where(Delivery.journey_id == journey_id)))


def test_the_third_newsletter_in_a_week_waits_until_the_first_leaves_the_window(
        policy_engine, clock, smtp_server):
    first = clock.now
    newsletter(policy_engine, clock.now, "C-1001", number=1)
    newsletter(policy_engine, clock.advance(days=1), "C-1001", number=2)
    third = newsletter(policy_engine, clock.advance(days=1), "C-1001", number=3)

    assert len(mail_to(smtp_server, ZOE)) == 2
    [row] = ledger(policy_engine, third["journey_id"])
    reason = "contact policy: 2 non-transactional emails in the last 7 days (at most 2)"
    assert (row.status, row.reason) == ("deferred", reason)
    with policy_engine.store.session() as session:
        member = session.scalar(select(Member).where(Member.journey_id == third["journey_id"]))
        assert (member.status, member.due_at) == ("waiting", first + timedelta(days=7))
        audited = session.scalar(select(AuditRow).where(AuditRow.action == "email.deferred"))
        assert audited.reason == reason and audited.customer_id == "C-1001"
        assert audited.detail["until"] == (first + timedelta(days=7)).isoformat()
        assert session.scalar(select(Continuation.kind).where(
            Continuation.journey_id == third["journey_id"])) == "defer"

    clock.now = first + timedelta(days=7, seconds=-20)  # a resumed run may start a little early
    wave = resume(policy_engine, third["journey_id"], "letter", clock.now)
    run_step(policy_engine, "news", "letter", third["journey_id"], wave, clock.now)
    assert len(mail_to(smtp_server, ZOE)) == 3
    assert ledger(policy_engine, third["journey_id"])[0].status == "sent"


def test_a_second_survey_within_two_weeks_is_suppressed_and_says_why(policy_engine, clock,
                                                                      smtp_server):
    for number in (1, 2):
        entered = enter(policy_engine, "poll", clock.now, customer_id="C-1001",
                        event_id=f"poll-{number}")
        run_step(policy_engine, "poll", "ask", entered["journey_id"], entered["wave"], clock.now)
        clock.advance(days=3)

    assert len(mail_to(smtp_server, ZOE)) == 1
    [row] = ledger(policy_engine, entered["journey_id"])
    assert (row.status, row.reason) == (
        "suppressed", "contact policy: 1 surveys email in the last 14 days (at most 1)")
    with policy_engine.store.session() as session:
        member = session.scalar(select(Member).where(Member.journey_id == entered["journey_id"]))
        assert member.results["ask"]["sent"] is False  # the journey goes on without it
        assert session.scalar(select(AuditRow.reason).where(
            AuditRow.action == "email.suppressed")).startswith("contact policy: ")


def test_an_outage_notice_goes_out_however_full_the_week_is(policy_engine, clock, smtp_server):
    newsletter(policy_engine, clock.now, "C-1001", number=1)
    newsletter(policy_engine, clock.advance(hours=1), "C-1001", number=2)
    notice = enter(policy_engine, "notice", clock.advance(hours=1), customer_id="C-1001")
    run_step(policy_engine, "notice", "tell", notice["journey_id"], notice["wave"], clock.now)

    assert ledger(policy_engine, notice["journey_id"])[0].status == "sent"
    assert len(mail_to(smtp_server, ZOE)) == 3


def test_mail_to_a_team_is_not_counted_against_the_customer(policy_engine, clock, smtp_server):
    from flows.engine.contact_policy import read

    newsletter(policy_engine, clock.now, "C-1001", number=1)
    with policy_engine.store.session() as session:  # a team email about the customer
        session.add(Delivery(key="j:x:C-1001:team:support", journey_id="j", step_id="x",
                             customer_id="C-1001", touchpoint="news", category="marketing",
                             recipient="support-queue@northwind.example", message_id="<x@y>",
                             status="sent", created_at=clock.now, updated_at=clock.now))
        session.commit()
        counted = read(session, policy_engine.config, ["C-1001"], clock.now + timedelta(1))
    assert [category for _, category in counted.sent["C-1001"]] == ["marketing"]


def test_the_ledger_is_read_once_per_batch_for_all_its_customers(policy_engine, clock,
                                                                 monkeypatch):
    ids = ["C-1001", "C-1003", "C-1005", "C-1006", "C-1008", "C-1009", "C-1011", "C-1012"]
    newsletter(policy_engine, clock.now, *ids, number=1)
    newsletter(policy_engine, clock.advance(hours=1), *ids, number=2)
    reads: list[str] = []

    def count(conn, cursor, statement, *args):
        if "deliveries.customer_id IN" in statement:
            reads.append(statement)

    event.listen(policy_engine.store.engine, "before_cursor_execute", count)
    try:
        third = newsletter(policy_engine, clock.advance(hours=1), *ids, number=3)
        monkeypatch.setattr(policy_engine.settings, "batch_size", 3)
        fourth = newsletter(policy_engine, clock.now, *ids, number=4)
    finally:
        event.remove(policy_engine.store.engine, "before_cursor_execute", count)

    assert len(reads) == 1 + 3  # one batch of 8, then batches of 3, 3 and 2
    for journey in (third, fourth):
        assert {row.status for row in ledger(policy_engine, journey["journey_id"])} == {"deferred"}


def test_a_deferral_that_would_land_outside_the_send_window_waits_for_it_to_open(
        store, smtp_server, clock, tmp_path, monkeypatch):
    from flows.engine.core import set_engine
    from flows.settings import reset_settings

    defaults = ('  send_window: {start: "08:00", end: "20:00"}\n'
                "  contact_policy:\n    - {max: 1, per: 1d12h}\n")
    engine = _engine(store, smtp_server, tmp_path, monkeypatch, defaults=defaults)
    try:
        newsletter(engine, clock.now, "C-1001", number=1)           # Tuesday 10:00 London
        second = newsletter(engine, clock.advance(hours=1), "C-1001", number=2)
        [row] = ledger(engine, second["journey_id"])
        with engine.store.session() as session:
            member = session.scalar(select(Member).where(
                Member.journey_id == second["journey_id"]))
        # the window frees up on Wednesday at 22:00, after hours: Thursday 08:00 it is
        assert row.status == "deferred" and row.reason.startswith("contact policy: 1 ")
        assert member.due_at == datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
    finally:
        set_engine(None)
        reset_settings()


def test_preview_says_what_the_policy_would_do_with_the_email_now(policy_engine, clock):
    from flows.engine.preview import preview
    from flows.store.customers import get_customer

    with policy_engine.store.session() as session:
        zoe = get_customer(session, "C-1001")
    assert preview(policy_engine, "news", zoe)[0].note is None
    newsletter(policy_engine, clock.now, "C-1001", number=1)
    newsletter(policy_engine, clock.now, "C-1001", number=2)

    [message] = preview(policy_engine, "news", zoe)
    assert message.note == ("would be deferred to 2026-12-01 10:00 UTC by the contact policy: "
                            "2 non-transactional emails in the last 7 days (at most 2)")
    [survey] = preview(policy_engine, "poll", zoe)
    assert survey.note is not None and survey.note.startswith("would be deferred")
    assert preview(policy_engine, "notice", zoe)[0].note is None  # transactional


@pytest.mark.parametrize(("rule", "message"), [
    ("{max: 2, per: 7d, categories: [newsletter]}", "no category 'newsletter'"),
    ("{max: 2, per: 7d, categories: [outage]}", "outage is transactional"),
    ("{max: 2, per: 7d, action: drop}", "'drop' is not allowed here"),
    ("{max: 2, per: 0d}", "the window must be longer than nothing"),
    ("{max: 2, per: soon}", "is not a duration"),
    ("{max: 0, per: 7d}", "greater than or equal to 1"),
    ("{max: 2, per: 7d, kinds: [survey]}", "unknown field 'kinds'"),
])
def test_check_refuses_a_rule_that_cannot_work(tmp_path, rule, message):
    path = write_config(tmp_path, defaults=f"  contact_policy:\n    - {rule}\n")
    diagnostics = check(path)
    assert len(diagnostics) == 1, diagnostics
    assert diagnostics[0].path.startswith("defaults.contact_policy[0]")
    assert message in diagnostics[0].message


def test_check_accepts_the_documented_policy(tmp_path):
    assert check(write_config(tmp_path, defaults=POLICY)) == []
