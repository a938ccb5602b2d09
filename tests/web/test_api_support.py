"""Helpers shared by the API tests (keys, signed headers, posting events), and tests of the
body checks they rely on."""

from __future__ import annotations

import json
import time

import pytest

from flows.keys import create_key, sign
from flows.web.api import MAX_DEPTH, check_json_values, parse_json
from flows.web.auth import ApiError


def make_key(engine, name: str = "crm", *, hmac: bool = False) -> tuple[str, str, str | None]:
    """(key id, full key, signing secret or None), as `touchpoints keys create` makes them."""
    with engine.store.session() as session:
        return create_key(session, name, hmac=hmac, actor="test:admin")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def signed(key: str, secret: str, body: bytes, *, at: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if at is None else at
    return {"X-API-Key": key, "X-Touchpoints-Timestamp": str(ts),
            "X-Touchpoints-Signature": sign(secret, ts, body),
            "Content-Type": "application/json"}


def event_body(event_id: str = "crm-1", type: str = "contract.signed", **fields) -> dict:
    return {"id": event_id, "type": type, **fields}


def post_json(client, path: str, key: str, payload) -> object:
    return client.post(path, content=json.dumps(payload).encode(),
                       headers={**bearer(key), "Content-Type": "application/json"})


def error_of(response) -> dict:
    """The error object of a refusal, checked for the documented shape."""
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert {"code", "message", "hint"} <= set(error), error
    assert isinstance(error["code"], str) and isinstance(error["message"], str)
    return error


# ---------------------------------------------------------------------- the body checks
def test_a_body_that_is_not_json_is_a_400_naming_the_position():
    with pytest.raises(ApiError) as caught:
        parse_json(b'{"id": }')
    assert caught.value.status == 400
    assert "line 1 column 8" in caught.value.message


@pytest.mark.parametrize("body", [b"NaN", b'{"a": Infinity}', b'{"a": -Infinity}', b"1" * 5000,
                                  b"\xff\xfe{}", b"", b"   ", b"[" * 100_000])
def test_bodies_python_would_accept_but_json_does_not_are_400(body):
    with pytest.raises(ApiError) as caught:
        parse_json(body)
    assert caught.value.status == 400


@pytest.mark.parametrize("value, field", [
    ({"a": 2 ** 63}, "a"),
    ({"a": [-(2 ** 63) - 1]}, "a[0]"),
    ({"a": float("inf")}, "a"),
    ({"a": "nul\x00"}, "a"),
    ({"a": {"\ud800": 1}}, "a.'\\ud800'"),
    ({"a": "\udfff"}, "a"),
])
def test_values_the_store_or_prefect_cannot_hold_are_422_naming_the_field(value, field):
    with pytest.raises(ApiError) as caught:
        check_json_values(value)
    assert caught.value.status == 422
    assert caught.value.extra["fields"][0]["field"] == field


def test_nesting_is_limited_to_a_known_depth():
    ok: object = {}
    for _ in range(MAX_DEPTH - 1):
        ok = {"x": ok}
    check_json_values(ok)
    with pytest.raises(ApiError):
        check_json_values({"x": ok})


def test_ordinary_json_passes_the_checks():
    check_json_values({"plan": "Fibre 500", "regions": ["north", "east"], "amount": 12.5,
                       "count": 2 ** 63 - 1, "flag": True, "none": None, "emoji": "🙂 ünïcode"})
