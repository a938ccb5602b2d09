"""POST /api/events on the service's outbox: concurrent posts are stored together (group
commit), each answered 202 with its own event and start once committed; a bad one among them
is refused alone, and a repeated id is answered as a duplicate."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select

from flows.store.tables import Event, WorkUnit
from tests.web.support import add_customer
from tests.web.test_api_support import bearer, event_body, make_key


def _post_all(app, key: str, bodies: list[dict]) -> list:
    from fastapi.testclient import TestClient

    with TestClient(app) as client, ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda body: client.post(
            "/api/events", content=json.dumps(body).encode(), headers=bearer(key)), bodies))


def test_concurrent_posts_are_each_answered_with_their_own_event_once_stored(app, engine,
                                                                              dispatcher):
    key = make_key(engine)[1]
    customers = [add_customer(engine, f"C-{n}") for n in range(16)]
    dispatcher.outbox = True
    bodies = [event_body(f"crm-{c}", customer_id=c) for c in customers]
    bodies += [event_body("crm-unknown", customer_id="C-404"), bodies[0]]
    responses = _post_all(app, key, bodies)
    *good, unknown, again = responses
    assert [r.status_code for r in good] == [202] * 16
    assert [r.json()["event_id"] for r in good] == [f"crm-{c}" for c in customers]
    assert all(r.json()["started"] == ["sale"] for r in good)
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "unknown_customer"
    assert again.status_code == 202 and again.json()["event_id"] == good[0].json()["event_id"]
    assert sorted([good[0].json()["duplicate"], again.json()["duplicate"]]) == [False, True]
    with engine.store.session() as session:
        assert sorted(session.scalars(select(Event.id))) == sorted(f"crm-{c}" for c in customers)
        units = session.scalars(select(WorkUnit).where(WorkUnit.kind == "start")).all()
    assert sorted(u.params["customer_id"] for u in units) == sorted(customers)
    assert dispatcher.inbox.items == 18
