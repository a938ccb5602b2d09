"""`touchpoints emit` says what happened: data that breaks its event's contract is refused
with each bad field and exit code 1 (no traceback, nothing stored); against a running service
a start the entry rule refuses is not reported as started, and a woken journey is reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from flows.cli import main, remote
from flows.store.tables import AuditRow, Event
from tests.web.support import add_customer, add_waiting_journey
from tests.web.test_api_support import make_key

REPO = Path(__file__).resolve().parents[2]
BAD_OUTAGE = {"regions": ["north"], "outage_id": "X", "eta": "2 hours"}


def _rows(engine, table, **where):
    with engine.store.session() as session:
        query = select(table)
        for name, value in where.items():
            query = query.where(getattr(table, name) == value)
        return list(session.scalars(query))


def test_an_outage_with_a_bad_eta_is_refused_with_exit_code_1_and_no_traceback(engine,
                                                                              settings):
    env = {**os.environ, "TOUCHPOINTS_DATA_DIR": str(settings.data_dir),
           "TOUCHPOINTS_DATABASE_URL": settings.database_url,
           "TOUCHPOINTS_CONFIG_FILE": str(REPO / "touchpoints.yaml")}
    done = subprocess.run([sys.executable, "-m", "flows", "emit", "outage.declared", "--local",
                           "--data", json.dumps(BAD_OUTAGE)],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
                          check=False)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "eta: expected an ISO date and time with offset" in done.stderr
    assert "'2 hours'" in done.stderr and "events.outage.declared.fields" in done.stderr
    assert _rows(engine, Event) == []
    [refused] = _rows(engine, AuditRow, action="event.refused")
    assert refused.detail["errors"].keys() == {"eta"}


def test_an_outage_without_regions_is_refused_naming_the_field(engine, settings, capsys):
    try:
        main(["emit", "outage.declared", "--local", "--data", '{"outage_id": "X"}'])
    except SystemExit as exc:
        assert exc.code == 1
    else:
        raise AssertionError("emit accepted an outage without regions")
    assert "regions: required (a list of string) but missing" in capsys.readouterr().err
    assert _rows(engine, Event) == []


def test_run_refuses_data_that_breaks_the_trigger_events_contract(engine, settings, capsys):
    add_customer(engine, "C-1001")
    try:
        main(["run", "billing-dispute", "--customer", "C-1001",
              "--data", '{"dispute_id": "DSP-1"}'])
    except SystemExit as exc:
        assert exc.code == 1
    else:
        raise AssertionError("run started a dispute journey without its data")
    assert "amount_disputed: required (a number) but missing" in capsys.readouterr().err
    assert len(_rows(engine, AuditRow, action="event.refused")) == 1


def _serve(local, server, engine) -> None:
    _, key, _ = make_key(engine, "cli")
    remote.write_service_info(local, remote.ServiceInfo(pid=os.getpid(), web_url=server,
                                                        api_key=key))


def test_against_the_service_a_start_the_entry_rule_refuses_is_not_reported_started(
        local, server, engine, dispatcher, capsys):
    from flows import clock
    from flows.engine.journeys import JourneyOps
    from flows.engine.matching import event_dict

    add_customer(engine, "C-1001")
    _serve(local, server, engine)
    dispatcher.outbox = True  # the service's intake: it answers before journeys are entered
    main(["emit", "contract.signed", "-c", "C-1001", "--id", "crm-1"])
    assert "started sale for C-1001" in capsys.readouterr().out
    with engine.store.session() as session:  # the service's run enters the journey
        row = session.get(Event, "crm-1")
        JourneyOps(engine).enter(session, touchpoint=engine.touchpoint("sale"),
                                 event=event_dict(row), customer_id="C-1001", flow_run_id=None,
                                 now=clock.now())

    main(["emit", "contract.signed", "-c", "C-1001", "--id", "crm-2"])

    printed = capsys.readouterr().out
    assert "event crm-2 accepted" in printed
    assert "started sale for" not in printed
    assert "not started sale: entry rule once_per_cycle" in printed


def test_against_the_service_a_woken_journey_is_reported_not_nothing_new(local, server, engine,
                                                                        capsys):
    add_customer(engine, "C-1001")
    journey_id = add_waiting_journey(engine, "C-1001")
    _serve(local, server, engine)

    main(["emit", "survey.answered", "-c", "C-1001", "--data",
          json.dumps({"survey_id": "s-1", "score": 5})])

    printed = capsys.readouterr().out
    assert f"resumed the journey {journey_id}" in printed
    assert "nothing new" not in printed and "no touch point" not in printed


def test_the_same_event_twice_says_nothing_new_happened_and_what_the_first_did(local, server,
                                                                             engine, capsys):
    add_customer(engine, "C-1001")
    _serve(local, server, engine)
    main(["emit", "contract.signed", "-c", "C-1001", "--id", "crm-1"])
    capsys.readouterr()

    main(["emit", "contract.signed", "-c", "C-1001", "--id", "crm-1"])

    printed = capsys.readouterr().out
    assert "already received: nothing new started or resumed (the first time it started sale)" \
        in printed.replace("\n", " ")
    assert "started sale for" not in printed


def test_against_the_service_bad_data_is_refused_with_exit_code_1_naming_the_field(
        local, server, engine, capsys):
    _serve(local, server, engine)
    try:
        main(["emit", "outage.declared", "--data", json.dumps(BAD_OUTAGE)])
    except SystemExit as exc:
        assert exc.code == 1
    else:
        raise AssertionError("the service accepted an outage with eta '2 hours'")
    err = capsys.readouterr().err
    assert "eta: expected an ISO date and time with offset" in err and "Traceback" not in err
    assert _rows(engine, Event) == []
