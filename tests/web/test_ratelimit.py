"""Failed authentications are limited per key id and address, and audited in aggregate."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from flows.web.ratelimit import OVERFLOW, FailedAuthLimiter, address_subject
from tests.web.support import audit_rows
from tests.web.test_api_support import bearer, event_body, make_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def counted(rows) -> int:
    return sum(r["detail"]["count"] for r in rows)


@pytest.fixture
def tick():
    return Clock()


def limiter(tick, **kw) -> FailedAuthLimiter:
    return FailedAuthLimiter(**{"window_s": 60, "per_key": 3, "per_address": 5,
                                "monotonic": tick, **kw})


def test_a_key_over_its_limit_gets_a_wait_until_its_window_closes(tick):
    lim = limiter(tick, per_address=100)
    waits = []
    for _ in range(5):
        waits.append(lim.failure(address="10.0.0.1", key_id="k1", reason="wrong")[0])
        tick.now += 10
    assert waits[:3] == [None, None, None]
    assert waits[3:] == [30, 20]  # the window opened at the first failure
    tick.now += 20
    assert lim.failure(address="10.0.0.1", key_id="k1", reason="wrong")[0] is None


def test_an_address_over_its_limit_is_blocked_before_any_lookup(tick):
    lim = limiter(tick)
    for i in range(5):
        assert lim.blocked("10.0.0.2") is None
        lim.failure(address="10.0.0.2", key_id=None, reason="wrong")
    assert lim.blocked("10.0.0.2") == 60
    assert lim.blocked("10.0.0.3") is None
    tick.now += 60
    assert lim.blocked("10.0.0.2") is None


def test_the_audit_is_one_row_at_the_first_failure_and_one_at_the_close(tick):
    lim = limiter(tick)
    rows = []
    for _ in range(40):
        rows += lim.failure(address="10.0.0.4", key_id="k1", reason="wrong")[1]
    assert [r["detail"]["count"] for r in rows] == [1]
    assert rows[0]["actor"] == "api:k1" and rows[0]["detail"]["window"] == "open"
    assert lim.due() == []
    tick.now += 60
    closed = lim.due()
    assert [r["detail"]["count"] for r in closed] == [39]
    assert closed[0]["detail"]["window_s"] == 60 and closed[0]["detail"]["reasons"] == {"wrong": 40}  # the whole window
    assert len(lim) == 0


def test_failures_without_a_known_key_are_audited_under_the_address(tick):
    lim = limiter(tick)
    rows = lim.failure(address="10.0.0.5", key_id=None, reason="no key")[1]
    rows += lim.failure(address="10.0.0.5", key_id=None, reason="no key")[1]
    rows += lim.drain()
    assert [(r["actor"], r["detail"]["address"], r["detail"]["count"]) for r in rows] == [
        ("anonymous", "10.0.0.5", 1), ("anonymous", "10.0.0.5", 1)]


def test_ipv6_addresses_are_limited_by_their_64(tick):
    assert address_subject("2001:db8:1:2::1") == address_subject("2001:db8:1:2:ffff::9")
    assert address_subject("::ffff:10.0.0.1") == "10.0.0.1"
    lim = limiter(tick)
    for i in range(5):
        lim.failure(address=f"2001:db8:1:2::{i + 1}", key_id=None, reason="wrong")
    assert lim.blocked("2001:db8:1:2::99") is not None


def test_the_table_is_bounded_and_the_overflow_keeps_the_count(tick):
    lim = limiter(tick, max_subjects=50)
    rows = []
    for i in range(5000):
        wait, new = lim.failure(address=f"10.1.{i // 250}.{i % 250}", key_id=None, reason="x")
        rows += new
        assert wait is None  # the shared overflow window never limits
    assert len(lim) <= 51 and (OVERFLOW in lim._windows)
    rows += lim.drain()
    assert counted(rows) == 5000
    assert len(rows) <= 2 * 51


def test_rows_that_could_not_be_written_come_back_collapsed_with_their_count(tick):
    lim = limiter(tick)
    lost = [lim.failure(address=f"10.2.{i // 250}.{i % 250}", key_id=None, reason="x")[1][0]
            for i in range(30)]
    lim.unwritten(lost * 50)  # 1500 rows of count 1: more than it keeps one by one
    rows = lim.drain()
    assert counted(rows) == 1500
    assert len(rows) == 1 and rows[0]["detail"]["collapsed"]


def test_300_bad_requests_give_429s_and_a_few_audit_rows_with_the_right_count(engine, app):
    key_id, key, _ = make_key(engine)
    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    statuses = []
    started = time.monotonic()
    with TestClient(app) as client:
        for _ in range(300):
            response = client.post("/api/events", json=event_body(), headers=bearer(wrong))
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert 1 <= int(response.headers["Retry-After"]) <= 60
                assert response.json()["error"]["code"] == "too_many_failures"
        assert client.get("/api/journeys", headers=bearer(key)).status_code == 429  # same address
        mid = audit_rows(engine, "auth.failed")
        assert len(mid) == 2  # the first failure of the key and of the address, at once
    elapsed = time.monotonic() - started
    assert statuses[:10] == [401] * 10 and set(statuses[10:]) == {429}
    rows = audit_rows(engine, "auth.failed")  # the shutdown closed the windows
    assert len(rows) <= 4
    assert sum(r.detail["count"] for r in rows) == 301
    assert sum(r.detail["count"] for r in rows if r.actor == f"api:{key_id}") == 30
    assert all(r.detail["window_s"] == 60 for r in rows)
    assert elapsed < 10


def test_a_flood_against_a_key_id_does_not_lock_out_its_owner(engine, app):
    _, key, _ = make_key(engine)
    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    attacker = TestClient(app, client=("203.0.113.9", 5000))
    owner = TestClient(app, client=("198.51.100.7", 5000))
    for _ in range(40):
        attacker.get("/api/journeys", headers=bearer(wrong))
    assert attacker.get("/api/journeys", headers=bearer(wrong)).status_code == 429
    assert owner.get("/api/journeys", headers=bearer(key)).status_code == 200
    assert owner.get("/api/journeys", headers=bearer(wrong)).status_code == 429  # the key's limit


def test_the_app_closes_windows_as_they_run_out_while_it_serves(engine, dispatcher, monkeypatch):
    from flows.web.app import create_app

    monkeypatch.setattr(engine, "settings", engine.settings.model_copy(
        update={"auth_failure_window_seconds": 0.2}))
    key_id, key, _ = make_key(engine)
    with TestClient(create_app(engine, dispatcher)) as client:
        for _ in range(5):
            client.get("/api/journeys", headers=bearer(key + "x"))
        deadline = time.monotonic() + 10
        while len(audit_rows(engine, "auth.failed")) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # the app's own task writes the closing row; nothing here does
        rows = audit_rows(engine, "auth.failed")
    assert [r.detail["count"] for r in rows] == [1, 4]
    assert rows[1].detail["window"] == "closed" and rows[1].actor == f"api:{key_id}"
