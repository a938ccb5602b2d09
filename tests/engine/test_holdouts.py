"""Holdouts: a touch point's `holdout: N%` puts a deterministic, audited share of its entrants
in a control group that walks the journey (tasks, goals, exits recorded) but gets none of its
non-transactional customer email. Real store (both databases), real SMTP."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from flows.config.checker import check
from flows.engine.holdouts import cohort_of, draw
from flows.store.tables import AuditRow, Delivery, Journey, Member, Preference, Task
from tests.engine.conftest import CUSTOMERS, make_engine, sample_customers
from tests.engine.policy_setup import enter, run_step, write_config

EVERYONE = [c["id"] for c in sample_customers()]


@pytest.fixture
def holdout_engine(store, smtp_server, clock, tmp_path, monkeypatch):
    from flows.engine.core import set_engine
    from flows.settings import reset_settings
    from flows.store.customers import import_customers

    monkeypatch.setenv("TOUCHPOINTS_DATA_DIR", str(tmp_path / "data"))
    path = write_config(tmp_path / "cfg", holdout="holdout: 30%", poll_holdout="holdout: 50%")
    engine = make_engine(path, smtp_server.url, monkeypatch, store)
    import_customers(store, CUSTOMERS, actor="test")
    yield engine
    set_engine(None)
    reset_settings()


def cohorts(engine, journey_id: str) -> dict[str, str | None]:
    with engine.store.session() as session:
        return dict(session.execute(select(Member.customer_id, Member.cohort)
                                    .where(Member.journey_id == journey_id)).all())


def test_a_share_of_the_entrants_is_held_out_by_a_fixed_draw_and_audited(holdout_engine, clock):
    entered = enter(holdout_engine, "check-in", clock.now, event_id="check-1", ids=EVERYONE)
    by_customer = cohorts(holdout_engine, entered["journey_id"])
    held = sorted(cid for cid, cohort in by_customer.items() if cohort == "holdout")

    assert set(by_customer.values()) == {"holdout", "treated"}
    tp = holdout_engine.touchpoint("check-in")
    with holdout_engine.store.session() as session:
        key = session.get(Journey, entered["journey_id"]).entry_key
        audited = session.execute(select(AuditRow.customer_id, AuditRow.reason).where(
            AuditRow.action == "journey.holdout")).all()
    assert held == sorted(cid for cid in EVERYONE if cohort_of(tp, key, cid) == "holdout")
    assert 5 <= len(held) <= 25   # 30% of 50, give or take
    assert sorted(cid for cid, _ in audited) == held
    assert audited[0].reason == "in the 30% control group: no non-transactional customer email"


def test_held_out_members_get_no_check_in_but_every_other_part_of_the_journey(
        holdout_engine, clock, smtp_server):
    from flows.reports.holdouts import effects

    entered = enter(holdout_engine, "check-in", clock.now, event_id="check-1",
                    ids=EVERYONE[:25])
    journey, wave = entered["journey_id"], entered["wave"]
    for step in ("hello", "heads_up", "follow_up", "reached"):
        run_step(holdout_engine, "check-in", step, journey, wave, clock.now)
    run_step(holdout_engine, "check-in", "won", journey, wave, clock.now, lane="/reached:0")

    by_customer = cohorts(holdout_engine, journey)
    with holdout_engine.store.session() as session:
        hello = {d.customer_id: d for d in session.scalars(select(Delivery).where(
            Delivery.journey_id == journey, Delivery.step_id == "hello"))}
        heads_up = {d.customer_id: d.status for d in session.scalars(select(Delivery).where(
            Delivery.journey_id == journey, Delivery.step_id == "heads_up"))}
        tasks = set(session.scalars(select(Task.customer_id).where(Task.journey_id == journey)))
        goals = set(session.scalars(select(AuditRow.customer_id).where(
            AuditRow.action == "journey.goal")))
        unsubscribed = set(session.scalars(select(Preference.customer_id).where(
            Preference.category == "check-ins", Preference.subscribed.is_(False))))
        report = effects(session)["check-in"]["goal"]
    held = {cid for cid, cohort in by_customer.items() if cohort == "holdout"}
    treated = set(by_customer) - held
    inboxes = {address for m in smtp_server.messages for address in m.envelope_to}
    emails = {c["id"]: c["email"] for c in sample_customers()}

    for cid in held - unsubscribed:
        assert (hello[cid].status, hello[cid].reason) == ("suppressed", "holdout")
    assert all(hello[cid].status == "sent" for cid in treated - unsubscribed)
    assert {emails[cid] for cid in held} <= inboxes  # the outage notice still reached them
    assert set(heads_up.values()) == {"sent"} and set(heads_up) == set(by_customer)
    assert tasks == set(by_customer)                 # the team works every member
    north = {c["id"] for c in sample_customers()[:25] if c["region"] == "north"}
    assert goals == north and goals & held and goals & treated
    assert (report["holdout"]["n"], report["holdout"]["reached"]) == (len(held),
                                                                      len(north & held))
    with holdout_engine.store.session() as session:
        reasons = set(session.scalars(select(AuditRow.reason).where(
            AuditRow.action == "email.suppressed", AuditRow.customer_id.in_(held - unsubscribed))))
    assert reasons == {"holdout"}


def test_a_held_out_customer_gets_no_survey(holdout_engine, clock, smtp_server):
    seen: dict[str, dict] = {}
    for number in range(20):  # a fixed draw: some entries of Zoë are held out, some not
        entered = enter(holdout_engine, "poll", clock.now, customer_id="C-1001",
                        event_id=f"poll-{number}")
        seen.setdefault(cohorts(holdout_engine, entered["journey_id"])["C-1001"], entered)
        if len(seen) == 2:
            break
    held, treated = seen["holdout"], seen["treated"]
    for entered in (held, treated):
        run_step(holdout_engine, "poll", "ask", entered["journey_id"], entered["wave"], clock.now)

    with holdout_engine.store.session() as session:
        rows = {d.journey_id: d for d in session.scalars(select(Delivery))}
        member = session.scalar(select(Member).where(Member.journey_id == held["journey_id"]))
    assert (rows[held["journey_id"]].status, rows[held["journey_id"]].reason) == (
        "suppressed", "holdout")
    assert rows[treated["journey_id"]].status == "sent"
    assert member.results["ask"]["sent"] is False and member.status == "active"
    assert len([m for m in smtp_server.messages if "zoe.harper@example.com" in m.envelope_to]) == 1


def test_a_touch_point_without_a_holdout_leaves_the_cohort_empty(holdout_engine, clock):
    entered = enter(holdout_engine, "news", clock.now, ids=EVERYONE[:5])
    assert set(cohorts(holdout_engine, entered["journey_id"]).values()) == {None}


@settings(max_examples=25, deadline=None)
@given(st.sampled_from([0.05, 0.1, 0.25, 0.5]), st.text(min_size=1, max_size=20))
def test_the_draw_is_fixed_by_its_inputs_and_holds_out_about_the_share(share, key):
    draws = [draw("check-in", key, f"C-{n}") for n in range(4000)]
    assert draws == [draw("check-in", key, f"C-{n}") for n in range(4000)]
    held = sum(d < share for d in draws) / len(draws)
    assert abs(held - share) < 0.035
    assert draws != [draw("check-in", key + "x", f"C-{n}") for n in range(4000)]


@pytest.mark.parametrize(("value", "message"), [
    ("60%", "at most 50%"), ("0%", "more than 0%"), ("ten", "is not a percentage"),
    ("10", "is not a percentage")])
def test_check_refuses_a_holdout_that_is_not_a_share(tmp_path, value, message):
    diagnostics = check(write_config(tmp_path, holdout=f"holdout: {value}"))
    assert [d.path for d in diagnostics] == ["touchpoints.check-in.holdout"]
    assert message in diagnostics[0].message


def test_preview_says_the_control_group_gets_no_non_transactional_email(holdout_engine):
    from flows.engine.preview import preview
    from flows.store.customers import get_customer

    with holdout_engine.store.session() as session:
        zoe = get_customer(session, "C-1001")
    hello, heads_up, *team = preview(holdout_engine, "check-in", zoe)
    assert hello.note == "not sent to the 30% of entrants held out as the control group"
    assert heads_up.note is None and all(m.note is None for m in team)
