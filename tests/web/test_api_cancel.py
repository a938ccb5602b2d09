"""Cancelling journeys through the API, the CLI and flows.engine.cancel; listing journeys."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from flows import clock
from flows.engine import cancel as cancelling
from flows.errors import NotFoundError, TouchpointsError
from flows.store.tables import Continuation, Hold, Journey, Member, Task
from tests.web.support import add_customer, add_task, add_waiting_journey, audit_rows, get
from tests.web.test_api_support import make_key, post_json


@pytest.fixture
def key(engine) -> str:
    return make_key(engine)[1]


def park_journey(engine, customer_id: str, *, touchpoint: str = "sale",
                 flow_run_id: str | None = None) -> str:
    """A waiting journey with a scheduled resume, an open task and a hold of its own."""
    journey_id = add_waiting_journey(engine, customer_id, touchpoint=touchpoint)
    now = clock.now()
    with engine.store.session() as session:
        session.add(Continuation(id=f"{journey_id}:await_csat:after:x", journey_id=journey_id,
                                 touchpoint=touchpoint, pointer="await_csat", kind="timeout",
                                 due_at=now + timedelta(days=7),
                                 status="scheduled" if flow_run_id else "pending",
                                 flow_run_id=flow_run_id, label=f"{customer_id} · await_csat"))
        session.add(Hold(customer_id=customer_id, categories=["surveys"], reason="test",
                         source=f"{journey_id}:hold_surveys"))
    add_task(engine, customer_id, journey_id=journey_id)
    return journey_id


def segment_journey(engine, customer_ids: list[str], touchpoint: str = "outage") -> str:
    journey_id = uuid.uuid4().hex
    with engine.store.session() as session:
        session.add(Journey(id=journey_id, touchpoint=touchpoint, entry_key="OUT-1", entry_lock=True,
                            customer_id=None, trigger={}, status="active", started_at=clock.now()))
        session.flush()
        for cid in customer_ids:
            session.add(Member(journey_id=journey_id, customer_id=cid, status="waiting",
                               pointer="await_resolved", waiting_for="outage.resolved",
                               due_at=clock.now() + timedelta(days=2), results={}, lane=""))
            session.add(Hold(customer_id=cid, categories=["surveys"], reason="outage",
                             source=f"{journey_id}:hold_surveys"))
        session.add(Continuation(id=f"{journey_id}:await_resolved:after:x", journey_id=journey_id,
                                 touchpoint=touchpoint, pointer="await_resolved", kind="timeout",
                                 due_at=clock.now() + timedelta(days=2), status="pending",
                                 label="OUT-1"))
    return journey_id


def state(engine, journey_id: str) -> dict:
    with engine.store.session() as session:
        return {
            "journey": session.get(Journey, journey_id).status,
            "members": sorted(session.scalars(select(Member.status).where(
                Member.journey_id == journey_id))),
            "continuations": sorted(session.scalars(select(Continuation.status).where(
                Continuation.journey_id == journey_id))),
            "tasks": sorted(session.scalars(select(Task.status).where(
                Task.journey_id == journey_id))),
            "holds": len(session.scalars(select(Hold).where(
                Hold.source.like(f"{journey_id}:%"))).all()),
        }


# ---------------------------------------------------------------------- the engine functions
def test_cancelling_a_journey_cancels_its_members_resumes_and_tasks_and_lifts_its_holds(engine):
    add_customer(engine, "C-1001")
    journey_id = park_journey(engine, "C-1001")
    result = cancelling.cancel_journey(engine, journey_id, actor="test:ops", reason="contract withdrawn")
    assert result["status"] == "cancelled" and result["members"] == 1
    assert state(engine, journey_id) == {"journey": "cancelled", "members": ["cancelled"],
                                         "continuations": ["cancelled"], "tasks": ["cancelled"],
                                         "holds": 0}
    [row] = audit_rows(engine, "journey.cancelled")
    assert (row.actor, row.journey_id, row.customer_id, row.reason) == (
        "test:ops", journey_id, "C-1001", "contract withdrawn")


def test_cancelling_twice_changes_nothing_the_second_time(engine):
    add_customer(engine, "C-1001")
    journey_id = park_journey(engine, "C-1001")
    cancelling.cancel_journey(engine, journey_id, actor="test:ops", reason="first")
    again = cancelling.cancel_journey(engine, journey_id, actor="test:ops", reason="second")
    assert again["already"] is True
    assert len(audit_rows(engine, "journey.cancelled")) == 1


def test_a_journey_that_has_ended_cannot_be_cancelled(engine):
    add_customer(engine, "C-1001")
    journey_id = park_journey(engine, "C-1001")
    with engine.store.session() as session:
        session.get(Journey, journey_id).status = "done"
    with pytest.raises(TouchpointsError, match="already ended"):
        cancelling.cancel_journey(engine, journey_id, actor="test:ops", reason="late")


def test_a_cancel_needs_a_reason_and_a_known_journey(engine):
    with pytest.raises(TouchpointsError, match="reason"):
        cancelling.cancel_journey(engine, "nope", actor="test:ops", reason="  ")
    with pytest.raises(NotFoundError):
        cancelling.cancel_journey(engine, "nope", actor="test:ops", reason="why")


def test_cancelling_for_a_customer_cancels_their_journeys_and_only_their_place_in_a_segment(engine):
    for cid in ("C-1001", "C-1002"):
        add_customer(engine, cid)
    own = park_journey(engine, "C-1001")
    other = park_journey(engine, "C-1002")
    outage = segment_journey(engine, ["C-1001", "C-1002"])
    results = cancelling.cancel_for_customer(engine, "C-1001", actor="test:ops", reason="moved away")
    assert {(r["journey_id"], r["scope"]) for r in results} == {(own, "journey"), (outage, "member")}
    assert state(engine, own)["journey"] == "cancelled"
    assert state(engine, other)["journey"] == "active"
    seg = state(engine, outage)
    assert seg["journey"] == "active" and seg["members"] == ["cancelled", "waiting"]
    assert seg["continuations"] == ["pending"] and seg["holds"] == 1
    assert {r.customer_id for r in audit_rows(engine, "journey.cancelled")} == {"C-1001"}


def test_the_last_member_leaving_a_segment_journey_cancels_it(engine):
    add_customer(engine, "C-1001")
    outage = segment_journey(engine, ["C-1001"])
    [result] = cancelling.cancel_for_customer(engine, "C-1001", actor="test:ops", reason="moved")
    assert result["scope"] == "journey"
    assert state(engine, outage)["continuations"] == ["cancelled"]


def test_cancelling_for_a_customer_can_be_limited_to_one_touch_point(engine):
    add_customer(engine, "C-1001")
    sale = park_journey(engine, "C-1001", touchpoint="sale")
    install = park_journey(engine, "C-1001", touchpoint="install")
    results = cancelling.cancel_for_customer(engine, "C-1001", "install", actor="test:ops",
                                             reason="install cancelled")
    assert [r["journey_id"] for r in results] == [install]
    assert state(engine, sale)["journey"] == "active"


def test_cancelling_for_an_unknown_customer_or_touch_point_is_not_found(engine):
    add_customer(engine, "C-1001")
    with pytest.raises(NotFoundError):
        cancelling.cancel_for_customer(engine, "C-404", actor="test:ops", reason="x")
    with pytest.raises(NotFoundError):
        cancelling.cancel_for_customer(engine, "C-1001", "nope", actor="test:ops", reason="x")


def test_a_cancel_stands_when_prefect_cannot_be_reached(engine):
    add_customer(engine, "C-1001")
    journey_id = park_journey(engine, "C-1001", flow_run_id=str(uuid.uuid4()))
    started = time.monotonic()
    result = cancelling.cancel_journey(engine, journey_id, actor="test:ops", reason="x",
                                       prefect_api_url="http://127.0.0.1:9/api")
    assert time.monotonic() - started < 15
    assert state(engine, journey_id)["journey"] == "cancelled"
    [outcome] = result["prefect"].values()
    assert outcome.startswith("not cancelled")


def test_no_prefect_api_means_no_attempt_to_cancel_runs(monkeypatch):
    monkeypatch.setattr(cancelling, "_prefect_configured", lambda url: None)
    assert cancelling.cancel_flow_runs(["r-1"], reason="x") == {
        "r-1": "not cancelled: no Prefect API configured"}
    assert cancelling.cancel_flow_runs([], reason="x") == {}


# ---------------------------------------------------------------------- the API
def test_a_journey_is_cancelled_through_the_api_with_the_key_as_actor(client, engine, key):
    add_customer(engine, "C-1001")
    journey_id = park_journey(engine, "C-1001")
    response = post_json(client, f"/api/journeys/{journey_id}/cancel", key,
                         {"reason": "contract withdrawn in the CRM"})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    [row] = audit_rows(engine, "journey.cancelled")
    assert row.actor == f"api:{key.split('_')[1]}"
    assert row.reason == "contract withdrawn in the CRM"


def test_cancelling_an_unknown_journey_through_the_api_is_404(client, key):
    response = post_json(client, "/api/journeys/nope/cancel", key, {"reason": "x"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_cancelling_an_ended_journey_through_the_api_is_409(client, engine, key):
    add_customer(engine, "C-1001")
    journey_id = park_journey(engine, "C-1001")
    with engine.store.session() as session:
        session.get(Journey, journey_id).status = "done"
    response = post_json(client, f"/api/journeys/{journey_id}/cancel", key, {"reason": "x"})
    assert response.status_code == 409


@pytest.mark.parametrize("payload", [{}, {"reason": ""}, {"reason": "   "}, {"reason": 5},
                                     {"reason": "x", "force": True}])
def test_a_cancel_without_a_proper_reason_is_a_422(client, engine, key, payload):
    add_customer(engine, "C-1001")
    journey_id = park_journey(engine, "C-1001")
    response = post_json(client, f"/api/journeys/{journey_id}/cancel", key, payload)
    assert response.status_code == 422
    assert state(engine, journey_id)["journey"] == "active"


def test_a_customers_journeys_are_cancelled_through_the_api(client, engine, key):
    add_customer(engine, "C-1001")
    sale = park_journey(engine, "C-1001", touchpoint="sale")
    install = park_journey(engine, "C-1001", touchpoint="install")
    response = post_json(client, "/api/customers/C-1001/journeys/cancel?touchpoint=sale", key,
                         {"reason": "sale reversed"})
    assert response.status_code == 200
    assert [r["journey_id"] for r in response.json()["cancelled"]] == [sale]
    assert state(engine, install)["journey"] == "active"
    response = post_json(client, "/api/customers/C-404/journeys/cancel", key, {"reason": "x"})
    assert response.status_code == 404


def test_journeys_are_listed_by_customer_and_touch_point(client, engine, key):
    add_customer(engine, "C-1001")
    add_customer(engine, "C-1002")
    sale = park_journey(engine, "C-1001", touchpoint="sale")
    park_journey(engine, "C-1002", touchpoint="sale")
    response = client.get("/api/journeys", params={"customer_id": "C-1001"},
                          headers={"X-API-Key": key})
    assert response.status_code == 200
    [row] = response.json()["journeys"]
    assert (row["id"], row["touchpoint"], row["status"]) == (sale, "sale", "active")
    assert row["members"] == {"waiting": 1}
    listed = client.get("/api/journeys", params={"touchpoint": "install"}, headers={"X-API-Key": key})
    assert listed.json() == {"journeys": []}
    assert client.get("/api/journeys", params={"limit": 0}, headers={"X-API-Key": key}).status_code == 422


# ---------------------------------------------------------------------- the CLI
@pytest.fixture
def cli(engine, monkeypatch):
    from flows.cli import _register_all, app, remote

    monkeypatch.setattr("flows.engine.core.current_engine", lambda: engine)
    monkeypatch.setattr(remote, "find_service", lambda settings, **kw: None)
    monkeypatch.setattr(remote, "cli_actor", lambda: "cli:tester")
    _register_all()

    def invoke(*args: str):
        return CliRunner().invoke(app, list(args))
    return invoke


def test_touchpoints_cancel_journey_cancels_it_and_audits_the_person(cli, engine):
    add_customer(engine, "C-1001")
    journey_id = park_journey(engine, "C-1001")
    result = cli("cancel", "--journey", journey_id, "--reason", "asked by phone")
    assert result.exit_code == 0, result.output
    assert f"cancelled sale journey {journey_id}" in result.output
    [row] = audit_rows(engine, "journey.cancelled")
    assert (row.actor, row.reason) == ("cli:tester", "asked by phone")
    assert get(engine, Journey, journey_id).status == "cancelled"


def test_touchpoints_cancel_customer_with_touchpoint_cancels_only_that_one(cli, engine):
    add_customer(engine, "C-1001")
    sale = park_journey(engine, "C-1001", touchpoint="sale")
    install = park_journey(engine, "C-1001", touchpoint="install")
    result = cli("cancel", "--customer", "C-1001", "--touchpoint", "install", "--reason", "moved",
                 "--json")
    assert result.exit_code == 0, result.output
    assert get(engine, Journey, install).status == "cancelled"
    assert get(engine, Journey, sale).status == "active"


@pytest.mark.parametrize("args", [
    ("cancel", "--reason", "x"),
    ("cancel", "--journey", "j", "--customer", "C-1001", "--reason", "x"),
    ("cancel", "--journey", "j", "--touchpoint", "sale", "--reason", "x"),
])
def test_touchpoints_cancel_needs_exactly_one_target(cli, args):
    result = cli(*args)
    assert isinstance(result.exception, TouchpointsError)


def test_touchpoints_cancel_needs_a_reason(cli):
    result = cli("cancel", "--journey", "j")
    assert result.exit_code != 0


@pytest.mark.e2e
def test_a_scheduled_prefect_run_of_a_cancelled_journey_is_cancelled_in_prefect(engine,
                                                                                 prefect_server):
    from datetime import UTC, datetime

    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Scheduled

    @flow(name="cancel-probe")
    def probe() -> None:
        return None

    with get_client(sync_client=True) as client:
        run = client.create_flow_run(
            probe, state=Scheduled(scheduled_time=datetime.now(UTC) + timedelta(days=7)))
    add_customer(engine, "C-1001")
    journey_id = park_journey(engine, "C-1001", flow_run_id=str(run.id))
    result = cancelling.cancel_journey(engine, journey_id, actor="test:ops", reason="withdrawn",
                                       prefect_api_url=prefect_server)
    assert result["prefect"] == {str(run.id): "cancelled"}
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(run.id).state.is_cancelled()
