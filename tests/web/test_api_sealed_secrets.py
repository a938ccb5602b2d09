"""Signing secrets are stored sealed: a secret an older version stored in the clear still
signs requests and is sealed on its first use; one the server cannot open refuses the
request with a hint, never a traceback."""

from __future__ import annotations

import json

from flows import keys
from flows.store.tables import ApiKey
from tests.web.support import events
from tests.web.test_api_support import error_of, event_body, make_key, signed


def _body(event_id: str) -> bytes:
    return json.dumps(event_body(event_id, "outage.declared",
                                 data={"outage_id": "OUT-1", "regions": ["north"]})).encode()


def test_a_clear_text_secret_of_an_older_version_still_signs_and_is_sealed_on_first_use(
        client, engine, launcher):
    key_id, key, _ = make_key(engine, "monitoring")
    with engine.store.session() as session:
        session.get(ApiKey, key_id).hmac_secret = "whsec_stored_in_the_clear"
    body = _body("legacy-1")
    response = client.post("/api/events", content=body,
                           headers=signed(key, "whsec_stored_in_the_clear", body))
    assert response.status_code == 202, response.text
    with engine.store.session() as session:
        stored = session.get(ApiKey, key_id).hmac_secret
    assert keys.is_sealed(stored) and "stored_in_the_clear" not in stored
    again = _body("legacy-2")
    assert client.post("/api/events", content=again,
                       headers=signed(key, "whsec_stored_in_the_clear", again)).status_code == 202
    wrong = _body("legacy-3")
    assert client.post("/api/events", content=wrong,
                       headers=signed(key, "whsec_guess", wrong)).status_code == 401


def test_a_secret_sealed_under_another_secret_key_refuses_the_request_with_a_hint(
        client, engine):
    key_id, key, secret = make_key(engine, "monitoring", hmac=True)
    with engine.store.session() as session:
        session.get(ApiKey, key_id).hmac_secret = keys.seal_secret(
            secret, key_id=key_id, secret_key="a secret key this server does not have")
    body = _body("sealed-elsewhere")
    response = client.post("/api/events", content=body, headers=signed(key, secret, body))
    assert response.status_code == 503
    error = error_of(response)
    assert "cannot be decrypted" in error["message"] and "secret key" in error["hint"]
    assert events(engine) == []
