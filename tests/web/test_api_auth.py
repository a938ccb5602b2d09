"""Every /api route needs a live API key; keys with a signing secret need a fresh signature."""

from __future__ import annotations

import json
import time

import pytest

from flows.keys import revoke_key, sign
from tests.web.support import add_customer, audit_rows, events
from tests.web.test_api_support import bearer, error_of, event_body, make_key, signed

ROUTES = [
    ("post", "/api/events", event_body()),
    ("put", "/api/customers/C-1001", {"name": "Ada", "email": "ada@example.com"}),
    ("post", "/api/customers/import", []),
    ("get", "/api/journeys", None),
    ("post", "/api/journeys/j-1/cancel", {"reason": "test"}),
    ("post", "/api/customers/C-1001/journeys/cancel", {"reason": "test"}),
]


@pytest.mark.parametrize("method, path, payload", ROUTES)
def test_every_api_route_without_a_key_is_refused_with_401(client, method, path, payload):
    kwargs = {"json": payload} if payload is not None else {}
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "API key" in error_of(response)["message"]


@pytest.mark.parametrize("method, path, payload", ROUTES)
def test_every_api_route_with_a_wrong_key_is_refused_with_401(client, engine, method, path, payload):
    _, key, _ = make_key(engine)
    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    kwargs = {"json": payload} if payload is not None else {}
    response = getattr(client, method)(path, headers=bearer(wrong), **kwargs)
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"


@pytest.mark.parametrize("header", [
    "Bearer tp_nothing", "Basic dXNlcjpwYXNz", "Bearer ", "tp_0123456789ab_" + "x" * 43,
    "Bearer tp_0123456789ab_" + "x" * 43,
])
def test_malformed_or_unknown_keys_are_refused_with_401(client, header):
    response = client.post("/api/events", json=event_body(), headers={"Authorization": header})
    assert response.status_code == 401


def test_a_revoked_key_is_refused_with_401_and_the_refusal_is_audited(client, engine):
    add_customer(engine)
    key_id, key, _ = make_key(engine)
    assert client.get("/api/journeys", headers=bearer(key)).status_code == 200
    with engine.store.session() as session:
        revoke_key(session, key_id, actor="test:admin")
    response = client.post("/api/events", json=event_body(customer_id="C-1001"),
                           headers=bearer(key))
    assert response.status_code == 401
    assert events(engine) == []
    refused = audit_rows(engine, "auth.failed")
    assert [r.actor for r in refused] == [f"api:{key_id}"]
    assert refused[0].detail["count"] == 1 and refused[0].detail["key_id"] == key_id


def test_a_key_works_as_bearer_token_or_in_x_api_key(client, engine):
    _, key, _ = make_key(engine)
    assert client.get("/api/journeys", headers=bearer(key)).status_code == 200
    assert client.get("/api/journeys", headers={"X-API-Key": key}).status_code == 200


def test_healthz_needs_no_key(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"ok": True, "degraded": False, "parts": {}}


# ---------------------------------------------------------------------- HMAC signatures
def _body(event_id: str = "mon-1") -> bytes:
    return json.dumps(event_body(event_id, "outage.declared",
                                 data={"outage_id": "OUT-1", "regions": ["north"]})).encode()


def test_a_correctly_signed_request_is_accepted(client, engine, launcher):
    _, key, secret = make_key(engine, "monitoring", hmac=True)
    body = _body()
    response = client.post("/api/events", content=body, headers=signed(key, secret, body))
    assert response.status_code == 202, response.text
    assert [s["touchpoint"] for s in launcher.started] == ["outage"]


def test_a_signing_key_without_a_signature_is_refused_with_401(client, engine):
    _, key, _ = make_key(engine, "monitoring", hmac=True)
    response = client.post("/api/events", content=_body(), headers={"X-API-Key": key})
    assert response.status_code == 401
    error = error_of(response)
    assert error["code"] == "bad_signature"
    assert "X-Touchpoints-Signature" in error["message"]
    assert events(engine) == []


def test_a_signature_over_another_body_is_refused_with_401(client, engine, launcher):
    _, key, secret = make_key(engine, "monitoring", hmac=True)
    headers = signed(key, secret, _body("mon-1"))
    response = client.post("/api/events", content=_body("mon-2"), headers=headers)
    assert response.status_code == 401
    assert "does not match" in error_of(response)["message"]
    assert launcher.started == [] and events(engine) == []


def test_a_signature_made_with_another_secret_is_refused_with_401(client, engine):
    _, key, _ = make_key(engine, "monitoring", hmac=True)
    body = _body()
    response = client.post("/api/events", content=body, headers=signed(key, "whsec_other", body))
    assert response.status_code == 401


@pytest.mark.parametrize("skew", [-305, 305, -86400])  # 5 s of margin: a slow request
def test_a_stale_or_future_timestamp_is_refused_with_401(client, engine, skew):
    _, key, secret = make_key(engine, "monitoring", hmac=True)
    body = _body()
    response = client.post("/api/events", content=body,
                           headers=signed(key, secret, body, at=int(time.time()) + skew))
    assert response.status_code == 401
    assert "300 s" in error_of(response)["message"]
    assert events(engine) == []


def test_a_timestamp_within_the_tolerance_is_accepted(client, engine):
    _, key, secret = make_key(engine, "monitoring", hmac=True)
    body = _body()
    response = client.post("/api/events", content=body,
                           headers=signed(key, secret, body, at=int(time.time()) - 250))
    assert response.status_code == 202


def test_the_tolerance_is_configurable(client, app, engine):
    app.state.hmac_tolerance_seconds = 10
    _, key, secret = make_key(engine, "monitoring", hmac=True)
    body = _body()
    response = client.post("/api/events", content=body,
                           headers=signed(key, secret, body, at=int(time.time()) - 60))
    assert response.status_code == 401
    assert "10 s" in error_of(response)["message"]


@pytest.mark.parametrize("timestamp", ["", "soon", "-5", "1.5e9", "١٢٣", "9" * 40])
def test_a_timestamp_that_is_not_unix_seconds_is_refused_with_401(client, engine, timestamp):
    _, key, secret = make_key(engine, "monitoring", hmac=True)
    body = _body()
    headers = {"X-API-Key": key, "X-Touchpoints-Timestamp": timestamp.encode(),  # raw UTF-8
               "X-Touchpoints-Signature": sign(secret, timestamp, body)}
    assert client.post("/api/events", content=body, headers=headers).status_code == 401


def test_a_key_without_a_signing_secret_ignores_signature_headers(client, engine):
    _, key, _ = make_key(engine)
    body = _body()
    headers = {**bearer(key), "X-Touchpoints-Timestamp": "1", "X-Touchpoints-Signature": "x"}
    assert client.post("/api/events", content=body, headers=headers).status_code == 202
