"""Property: no body, however malformed, makes the API answer 5xx; every refusal has the
documented error shape; nothing refused is stored or started."""

from __future__ import annotations

import json
import random

import pytest

from tests.web.support import add_customer, add_waiting_journey, events
from tests.web.test_api_support import bearer, make_key

SEED = 20261123
FIELDS = ("id", "type", "customer_id", "data", "occurred_at")
TYPES = ("contract.signed", "outage.declared", "survey.answered", "contract.signd", "", "x" * 200)
WEIRD_STRINGS = [
    "", " ", "\x00", "\u202e", "🙂", "e\u0301", "\ufeff", "null", "C-1001", "C-1001\n",
    "'; DROP TABLE events; --", "{{ 7*7 }}", "{% raw %}", "../../etc/passwd", "\\ud800",
    "2026-02-30T00:00:00+00:00", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00",
    "2026-11-23T09:30:00Z", "2026-11-23T09:30:00", "2026-11-23", "1e999", "x" * 5000,
]
NUMBERS = ["0", "-0", "1e400", "-1e400", "1e-400", str(2 ** 63), str(-(2 ** 63) - 1),
           "9" * 4000, "1" * 5000, "NaN", "Infinity", "-Infinity", "0.1e99999", "12345678901234567890"]


def random_scalar(rng: random.Random):
    return rng.choice([
        lambda: rng.choice(WEIRD_STRINGS),
        lambda: "".join(chr(rng.randrange(0x20, 0x2FFFF)) for _ in range(rng.randrange(12)))
        .encode("utf-8", "replace").decode("utf-8", "replace"),
        lambda: rng.randint(-(2 ** 70), 2 ** 70),
        lambda: rng.random() * 10 ** rng.randrange(-10, 300),
        lambda: rng.choice([True, False, None]),
    ])()


def random_value(rng: random.Random, depth: int = 0):
    if depth > 4 or rng.random() < 0.5:
        return random_scalar(rng)
    if rng.random() < 0.5:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {str(random_scalar(rng)): random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def raw_json(rng: random.Random, value) -> bytes:
    """JSON text, sometimes with a literal Python's json would parse but others would not."""
    text = json.dumps(value, ensure_ascii=rng.random() < 0.5)
    if rng.random() < 0.3 and isinstance(value, dict):
        key = rng.choice(FIELDS + ("data",))
        literal = rng.choice(NUMBERS + ['"\\ud800"', '"\\udfff x"', '"\\u0000"', "[" * 50 + "]" * 50])
        text = text[:-1] + (", " if len(value) else "") + f'"{key}": {literal}' + "}"
    return text.encode("utf-8", "surrogatepass")


def bodies(rng: random.Random, count: int):
    for i in range(count):
        kind = i % 7
        if kind == 0:  # random bytes
            yield bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        elif kind == 1:  # any JSON value at the top
            yield raw_json(rng, random_value(rng))
        elif kind == 2:  # an event with one or more fields of the wrong type or value
            event = {"id": f"fz-{i}", "type": rng.choice(TYPES[:3]), "customer_id": "C-1001",
                     "data": {}}
            for name in rng.sample(FIELDS, rng.randrange(1, 4)):
                event[name] = random_value(rng)
            yield raw_json(rng, event)
        elif kind == 3:  # deep nesting, in and out of data
            depth = rng.choice([31, 32, 33, 100, 999, 1000, 5000, 50_000])
            inner = "[" * depth + "]" * depth if rng.random() < 0.5 else '{"a":' * depth + "1" + "}" * depth
            where = rng.random() < 0.5
            yield (f'{{"id": "fz-{i}", "type": "contract.signed", "data": {{"x": {inner}}}}}'
                   if where else inner).encode()
        elif kind == 4:  # huge or odd numbers everywhere
            literal = rng.choice(NUMBERS)
            field = rng.choice(FIELDS)
            yield (f'{{"id": "fz-{i}", "type": "outage.declared", "{field}": {literal}}}').encode()
        elif kind == 5:  # unicode in every string field
            event = {"id": rng.choice(WEIRD_STRINGS) or f"fz-{i}", "type": rng.choice(TYPES),
                     "customer_id": rng.choice(WEIRD_STRINGS + [None]),
                     "data": {rng.choice(WEIRD_STRINGS): rng.choice(WEIRD_STRINGS),
                              "journey_id": random_scalar(rng), "step_id": random_scalar(rng),
                              "result": random_value(rng)},
                     "occurred_at": rng.choice(WEIRD_STRINGS + [None])}
            yield raw_json(rng, event)
        else:  # valid JSON cut short or with garbage appended
            text = json.dumps({"id": f"fz-{i}", "type": "contract.signed", "customer_id": "C-1001"})
            yield (text[: rng.randrange(len(text))] if rng.random() < 0.5
                   else text + rng.choice(["}", "]", ",", "\x00", " {}"])).encode()


def check(response) -> None:
    assert response.status_code < 500, response.text[:500]
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str)
        assert "hint" in error


@pytest.fixture
def key(engine) -> str:
    add_customer(engine, "C-1001")
    add_waiting_journey(engine, "C-1001")
    return make_key(engine)[1]


def test_no_event_body_makes_the_api_answer_5xx(client, engine, launcher, key):
    rng = random.Random(SEED)
    statuses: dict[int, int] = {}
    accepted: set[str] = set()
    for body in bodies(rng, 700):
        response = client.post("/api/events", content=body,
                               headers={**bearer(key), "Content-Type": "application/json"})
        check(response)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        if response.status_code == 202:
            accepted.add(response.json()["event_id"])
    assert statuses.get(400) and statuses.get(422) and statuses.get(202)  # reaches every outcome
    assert {e.id for e in events(engine)} == accepted  # nothing refused was stored
    started_by = {s["event"]["id"].removesuffix(":count") for s in launcher.started}
    assert started_by <= accepted  # nothing refused was started


@pytest.mark.parametrize("route", ["/api/customers/C-2001", "/api/customers/import",
                                   "/api/journeys/j-1/cancel", "/api/customers/C-1001/journeys/cancel"])
def test_no_body_makes_the_other_api_routes_answer_5xx(client, key, route):
    rng = random.Random(f"{SEED}:{route}")
    method = client.put if route == "/api/customers/C-2001" else client.post
    for body in bodies(rng, 120):
        check(method(route, content=body, headers=bearer(key)))
    for value in [[random_value(rng) for _ in range(5)] for _ in range(40)]:
        check(method(route, content=raw_json(rng, value), headers=bearer(key)))


@pytest.mark.parametrize("path", [
    "/api/journeys?limit=-1", "/api/journeys?limit=99999999999999999999999",
    "/api/journeys?customer_id=%00", "/api/journeys?touchpoint=" + "x" * 500,
    "/api/journeys/%F0%9F%99%82/cancel", "/api/customers/%00/journeys/cancel?touchpoint=%ff",
])
def test_odd_paths_and_queries_answer_4xx_or_2xx(client, key, path):
    if "cancel" in path:
        response = client.post(path, headers=bearer(key), json={"reason": "fuzz"})
    else:
        response = client.get(path, headers=bearer(key))
    check(response)


@pytest.mark.parametrize("header", ["Bearer \u00e9", "Bearer " + "tp_" + "a" * 10_000, "\x7f",
                                    "Bearer tp_0123456789ab_" + "\u00ff" * 40])
def test_odd_authorization_headers_are_401_not_5xx(client, header):
    response = client.post("/api/events", json={"id": "x", "type": "contract.signed"},
                           headers={"Authorization": header.encode("utf-8")})  # raw bytes
    assert response.status_code == 401
