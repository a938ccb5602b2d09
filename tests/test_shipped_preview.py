"""`touchpoints preview` of the shipped touch points shows what would really go out: the
recipient as a person reads it, a handoff's real due time and its team's contacts, branch arms
previewed with results that fit their own condition, the event data one asks for, and no
traceback whatever the customer's name holds."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)  # a Tuesday, 10:00 in London


@pytest.fixture
def shipped(sqlite_store, tmp_path, monkeypatch):
    """The shipped touch points and sample customers, also behind the `touchpoints` command."""
    from flows import clock
    from flows.engine.core import Engine, set_engine
    from flows.settings import get_settings, reset_settings
    from flows.store.customers import import_customers

    monkeypatch.setattr(clock, "now", lambda: NOW)
    monkeypatch.setenv("TOUCHPOINTS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TOUCHPOINTS_DATABASE_URL", sqlite_store.url)
    monkeypatch.setenv("TOUCHPOINTS_CONFIG_FILE", str(REPO / "touchpoints.yaml"))
    reset_settings()
    assert import_customers(sqlite_store, REPO / "docs" / "examples" / "customers.csv",
                            actor="test").ok
    engine = Engine(get_settings(), store=sqlite_store)
    set_engine(engine)
    yield engine
    set_engine(None)
    reset_settings()


def customer(engine, customer_id: str):
    from flows.store.customers import get_customer

    with engine.store.session() as session:
        return get_customer(session, customer_id)


def messages(engine, touchpoint: str, customer_id: str, **kwargs) -> dict:
    from flows.engine.preview import preview

    return {m.step_id: m for m in preview(engine, touchpoint, customer(engine, customer_id),
                                          **kwargs)}


def cli(capsys, *argv: str) -> tuple[int, str]:
    from flows.cli import main

    try:
        main(list(argv))
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code or 0
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_the_recipient_is_shown_as_a_person_reads_it_not_as_an_encoded_word(shipped):
    welcome = messages(shipped, "sale", "C-1001")["welcome"]

    assert welcome.to == "Zoë Harper <zoe.harper@example.com>"


def test_a_handoff_preview_shows_the_due_time_from_the_sla_and_the_teams_own_contacts(shipped):
    task_mail = messages(shipped, "sale", "C-1001")["schedule_install"].text  # install: SLA 1d

    assert "Due:       10:00 on Wednesday 25 November (UK time)" in task_mail
    assert "install-lead@northwind.example is told as soon as it is overdue" in task_mail
    assert "ops-director@northwind.example is told 1 day after it falls overdue" in task_mail
    assert "lead@example.com" not in task_mail and "2 January" not in task_mail


def test_a_handoff_owned_by_the_account_owner_is_previewed_with_that_owner_and_their_copy(
        shipped):
    from flows.engine.preview import preview

    review = [m for m in preview(shipped, "renewal", customer(shipped, "C-1006"))
              if m.step_id == "account_review"]  # SLA 14d

    assert [m.to for m in review] == ["account-managers@northwind.example",
                                      "priya.shah@northwind.example"]
    assert "owned by priya.shah@northwind.example" in review[0].text
    assert "Due:       10:00 on Tuesday 8 December" in review[0].text


def test_a_branch_arm_is_previewed_with_results_that_make_its_own_condition_true(shipped):
    call_back = messages(shipped, "sale", "C-1001")["call_unhappy_joiner"]
    score = int(re.search(r"joining scored (\d+)/5", call_back.subject).group(1))
    recovery = messages(shipped, "install", "C-1001")["recovery_call"]
    nps = int(re.search(r"scored (\d+)/10", recovery.subject).group(1))

    assert 1 <= score <= 2 and f"rated joining us {score} out of 5" in call_back.text
    assert 0 <= nps <= 6


def test_the_else_arm_of_a_wait_is_previewed_as_its_timeout(shipped):
    previewed = messages(shipped, "billing-dispute", "C-1001")

    assert "dispute_resolved" in previewed and "dispute_delayed" in previewed
    assert previewed["escalate_dispute"].error is None


def test_event_data_given_to_the_preview_is_laid_over_the_example(shipped, capsys):
    first_bill = messages(shipped, "billing", "C-1001", data={"invoice_number": "INV-TEST-9"})

    assert "INV-TEST-9" in first_bill["first_bill_explained"].subject
    code, out = cli(capsys, "preview", "billing", "--customer", "C-1001",
                    "--data", '{"invoice_number": "INV-CLI-7"}')
    assert code == 0 and "INV-CLI-7" in out, out[-3000:]


def test_event_data_that_is_not_a_json_object_is_refused_with_a_hint(shipped, capsys):
    code, out = cli(capsys, "preview", "billing", "--customer", "C-1001", "--data", "[1, 2]")

    assert code != 0 and "--data must be a JSON object" in out and "Traceback" not in out


HOSTILE = ['Eve "Admin" <root@evil.example>, bob@evil.example',
           "=?utf-8?q?Zo=C3=AB?= [bold]x[/bold] [/] {{ 7 * 7 }} {% raw %}",
           "Ünïcødé \u202e\u2066 name; with: specials@(and) \\ back\\slash"]


@pytest.mark.parametrize("name", HOSTILE)
def test_a_customer_with_a_hostile_name_previews_every_touch_point_without_a_traceback(
        shipped, capsys, name):
    from flows.store.customers import upsert_customer

    with shipped.store.session() as session:
        upsert_customer(session, {"id": "C-EVIL", "name": name, "email": "eve@example.com",
                                  "timezone": "Europe/London", "region": "north",
                                  "plan": "Business Fibre 1G"}, actor="test")
    for touchpoint in shipped.config.touchpoints:
        for message in messages(shipped, touchpoint, "C-EVIL").values():
            if message.to.endswith("<eve@example.com>"):
                assert "=?" not in message.to.replace(name, "") and "\n" not in message.to
        code, out = cli(capsys, "preview", touchpoint, "--customer", "C-EVIL")
        assert code == 0 and "Traceback" not in out, out[-2000:]


def test_a_customer_whose_address_no_email_could_carry_is_an_error_in_the_preview(shipped):
    from dataclasses import replace

    from flows.engine.preview import preview

    broken = replace(customer(shipped, "C-1001"), email="not an address")
    welcome = next(m for m in preview(shipped, "sale", broken) if m.step_id == "welcome")

    assert welcome.error and "not an email address" in welcome.error
