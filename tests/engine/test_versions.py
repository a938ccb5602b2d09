"""Editing a touch point while journeys wait in it: each journey finishes on the version it
started on, `renamed_from` and `touchpoints journeys migrate` move journeys on purpose (audited),
`touchpoints check` says which journeys an edit affects, and a step that is gone with no version
to finish on fails the member with a reason, never a KeyError that leaves it active.

Real parts: the shipped touchpoints.yaml and templates copied to a folder the test edits, the
store on SQLite and PostgreSQL, the session's Prefect server, an SMTP server on 127.0.0.1."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from flows.store.tables import AuditRow, Continuation, Journey, Member, TouchpointVersion
from tests.engine.conftest import CUSTOMERS, REPO, make_engine

pytestmark = pytest.mark.e2e

CUSTOMER = "C-1003"           # contract ends 2027-03-16: 60 days before is 2027-01-15
EMAIL = "siobhan.nibhriain@example.org"
OLD_WAIT = "      - id: until_60d\n"
OPTIONS_SUBJECT = "Your options for staying with Northwind"


@pytest.fixture
def folder(tmp_path) -> Path:
    """A copy of the shipped touchpoints.yaml and templates/ that the test may edit."""
    here = tmp_path / "project"
    here.mkdir()
    shutil.copy(REPO / "touchpoints.yaml", here / "touchpoints.yaml")
    shutil.copytree(REPO / "templates", here / "templates")
    return here


@pytest.fixture
def start(folder, store, smtp_server, prefect_server, clock, tmp_path, monkeypatch):
    """engine(): an engine on the folder's current files (call it again after an edit)."""
    from flows.config.loading import forget_loaded
    from flows.engine.compiler import forget_compiled
    from flows.engine.core import set_engine
    from flows.settings import reset_settings
    from flows.store.customers import import_customers

    monkeypatch.setenv("TOUCHPOINTS_DATA_DIR", str(tmp_path / "data"))

    def engine():
        forget_loaded()
        return make_engine(folder / "touchpoints.yaml", smtp_server.url, monkeypatch, store)

    import_customers(store, CUSTOMERS, actor="test")
    yield engine
    set_engine(None)
    forget_compiled()
    reset_settings()


def edit(folder: Path, old: str, new: str) -> None:
    path = folder / "touchpoints.yaml"
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"the shipped file changed: {old!r} is not in it once"
    path.write_text(text.replace(old, new), encoding="utf-8")


def start_renewal(engine) -> str:
    from flows.engine.launch import InProcessLauncher

    result = InProcessLauncher().start("renewal", event={"id": "renewal-test", "type": "date",
                                                         "customer_id": CUSTOMER, "data": {}},
                                       customer_id=CUSTOMER, label=CUSTOMER)
    with engine.store.session() as session:
        member = session.scalar(select(Member).where(Member.journey_id == result["journey_id"]))
        assert (member.status, member.pointer) == ("waiting", "until_60d")
    return result["journey_id"]


def resume_at(engine, clock, when: datetime) -> None:
    from flows.engine.dispatch import Dispatcher
    from flows.engine.launch import InProcessLauncher

    clock.now = when
    Dispatcher(engine, InProcessLauncher()).resume_due()


def subjects(smtp_server) -> list[str]:
    return [str(m.message["Subject"]) for m in smtp_server.messages if EMAIL in m.envelope_to]


def journey_and_members(engine, journey_id: str) -> tuple[Journey, list[Member]]:
    with engine.store.session() as session:
        journey = session.get(Journey, journey_id)
        members = list(session.scalars(select(Member).where(Member.journey_id == journey_id)))
        session.expunge_all()
    return journey, members


def audit_rows(engine, journey_id: str, action: str) -> list[AuditRow]:
    with engine.store.session() as session:
        rows = list(session.scalars(select(AuditRow).where(
            AuditRow.journey_id == journey_id, AuditRow.action == action)))
        session.expunge_all()
    return rows


def finish_the_renewal(engine, clock) -> None:
    resume_at(engine, clock, datetime(2027, 1, 15, 12, 0, tzinfo=UTC))   # the 60-day email
    resume_at(engine, clock, datetime(2027, 2, 20, 12, 0, tzinfo=UTC))   # the 30-day notice


def tp(*args: str):
    from flows.cli import main

    try:
        main(list(args))
    except SystemExit as exc:
        return exc.code or 0
    return 0


# --------------------------------------------------------------------------- finishing on a version
def test_a_journey_waiting_at_a_renamed_step_finishes_on_its_version_and_sends_the_later_emails(
        start, folder, clock, smtp_server):
    journey_id = start_renewal(start())
    edit(folder, OLD_WAIT, "      - id: wait_60d\n")
    edit(folder, f'subject: "{OPTIONS_SUBJECT}, ', 'subject: "Brand new options, ')
    template = folder / "templates" / "renewal" / "options_60d.txt"
    template.write_text(template.read_text(encoding="utf-8").replace(
        "Here are your options", "EDITED TEXT"), encoding="utf-8")
    engine = start()

    finish_the_renewal(engine, clock)

    sent = subjects(smtp_server)
    assert any(s.startswith(OPTIONS_SUBJECT) for s in sent), sent    # the subject it started with
    assert not any("Brand new" in s for s in sent)
    assert any("Important: your Northwind contract ends" in s for s in sent), sent
    options = next(m for m in smtp_server.messages
                   if str(m.message["Subject"]).startswith(OPTIONS_SUBJECT))
    text = options.message.get_body(("plain",)).get_content()
    assert "Here are your options" in text and "EDITED TEXT" not in text  # its templates too
    journey, [member] = journey_and_members(engine, journey_id)
    assert (journey.status, member.status) == ("done", "done")
    assert not audit_rows(engine, journey_id, "journey.failed")


def test_a_journey_records_the_version_it_started_on_with_its_definition_and_templates(start):
    engine = start()
    journey_id = start_renewal(engine)

    with engine.store.session() as session:
        journey = session.get(Journey, journey_id)
        version = session.get(TouchpointVersion, journey.version)
        assert version.touchpoint == "renewal"
        assert [s["id"] for s in version.definition["steps"]][:3] == [
            "renewal_90d", "account_review", "until_60d"]
        assert {"renewal/options_60d.txt", "renewal/options_60d.html",
                "_plans.txt"} <= set(version.templates)   # included templates are kept too


# --------------------------------------------------------------------------- moving on purpose
def test_renamed_from_moves_a_waiting_journey_to_the_renamed_step_and_the_current_version(
        start, folder, clock, smtp_server):
    engine = start()
    journey_id = start_renewal(engine)
    started_on = journey_and_members(engine, journey_id)[0].version
    edit(folder, OLD_WAIT, "      - id: wait_60d\n        renamed_from: until_60d\n")
    edit(folder, f'subject: "{OPTIONS_SUBJECT}, ', 'subject: "Brand new options, ')
    engine = start()

    finish_the_renewal(engine, clock)

    sent = subjects(smtp_server)
    assert any(s.startswith("Brand new options") for s in sent), sent   # the current version
    [moved] = audit_rows(engine, journey_id, "journey.migrated")
    assert moved.detail["steps"] == {"until_60d": "wait_60d"}
    assert moved.detail["from"] == started_on and moved.detail["to"] != started_on
    journey, [member] = journey_and_members(engine, journey_id)
    assert journey.version == moved.detail["to"] and journey.status == "done"
    assert "wait_60d" in member.results and member.status == "done"


def test_journeys_migrate_with_a_map_moves_the_journey_and_audits_it(start, folder, clock,
                                                                        smtp_server, capsys):
    journey_id = start_renewal(start())
    edit(folder, OLD_WAIT, "      - id: wait_60d\n")
    edit(folder, f'subject: "{OPTIONS_SUBJECT}, ', 'subject: "Brand new options, ')
    engine = start()
    assert tp("journeys", "migrate", "renewal", "--map", "until_60d=wait_60d", "--dry-run") == 0
    assert "would move 1 journey(s)" in capsys.readouterr().out
    assert journey_and_members(engine, journey_id)[1][0].pointer == "until_60d"

    assert tp("journeys", "migrate", "renewal", "--map", "until_60d=wait_60d") == 0

    assert "moved 1 journey(s) (1 member(s)) of renewal" in capsys.readouterr().out
    journey, [member] = journey_and_members(engine, journey_id)
    assert member.pointer == "wait_60d"
    with engine.store.session() as session:
        waiting = session.scalar(select(Continuation).where(Continuation.journey_id == journey_id,
                                                            Continuation.status == "pending"))
        assert waiting.pointer == "wait_60d"
    [moved] = audit_rows(engine, journey_id, "journey.migrated")
    assert moved.detail["steps"] == {"until_60d": "wait_60d"} and moved.actor.startswith("cli:")
    assert moved.detail["to"] == journey.version
    finish_the_renewal(engine, clock)
    assert any(s.startswith("Brand new options") for s in subjects(smtp_server))
    assert journey_and_members(engine, journey_id)[0].status == "done"


def test_journeys_migrate_refuses_to_strand_a_journey_and_moves_nothing(start, folder, capsys):
    journey_id = start_renewal(start())
    edit(folder, OLD_WAIT, "      - id: wait_60d\n")
    engine = start()

    assert tp("journeys", "migrate", "renewal") == 1

    err = capsys.readouterr().err
    assert "until_60d (1 journey)" in err and "--map until_60d=NEW_STEP" in err
    assert journey_and_members(engine, journey_id)[1][0].pointer == "until_60d"
    assert not audit_rows(engine, journey_id, "journey.migrated")


# --------------------------------------------------------------------------- saying so
def test_check_lists_the_journeys_an_edit_affects_and_what_will_happen(start, folder, capsys):
    start_renewal(start())
    edit(folder, OLD_WAIT, "      - id: wait_60d\n")

    assert tp("check") == 0
    printed = capsys.readouterr().out
    assert "renewal:" in printed
    assert "1 journey (1 member) at until_60d (removed or renamed): finish on version" in printed

    edit(folder, "      - id: wait_60d\n", "      - id: wait_60d\n        renamed_from: until_60d\n")
    assert tp("check") == 0
    assert "at until_60d (renamed to wait_60d): moved by renamed_from" in capsys.readouterr().out


def test_serve_says_at_start_which_journeys_an_edit_affects(start, folder):
    from flows.engine.inflight import say_in_flight

    start_renewal(start())
    edit(folder, OLD_WAIT, "      - id: wait_60d\n")
    said: list[str] = []

    say_in_flight(start(), said.append)

    assert said[0].startswith("Journeys in flight on an earlier version")
    assert any("at until_60d (removed or renamed): finish on version" in line for line in said)


# --------------------------------------------------------------------------- no KeyError, ever
def test_a_gone_step_with_no_stored_version_fails_the_member_with_a_reason(start, folder, clock,
                                                                           capsys):
    from flows.engine.inflight import say_in_flight

    engine = start()
    journey_id = start_renewal(engine)
    with engine.store.session() as session:  # a journey from before versions were kept
        session.get(Journey, journey_id).version = None
    edit(folder, OLD_WAIT, "      - id: wait_60d\n")
    engine = start()
    said: list[str] = []
    say_in_flight(engine, said.append)
    assert any("at until_60d (removed or renamed): need `touchpoints journeys migrate renewal "
               "--map until_60d=NEW_STEP`" in line for line in said), said

    resume_at(engine, clock, datetime(2027, 1, 15, 12, 0, tzinfo=UTC))

    journey, [member] = journey_and_members(engine, journey_id)
    assert member.status == "failed" and journey.status == "done"
    assert "step 'until_60d' is no longer in touch point renewal" in member.reason
    assert "touchpoints journeys migrate renewal --map until_60d=NEW_STEP" in member.reason
    [failed] = audit_rows(engine, journey_id, "journey.failed")
    assert failed.reason == member.reason
    capsys.readouterr()
    assert tp("journeys", "--touchpoint", "renewal") == 0
    assert "no longer in touch point renewal" in capsys.readouterr().out


# --------------------------------------------------------------------------- a touch point removed
def remove_touchpoint(folder: Path, name: str) -> None:
    """Delete the whole ``name:`` block (and its heading comment) from touchpoints.yaml."""
    path = folder / "touchpoints.yaml"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    first = lines.index(f"  {name}:\n")
    if lines[first - 1].startswith("  # ---"):
        first -= 1
    last = next(i for i in range(first + 2, len(lines))
                if lines[i].startswith("  ") and not lines[i].startswith("   "))
    path.write_text("".join(lines[:first] + lines[last:]), encoding="utf-8")
    assert f"  {name}:\n" not in path.read_text(encoding="utf-8")


def test_a_waiting_journey_of_a_removed_touch_point_finishes_its_steps_on_its_version(
        start, folder, clock, smtp_server, capsys):
    journey_id = start_renewal(start())
    remove_touchpoint(folder, "renewal")
    engine = start()
    assert "renewal" not in engine.config.touchpoints

    assert tp("check") == 0
    printed = capsys.readouterr().out
    assert ("1 journey (1 member) at until_60d (touch point removed): finish on version "
            in printed), printed

    finish_the_renewal(engine, clock)

    sent = subjects(smtp_server)
    assert any(s.startswith(OPTIONS_SUBJECT) for s in sent), sent            # the 60-day email
    assert any("Important: your Northwind contract ends" in s for s in sent), sent   # 30 days
    journey, [member] = journey_and_members(engine, journey_id)
    assert (journey.status, member.status) == ("done", "done")
    assert not audit_rows(engine, journey_id, "journey.failed")
    [completed] = audit_rows(engine, journey_id, "journey.completed")
    assert "no longer in touchpoints.yaml" in completed.reason


def test_a_removed_touch_point_with_no_stored_version_ends_its_journey_failed_with_the_reason(
        start, folder, clock, capsys):
    engine = start()
    journey_id = start_renewal(engine)
    with engine.store.session() as session:  # a journey from before versions were kept
        session.get(Journey, journey_id).version = None
    remove_touchpoint(folder, "renewal")
    engine = start()
    assert tp("check") == 0
    assert ("at until_60d (touch point removed): fail when they come due, with the reason: "
            "they started before versions were kept" in capsys.readouterr().out)

    resume_at(engine, clock, datetime(2027, 1, 15, 12, 0, tzinfo=UTC))

    journey, [member] = journey_and_members(engine, journey_id)
    assert (journey.status, member.status) == ("done", "failed")
    assert member.reason.startswith("touch point renewal is no longer in touchpoints.yaml and "
                                    "it started before versions were kept")
    [failed] = audit_rows(engine, journey_id, "journey.failed")
    assert failed.reason == member.reason and failed.step == "until_60d"
    with engine.store.session() as session:
        assert not session.scalars(select(Continuation).where(
            Continuation.journey_id == journey_id,
            Continuation.status.in_(("pending", "scheduled")))).all()
    capsys.readouterr()
    assert tp("journeys", "--touchpoint", "renewal") == 0
    assert "no longer in touchpoints.yaml" in capsys.readouterr().out


def test_serve_deploys_a_removed_touch_point_from_its_stored_version_for_its_journeys(
        start, folder, clock):
    from flows.engine import entry
    from flows.engine.inflight import say_in_flight
    from flows.engine.launch import DeploymentLauncher
    from flows.engine.migration import launch_retired
    from flows.service.deployments import build_deployments

    journey_id = start_renewal(start())
    remove_touchpoint(folder, "renewal")
    engine = start()
    said: list[str] = []
    say_in_flight(engine, said.append)
    assert any("at until_60d (touch point removed): finish on version " in line
               and "which serve deploys for them" in line for line in said), said

    deployments = {d.name: d for d in build_deployments(engine)}
    retired = deployments["renewal"]
    assert "retired" in retired.tags and not retired.schedules  # nothing new starts
    assert retired.entrypoint == "flows.engine.entry.renewal"
    flow = entry.renewal  # what a served run of it loads
    assert flow.name == "renewal"

    with engine.store.session() as session:
        wait = session.scalar(select(Continuation).where(Continuation.journey_id == journey_id))
        unit = {"id": f"resume:{wait.id}", "kind": "resume", "touchpoint": "renewal",
                "journey_id": journey_id, "label": "x", "due_at": wait.due_at, "attempts": 0,
                "params": {"journey_id": journey_id, "pointer": wait.pointer, "mode": "after",
                           "customer_id": CUSTOMER, "continuation": wait.id}}
    clock.now = datetime(2027, 1, 15, 12, 0, tzinfo=UTC)     # due: it runs, nothing fails
    assert launch_retired(engine, DeploymentLauncher(), unit) is True
    assert journey_and_members(engine, journey_id)[1][0].status == "waiting"


def test_serve_deploys_nothing_for_a_removed_touch_point_with_no_journey_in_flight(start, folder):
    from flows.service.deployments import build_deployments

    remove_touchpoint(folder, "renewal")
    assert "renewal" not in {d.name for d in build_deployments(start())}


def test_a_start_queued_for_a_touch_point_since_removed_fails_its_unit_with_the_reason(
        start, folder):
    from flows.engine import units
    from flows.engine.launch import DeploymentLauncher
    from flows.engine.redrive import launch_unit
    from flows.store.tables import WorkUnit

    engine = start()
    with engine.store.session() as session:
        units.queue(session, id="start:renewal:evt-1", kind="start", touchpoint="renewal",
                    journey_id=None, label=CUSTOMER, due_at=None,
                    params={"event": {"id": "evt-1"}, "customer_id": CUSTOMER})
    remove_touchpoint(folder, "renewal")
    engine = start()
    unit = {"id": "start:renewal:evt-1", "kind": "start", "touchpoint": "renewal",
            "journey_id": None, "label": CUSTOMER, "due_at": None, "attempts": 0,
            "params": {"event": {"id": "evt-1"}, "customer_id": CUSTOMER}}

    assert launch_unit(DeploymentLauncher(), unit, engine) is None

    with engine.store.session() as session:
        row = session.get(WorkUnit, "start:renewal:evt-1")
        assert row.status == "failed"
        assert row.reason == ("touch point renewal is no longer in touchpoints.yaml; nothing "
                              "was started")
        [audited] = session.scalars(select(AuditRow).where(AuditRow.action == "unit.failed")).all()
        assert "start:renewal:evt-1" in audited.reason
