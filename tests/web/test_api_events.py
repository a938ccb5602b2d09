"""POST /api/events: stored durably, then dispatched; idempotent by event id; every bad input
is a clear 4xx that stores and starts nothing."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from flows.store.tables import Event
from tests.web.support import (
    RecordingLauncher,
    add_customer,
    add_waiting_journey,
    audit_rows,
    events,
)
from tests.web.test_api_support import bearer, error_of, event_body, make_key, post_json


@pytest.fixture
def key(engine) -> str:
    return make_key(engine)[1]


@pytest.fixture
def key_id(engine, key) -> str:
    return key.split("_")[1]


@pytest.fixture
def customer(engine) -> str:
    return add_customer(engine, "C-1001")


class StoreCheckingLauncher(RecordingLauncher):
    """Records, for every start, whether the event was already committed to the inbox."""

    def __init__(self, engine) -> None:
        super().__init__()
        self.engine = engine
        self.stored_first: list[bool] = []

    def start(self, touchpoint, *, event, customer_id, label, **unit):
        with self.engine.store.session() as session:  # a new session sees only committed rows
            self.stored_first.append(session.get(Event, event["id"]) is not None)
        return super().start(touchpoint, event=event, customer_id=customer_id, label=label, **unit)


class FailingLauncher(RecordingLauncher):
    def start(self, touchpoint, **kwargs):
        raise ConnectionError("Prefect is down")


# ---------------------------------------------------------------------- accepted
def test_an_event_is_answered_202_with_what_it_started(client, engine, launcher, key, customer):
    response = post_json(client, "/api/events", key,
                         event_body("crm-1", customer_id=customer, data={"plan": "Fibre 500"}))
    assert response.status_code == 202
    assert response.json() == {"event_id": "crm-1", "status": "accepted", "duplicate": False,
                               "started": ["sale"], "resumed": [], "skipped": []}
    assert [(s["touchpoint"], s["customer_id"]) for s in launcher.started] == [("sale", customer)]
    assert launcher.started[0]["event"]["data"] == {"plan": "Fibre 500"}


def test_the_event_is_committed_to_the_inbox_before_anything_is_started(client, engine, dispatcher,
                                                                         key, customer):
    dispatcher.launcher = checking = StoreCheckingLauncher(engine)
    response = post_json(client, "/api/events", key, event_body("crm-1", customer_id=customer))
    assert response.status_code == 202
    assert checking.stored_first == [True]
    [row] = events(engine)
    assert (row.id, row.status, row.customer_id) == ("crm-1", "dispatched", customer)


def test_an_event_stays_in_the_inbox_when_starting_its_touch_points_fails(client, engine,
                                                                          dispatcher, key, customer):
    dispatcher.launcher = FailingLauncher()
    response = post_json(client, "/api/events", key, event_body("crm-1", customer_id=customer))
    assert response.status_code == 503
    assert error_of(response)["code"] == "dispatch_failed"
    [row] = events(engine)
    assert row.status == "received"


def test_the_same_event_id_twice_starts_one_journey_and_gets_the_same_answer(client, launcher, key,
                                                                             customer):
    first = post_json(client, "/api/events", key, event_body("crm-1", customer_id=customer))
    again = post_json(client, "/api/events", key, event_body("crm-1", customer_id=customer))
    assert first.status_code == again.status_code == 202
    assert again.json() == {**first.json(), "duplicate": True}
    assert len(launcher.started) == 1


def test_a_repeated_event_that_woke_a_journey_answers_the_same_resumed_list(client, engine,
                                                                            launcher, key, customer):
    journey_id = add_waiting_journey(engine, customer)
    payload = event_body("survey-1", "survey.answered", customer_id=customer,
                         data={"survey_id": "s-1", "score": 5})
    first = post_json(client, "/api/events", key, payload)
    again = post_json(client, "/api/events", key, payload)
    assert first.json()["resumed"] == again.json()["resumed"] == [journey_id]
    assert again.json()["duplicate"] is True
    assert len(launcher.resumed) == 1


def test_the_audit_actor_of_an_api_event_is_the_key(client, engine, key, key_id, customer):
    post_json(client, "/api/events", key, event_body("crm-1", customer_id=customer))
    [row] = audit_rows(engine, "event.received")
    assert row.actor == f"api:{key_id}"
    assert events(engine)[0].source == f"api:{key_id}"


def test_occurred_at_is_kept_in_utc_and_defaults_to_now(client, engine, key, customer):
    post_json(client, "/api/events", key,
              event_body("crm-1", customer_id=customer, occurred_at="2026-03-01T10:00:00+01:00"))
    post_json(client, "/api/events", key, event_body("crm-2", customer_id=customer))
    by_id = {e.id: e for e in events(engine)}
    assert by_id["crm-1"].occurred_at.isoformat() == "2026-03-01T09:00:00+00:00"
    assert by_id["crm-2"].occurred_at is not None


def test_a_segment_event_with_only_its_required_data_is_accepted(client, launcher, key):
    response = post_json(client, "/api/events", key,
                         event_body("mon-1", "outage.declared", data={"regions": ["north"]}))
    assert response.status_code == 202
    assert response.json()["started"] == ["outage"]


def test_an_event_no_touch_point_listens_to_is_stored_and_starts_nothing(client, engine, launcher,
                                                                         key, customer):
    response = post_json(client, "/api/events", key,
                         event_body("t-1", "task.acknowledged", customer_id=customer,
                                    data={"task_id": "T-1", "acknowledged_by": "a@example.com"}))
    assert response.status_code == 202
    assert response.json()["started"] == [] and launcher.started == []
    assert [e.id for e in events(engine)] == ["t-1"]


# ---------------------------------------------------------------------- refused
def _refused(client, engine, launcher, key, body: bytes, status: int, *, headers=None) -> dict:
    response = client.post("/api/events", content=body,
                           headers={**bearer(key), "Content-Type": "application/json",
                                    **(headers or {})})
    assert response.status_code == status, response.text
    assert launcher.started == [] and launcher.resumed == []
    assert events(engine) == []
    return error_of(response)


@pytest.mark.parametrize("body", [b"{", b"{'id': 'x'}", b'{"id": "x",}', b"\xff\xfe",
                                  b"", b'{"id": NaN}'])
def test_malformed_json_is_a_400(client, engine, launcher, key, body):
    error = _refused(client, engine, launcher, key, body, 400)
    assert error["code"] in ("malformed_json", "empty_body")


def test_a_body_over_256_kib_is_a_413(client, engine, launcher, key, customer):
    body = json.dumps(event_body(customer_id=customer, data={"blob": "x" * 300_000})).encode()
    error = _refused(client, engine, launcher, key, body, 413)
    assert error["code"] == "body_too_large"


def test_a_body_over_256_kib_is_a_413_even_without_content_length(client, engine, launcher, key):
    def chunks():  # sent chunked: no Content-Length to trust
        yield b'{"id": "big", "type": "contract.signed", "data": {"blob": "'
        for _ in range(40):
            yield b"x" * 8192
        yield b'"}}'

    response = client.post("/api/events", content=chunks(), headers=bearer(key))
    assert response.status_code == 413
    assert events(engine) == [] and launcher.started == []


def test_a_content_length_that_understates_the_body_does_not_get_past_the_limit(client, engine,
                                                                                launcher, key):
    body = json.dumps(event_body(data={"blob": "x" * 300_000})).encode()
    response = client.post("/api/events", content=body,
                           headers={**bearer(key), "Content-Length": "100"})
    assert response.status_code in (400, 413)
    assert events(engine) == [] and launcher.started == []


def test_an_unknown_event_type_is_a_422_with_did_you_mean(client, engine, launcher, key, customer):
    body = json.dumps(event_body(type="contract.signd", customer_id=customer)).encode()
    error = _refused(client, engine, launcher, key, body, 422)
    assert error["code"] == "unknown_event_type"
    assert "contract.signd" in error["message"]
    assert "contract.signed" in error["hint"]


def test_an_unknown_customer_is_a_422(client, engine, launcher, key):
    body = json.dumps(event_body(customer_id="C-404")).encode()
    error = _refused(client, engine, launcher, key, body, 422)
    assert error["code"] == "unknown_customer"
    assert "C-404" in error["message"]


@pytest.mark.parametrize("payload, field", [
    ({"type": "contract.signed"}, "id"),
    ({"id": "e-1"}, "type"),
    ({"id": 17, "type": "contract.signed"}, "id"),
    ({"id": "e-1", "type": ["contract.signed"]}, "type"),
    ({"id": "e-1", "type": "contract.signed", "customer_id": 1001}, "customer_id"),
    ({"id": "e-1", "type": "contract.signed", "data": "plan=trial"}, "data"),
    ({"id": "e-1", "type": "contract.signed", "data": None}, "data"),
    ({"id": "e-1", "type": "contract.signed", "data": [1, 2]}, "data"),
    ({"id": "e-1", "type": "contract.signed", "occurred_at": 1767225600}, "occurred_at"),
    ({"id": "e-1", "type": "contract.signed", "occurred_at": "2026-03-01T10:00:00"}, "occurred_at"),
    ({"id": "e-1", "type": "contract.signed", "occurred_at": "yesterday"}, "occurred_at"),
    ({"id": "e-1", "type": "contract.signed", "occurred_at": "0001-01-01T00:00:00+05:00"},
     "occurred_at"),
    ({"id": "e-1", "type": "contract.signed", "customer": "C-1001"}, "customer"),
    ({"id": "", "type": "contract.signed"}, "id"),
    ({"id": "x" * 129, "type": "contract.signed"}, "id"),
    ({"id": "line\nbreak", "type": "contract.signed"}, "id"),
    ({"id": "e-1", "type": "survey.answered", "data": {"journey_id": ["j"]}}, "data"),
])
def test_a_missing_or_wrong_typed_field_is_a_422_naming_it(client, engine, launcher, key, payload,
                                                            field):
    error = _refused(client, engine, launcher, key, json.dumps(payload).encode(), 422)
    assert error["code"] == "invalid_field"
    assert f"`{field}`" in error["message"]
    assert field in [f["field"] for f in error["fields"]]


@pytest.mark.parametrize("body", [b"[]", b'"contract.signed"', b"42", b"null"])
def test_a_body_that_is_not_a_json_object_is_a_422(client, engine, launcher, key, body):
    assert _refused(client, engine, launcher, key, body, 422)["code"] == "invalid_body"


@pytest.mark.parametrize("data, field", [
    ('{"n": 18446744073709551616}', "data.n"),
    ('{"n": 1e400}', "data.n"),  # Python reads it as inf
    ('{"s": "a\\u0000b"}', "data.s"),
    ('{"deep": ' + "[" * 40 + "]" * 40 + "}", "data.deep"),
])
def test_data_the_store_cannot_hold_is_a_422_naming_the_field(client, engine, launcher, key,
                                                               data, field):
    body = f'{{"id": "crm-1", "type": "contract.signed", "data": {data}}}'.encode()
    error = _refused(client, engine, launcher, key, body, 422)
    assert error["fields"][0]["field"].startswith(field)


def test_a_lone_surrogate_in_the_data_is_a_422(client, engine, launcher, key):
    body = b'{"id": "e-1", "type": "contract.signed", "data": {"name": "\\ud83d"}}'
    error = _refused(client, engine, launcher, key, body, 422)
    assert error["fields"][0]["field"] == "data.name"


def test_a_refused_event_can_be_sent_again_once_corrected(client, engine, launcher, key, customer):
    refused = post_json(client, "/api/events", key, event_body("crm-1", customer_id="C-404"))
    assert refused.status_code == 422
    accepted = post_json(client, "/api/events", key, event_body("crm-1", customer_id=customer))
    assert accepted.status_code == 202 and accepted.json()["duplicate"] is False


def test_unknown_api_paths_and_methods_are_4xx(client, key):
    assert client.get("/api/events", headers=bearer(key)).status_code == 405
    assert client.get("/api/nothing-here", headers=bearer(key)).status_code == 404


def test_concurrent_posts_of_one_event_start_one_journey(app, engine, launcher, key, customer):
    from concurrent.futures import ThreadPoolExecutor

    from fastapi.testclient import TestClient

    payload = json.dumps(event_body("crm-race", customer_id=customer)).encode()
    with TestClient(app) as c:
        def post(_):
            return c.post("/api/events", content=payload, headers=bearer(key))
        with ThreadPoolExecutor(4) as pool:
            responses = list(pool.map(post, range(8)))
    assert {r.status_code for r in responses} == {202}
    assert sum(not r.json()["duplicate"] for r in responses) == 1
    assert len(launcher.started) == 1
    with engine.store.session() as session:
        assert len(session.scalars(select(Event)).all()) == 1


def test_an_event_missing_what_its_trigger_filter_needs_is_refused_by_its_contract(
        client, engine, launcher, key, customer):
    # billing starts on invoice.issued where "event.data.first": `first` is required
    response = post_json(client, "/api/events", key,
                         event_body("inv-1", "invoice.issued", customer_id=customer, data={}))
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "invalid_event_data"
    assert "data.first" in [f["field"] for f in error["fields"]]
    assert events(engine) == [] and launcher.started == []


# ---------------------------------------------------------------------- the data contract
def test_data_that_breaks_the_contract_is_a_422_naming_each_field_and_what_was_expected(
        client, engine, launcher, key):
    body = event_body("out-1", "outage.declared",
                      data={"regions": "north", "outage_id": "X", "eta": "2 hours"})
    response = post_json(client, "/api/events", key, body)
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "invalid_event_data"
    fields = {f["field"]: f["message"] for f in error["fields"]}
    assert set(fields) == {"data.regions", "data.eta"}
    assert "expected a list of string" in fields["data.regions"]
    assert "ISO date and time" in fields["data.eta"] and "'2 hours'" in fields["data.eta"]
    assert "events.outage.declared.fields" in error["hint"]
    assert events(engine) == [] and launcher.started == []


@pytest.mark.parametrize("type_, data, missing", [
    ("outage.declared", {"outage_id": "X"}, {"data.regions"}),
    ("billing.disputed", {"dispute_id": "DSP-1"},
     {"data.invoice_number", "data.amount_disputed", "data.reason", "data.raised_via"}),
])
def test_a_required_field_left_out_is_refused_before_anything_starts(client, engine, launcher,
                                                                     key, customer, type_, data,
                                                                     missing):
    body = event_body("e-1", type_, customer_id=customer, data=data)
    response = post_json(client, "/api/events", key, body)
    assert response.status_code == 422
    assert {f["field"] for f in error_of(response)["fields"]} == missing
    assert events(engine) == [] and launcher.started == [] and launcher.resumed == []


def test_a_refusal_is_audited_once_with_its_errors(client, engine, key, key_id, customer):
    post_json(client, "/api/events", key,
              event_body("out-1", "outage.declared", data={"regions": ["north"], "eta": "soon"}))
    [row] = audit_rows(engine, "event.refused")
    assert (row.result, row.actor) == ("refused", f"api:{key_id}")
    assert row.detail["event_id"] == "out-1" and row.detail["type"] == "outage.declared"
    assert set(row.detail["errors"]) == {"eta"}
    assert audit_rows(engine, "event.received") == []


def test_the_stored_event_keeps_the_data_as_sent(client, engine, launcher, key):
    data = {"regions": ["north"], "eta": "2026-11-23T18:00:00Z", "extra": 1}
    response = post_json(client, "/api/events", key, event_body("out-1", "outage.declared",
                                                                data=data))
    assert response.status_code == 202
    [row] = events(engine)
    assert row.data == data
    assert launcher.started[0]["event"]["data"] == data


def test_a_start_the_entry_rule_will_refuse_is_not_answered_as_started(app, engine, dispatcher,
                                                                       client, key, customer):
    from flows.engine.journeys import JourneyOps

    first = post_json(client, "/api/events", key, event_body("crm-1", customer_id=customer))
    assert first.json()["started"] == ["sale"]
    with engine.store.session() as session:  # enter the journey, as the service's run would
        JourneyOps(engine).enter(session, touchpoint=engine.touchpoint("sale"),
                                 event=_stored_event(engine, "crm-1"), customer_id=customer,
                                 flow_run_id=None, now=_now())
    dispatcher.outbox = True  # the service's intake: answers before any journey is entered
    again = post_json(client, "/api/events", key, event_body("crm-2", customer_id=customer))
    assert again.status_code == 202
    body = again.json()
    assert body["started"] == []
    [skip] = body["skipped"]
    assert skip["touchpoint"] == "sale" and "entry rule once_per_cycle" in skip["reason"]


def _stored_event(engine, event_id: str) -> dict:
    from flows.engine.matching import event_dict

    with engine.store.session() as session:
        return event_dict(session.get(Event, event_id))


def _now():
    from flows import clock

    return clock.now()


def test_the_openapi_document_holds_each_event_types_data_schema(client):
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    assert schemas["EventData.outage.declared"]["required"] == ["regions"]
    assert schemas["EventData.invoice.issued"]["properties"]["issued_on"]["format"] == "date"
    body = document["paths"]["/api/events"]["post"]["requestBody"]["content"]["application/json"]
    by_type = {branch["properties"]["type"].get("const"): branch["properties"].get("data")
               for branch in body["schema"]["oneOf"]}
    assert by_type["billing.disputed"] == {"$ref": "#/components/schemas/EventData.billing.disputed"}
