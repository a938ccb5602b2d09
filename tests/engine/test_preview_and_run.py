"""`touchpoints preview` renders every message without sending; `touchpoints run` runs one
touch point for one customer through Prefect."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from flows.store.tables import Delivery, Journey


def test_preview_renders_every_message_of_a_touch_point_for_the_customer_and_sends_nothing(engine, smtp_server):
    from flows.engine.preview import preview
    from flows.store.customers import get_customer

    with engine.store.session() as session:
        customer = get_customer(session, "C-1001")

    messages = preview(engine, "sale", customer)

    by_step = {m.step_id: m for m in messages}
    assert {"welcome", "schedule_install", "sale_csat"} <= set(by_step)
    assert all(m.error is None for m in messages)
    assert "zoe.harper@example.com" in by_step["welcome"].to
    assert "Zoë" in by_step["welcome"].subject + by_step["welcome"].text
    assert by_step["schedule_install"].to == "installs@northwind.example"
    csat = by_step["sale_csat"]
    assert "Unsubscribe" in csat.text and "Harbour Road" in csat.text  # the legal footer
    assert "Unsubscribe" not in by_step["welcome"].text  # transactional: no unsubscribe
    assert smtp_server.messages == []
    with engine.store.session() as session:
        assert session.scalar(select(Delivery)) is None


def test_the_preview_command_prints_each_message_with_its_recipient(engine, capsys):
    from flows.cli import main

    main(["preview", "sale", "--customer", "C-1001"])

    printed = capsys.readouterr().out
    assert "welcome" in printed and "zoe.harper@example.com" in printed and "Subject:" in printed


def test_the_run_command_runs_a_touch_point_for_one_customer_through_prefect(engine, smtp_server, capsys):
    import json

    from flows.cli import main

    invoice = dict(engine.config.event_types()["invoice.issued"].example, first=True)
    main(["run", "billing", "--customer", "C-1003", "--data", json.dumps(invoice)])

    assert "ran billing" in capsys.readouterr().out
    assert any("siobhan.nibhriain@example.org" in m.envelope_to for m in smtp_server.messages)
    with engine.store.session() as session:
        journey = session.scalar(select(Journey).where(Journey.touchpoint == "billing"))
    assert journey.flow_run_id and journey.customer_id == "C-1003"


def test_the_run_command_refuses_an_unknown_customer_with_a_hint(engine, capsys):
    from flows.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["run", "sale", "--customer", "C-9999"])

    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "unknown customer 'C-9999'" in err and "hint" in err
