"""Each shipped touch point, simulated for a sample customer: its timeline is pinned as
(day, step, kind, subject or arm). A change to touchpoints.yaml that changes what a customer
gets shows up here as a diff of the timeline."""

from __future__ import annotations

from tests.engine import simfixtures
from tests.engine.simfixtures import TUESDAY

sim_engine = simfixtures.sim_engine  # the fixture

SURVEYS_ARM = "if steps.sale_csat.score is not none and steps.sale_csat.score <= 2"


def timeline(engine, name, customer="C-1001", *, events=(), answers=(), start=TUESDAY):
    from flows.engine.simulate import simulate

    result, _ = simulate(engine, name, customer, events=list(events), answers=list(answers),
                         start=start)
    return [entry for entry in result.pinned() if entry[2] not in ("event", "started")]


def test_sale_sends_welcome_books_the_install_and_calls_back_an_unhappy_joiner(sim_engine):
    assert timeline(sim_engine, "sale", answers=["csat=2@+4d"]) == [
        (0, "welcome", "message", "Welcome to Northwind Fibre, Zoë: here's what happens next"),
        (0, "schedule_install", "task", "Book the install for Zoë Harper (Fibre 500)"),
        (0, "schedule_install", "message", "Book the install for Zoë Harper (Fibre 500)"),
        (0, "settle_in", "wait", None),
        (3, "sale_csat", "message", "One quick question about joining Northwind"),
        (3, "await_csat", "wait_for", "survey.answered"),
        (4, "sale_csat", "answer", "csat"),
        (4, "unhappy_joiner", "branch", SURVEYS_ARM),
        (4, "call_unhappy_joiner", "task", "Call Zoë Harper back: joining scored 2/5"),
        (4, "call_unhappy_joiner", "message", "Call Zoë Harper back: joining scored 2/5"),
        (4, None, "done", None),
    ]


def test_install_reminds_once_and_books_a_recovery_call_for_a_detractor(sim_engine):
    got = timeline(sim_engine, "install", events=["install.completed@+1d"],
                   answers=["nps=3@+9d"])
    assert got == [
        (0, "expectations", "message", "Your Northwind installation: Friday 27 November"),
        (0, "await_install", "wait_for", "install.completed"),
        (1, "install_missing", "branch", "none"),
        (1, "after_visit", "message", "Is everything working, Zoë?"),
        (1, "settle_after_install", "wait", None),
        (3, "install_nps", "message", "Would you recommend Northwind to a friend?"),
        (3, "await_nps", "wait_for", "survey.answered"),
        (8, "nps_unanswered", "branch", "if steps.await_nps.outcome == 'timeout'"),
        (8, "nps_reminder", "message", "Still got a moment? One question about your installation"),
        (8, "await_nps_reminder", "wait_for", "survey.answered"),
        (9, "install_nps", "answer", "nps"),
        (9, "detractor", "branch",
         "if steps.install_nps.score is not none and steps.install_nps.score <= 6"),
        (9, "recovery_call", "task", "Recovery call: Zoë Harper scored 3/10 after install"),
        (9, "recovery_call", "message", "Recovery call: Zoë Harper scored 3/10 after install"),
        (9, "recovery_call", "message", "Recovery call: Zoë Harper scored 3/10 after install"),
        (9, None, "done", None),
    ]


def test_billing_explains_the_first_bill_and_acts_on_a_failed_payment(sim_engine):
    assert timeline(sim_engine, "billing", events=["payment.failed@+5d"]) == [
        (0, "first_bill_explained", "message",
         "Your first Northwind bill, explained (INV-2026-118204)"),
        (0, "await_payment_problem", "wait_for", "payment.failed"),
        (5, "payment_bounced", "branch", "if steps.await_payment_problem.outcome == 'event'"),
        (5, "payment_failed_notice", "message",
         "Your first payment didn't go through: nothing to worry about yet"),
        (5, "call_about_payment", "task", "First payment failed for Zoë Harper (INV-2026-118204)"),
        (5, "call_about_payment", "message",
         "First payment failed for Zoë Harper (INV-2026-118204)"),
        (5, None, "done", None),
    ]


def test_billing_dispute_escalates_when_billing_does_not_resolve_it_in_5_days(sim_engine):
    assert timeline(sim_engine, "billing-dispute") == [
        (0, "investigate_dispute", "task", "Billing dispute DSP-3307: Zoë Harper, £13.17"),
        (0, "investigate_dispute", "message", "Billing dispute DSP-3307: Zoë Harper, £13.17"),
        (0, "dispute_received", "message", "We've got your billing query (DSP-3307)"),
        (0, "await_resolution", "wait_for", "task.completed"),
        (5, "dispute_outcome", "branch", "else"),
        (5, "escalate_dispute", "task",
         "ESCALATED: dispute DSP-3307 for Zoë Harper open for 5 days"),
        (5, "escalate_dispute", "message",
         "ESCALATED: dispute DSP-3307 for Zoë Harper open for 5 days"),
        (5, "escalate_dispute", "message",
         "ESCALATED: dispute DSP-3307 for Zoë Harper open for 5 days"),
        (5, "dispute_delayed", "message", "An update on your billing query DSP-3307"),
        (5, None, "done", None),
    ]


def test_outage_holds_surveys_tells_of_the_fix_and_asks_a_day_later(sim_engine):
    assert timeline(sim_engine, "outage", events=["outage.resolved@+6h"]) == [
        (0, "quiet_during_outage", "hold", None),
        (0, "outage_acknowledged", "message", "We know your service is down, and we're fixing it"),
        (0, "await_fix", "wait_for", "outage.resolved"),
        (0, "fixed", "branch", "if steps.await_fix.outcome == 'event'"),
        (0, "outage_resolved", "message", "Your service is back: sorry for the disruption"),
        (0, "lift_quiet", "release", None),
        (0, "let_it_settle", "wait", None),
        (1, "outage_csat", "message", "How did we handle the outage?"),
        (1, None, "done", None),
    ]


def test_outage_update_sends_the_new_estimate(sim_engine):
    assert timeline(sim_engine, "outage-update") == [
        (0, "new_estimate", "message", "Outage update: new estimate 22:00 Monday"),
        (0, None, "done", None),
    ]


def test_renewal_starts_90_days_before_the_contract_ends_and_writes_at_60_and_30(sim_engine):
    got = timeline(sim_engine, "renewal", start=None)
    assert got == [
        (0, None, "trigger", "date.trigger"),
        (0, "renewal_90d", "message", "Your Northwind contract ends on 9 January 2027"),
        (0, "account_review", "task", "Renewal review: Zoë Harper, contract ends 9 Jan 2027"),
        (0, "account_review", "message", "Renewal review: Zoë Harper, contract ends 9 Jan 2027"),
        (0, "account_review", "message", "Renewal review: Zoë Harper, contract ends 9 Jan 2027"),
        (0, "until_60d", "wait", None),
        (30, "renewal_60d", "message", "Your options for staying with Northwind, Zoë"),
        (30, "until_30d", "wait", None),
        (60, "renewal_30d", "message", "Important: your Northwind contract ends on 9 January"),
        (60, None, "done", None),
    ]


def test_a_renewal_signed_at_day_10_ends_the_renewal_with_its_goal_and_nothing_more(sim_engine):
    got = timeline(sim_engine, "renewal", start=None,
                   events=['contract.renewed@+10d={"new_contract_end": "2029-01-09"}'])
    assert got[:6] == [
        (0, None, "trigger", "date.trigger"),
        (0, "renewal_90d", "message", "Your Northwind contract ends on 9 January 2027"),
        (0, "account_review", "task", "Renewal review: Zoë Harper, contract ends 9 Jan 2027"),
        (0, "account_review", "message", "Renewal review: Zoë Harper, contract ends 9 Jan 2027"),
        (0, "account_review", "message", "Renewal review: Zoë Harper, contract ends 9 Jan 2027"),
        (0, "until_60d", "wait", None)]
    assert [entry[2] for entry in got[6:]] == ["goal"] and got[6][0] == 10


def test_check_in_writes_from_the_account_owner_and_stays_open_60_days(sim_engine):
    assert timeline(sim_engine, "check-in") == [
        (0, None, "trigger", "inactivity.trigger"),
        (0, "hows_it_going", "message", "How's it going, Zoë?"),
        (0, "quiet_period", "wait", None),
        (60, None, "done", None),
    ]


def test_recurring_issue_names_the_owner_once_they_acknowledge(sim_engine):
    title = "Own it: Zoë Harper has opened 3 'dropouts' tickets in 30 days"
    assert timeline(sim_engine, "recurring-issue", events=["task.acknowledged@+4h"]) == [
        (0, "own_the_problem", "task", title),
        (0, "own_the_problem", "message", title),
        (0, "own_the_problem", "message", title),
        (0, "await_owner", "wait_for", "task.acknowledged"),
        (0, "own_the_problem", "acknowledged", None),
        (0, "owner_found", "branch", "if steps.await_owner.outcome == 'event'"),
        (0, "named_owner", "message", "I'm now your single point of contact, Zoë"),
        (0, None, "done", None),
    ]


def test_business_review_sends_the_minutes_and_chases_the_actions(sim_engine):
    got = timeline(sim_engine, "business-review", "C-1013",
                   events=['task.completed@+7d={"outcome": "We agreed a backup line."}',
                           'task.completed@+22d={"outcome": "The backup line is in."}'])
    review = "Quarterly review with Hamish MacLeod (Business Fibre 1G)"
    assert got[:5] == [
        (0, None, "trigger", "schedule"),
        (0, "prepare_review", "task", review),
        (0, "prepare_review", "message", review),
        (0, "prepare_review", "message", review),
        (0, "await_review", "wait_for", "task.completed"),
    ]
    assert [(day, step, kind) for day, step, kind, _ in got[5:]] == [
        (7, "prepare_review", "completed"),
        (7, "review_held", "branch"),
        (7, "minutes_to_customer", "message"),
        (7, "minutes_to_owner", "message"),
        (7, "two_weeks_on", "wait"),
        (21, "chase_actions", "task"),
        (21, "chase_actions", "message"),
        (21, "chase_actions", "message"),
        (21, "await_progress", "wait_for"),
        (22, "chase_actions", "completed"),
        (22, "progress_ready", "branch"),
        (22, "progress_to_customer", "message"),
        (22, None, "done"),
    ]


def test_maintenance_notice_tells_the_regions_and_confirms_the_work(sim_engine):
    assert timeline(sim_engine, "maintenance-notice", "C-1002",
                    events=["maintenance.completed@+2d"]) == [
        (0, "planned_work_notice", "message", "Planned work on our network: Thursday 3 December"),
        (0, "await_work_done", "wait_for", "maintenance.completed"),
        (2, "work_done", "branch", "if steps.await_work_done.outcome == 'event'"),
        (2, "planned_work_complete", "message", "Our planned work is finished"),
        (2, None, "done", None),
    ]


def test_every_shipped_touch_point_has_a_pinned_simulation():
    import re
    from pathlib import Path

    import yaml

    shipped = yaml.safe_load((Path(__file__).resolve().parents[2] / "touchpoints.yaml")
                             .read_text(encoding="utf-8"))["touchpoints"]
    pinned = set(re.findall(r'timeline\(sim_engine, "([a-z-]+)"', Path(__file__).read_text()))
    assert pinned == set(shipped)
