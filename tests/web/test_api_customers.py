"""PUT /api/customers/{id} and POST /api/customers/import keep the directory in sync with a
CRM, with the importer's checks."""

from __future__ import annotations

import pytest

from flows.store.tables import Customer, Preference
from tests.web.support import audit_rows, get
from tests.web.test_api_support import bearer, error_of, make_key, post_json

ADA = {"name": "Ada Lovelace", "email": "ada@example.com", "timezone": "Europe/London",
       "region": "north", "plan": "Fibre 500", "contract_start": "2026-01-01",
       "contract_end": "2027-12-31"}


@pytest.fixture
def key(engine) -> str:
    return make_key(engine)[1]


def put(client, key, customer_id, payload):
    return client.put(f"/api/customers/{customer_id}", json=payload, headers=bearer(key))


def test_putting_a_new_customer_creates_it_with_201(client, engine, key):
    response = put(client, key, "C-2001", ADA)
    assert response.status_code == 201, response.text
    assert response.json()["created"] is True
    assert response.json()["customer"]["contract_end"] == "2027-12-31"
    row = get(engine, Customer, "C-2001")
    assert (row.name, row.email, row.region) == ("Ada Lovelace", "ada@example.com", "north")
    [audited] = audit_rows(engine, "customer.created")
    assert audited.actor == f"api:{key.split('_')[1]}"


def test_putting_an_existing_customer_updates_it_with_200(client, engine, key):
    put(client, key, "C-2001", ADA)
    response = put(client, key, "C-2001", {**ADA, "plan": "Fibre 900", "vip": True})
    assert response.status_code == 200
    assert response.json()["created"] is False
    row = get(engine, Customer, "C-2001")
    assert row.plan == "Fibre 900" and row.attributes == {"vip": True}


def test_putting_the_same_customer_twice_changes_nothing_the_second_time(client, engine, key):
    put(client, key, "C-2001", ADA)
    put(client, key, "C-2001", ADA)
    assert len(audit_rows(engine, "customer.created")) == 1
    assert audit_rows(engine, "customer.updated") == []


def test_an_unsubscribe_from_the_crm_turns_the_category_off(client, engine, key):
    put(client, key, "C-2001", {**ADA, "unsubscribed": ["marketing"]})
    with engine.store.session() as session:
        pref = session.get(Preference, ("C-2001", "marketing"))
        assert pref is not None and pref.subscribed is False


@pytest.mark.parametrize("payload, words", [
    ({**ADA, "email": "not-an-address"}, "email"),
    ({k: v for k, v in ADA.items() if k != "name"}, "name"),
    ({**ADA, "timezone": "Mars/Olympus"}, "timezone"),
    ({**ADA, "contract_end": "2025-01-01"}, "contract_end"),
    ({**ADA, "contract_start": "soon"}, "contract_start"),
    ({**ADA, "unsubscribed": ["no-such-category"]}, "no-such-category"),
])
def test_an_invalid_customer_is_a_422_with_the_importers_reason(client, engine, key, payload, words):
    response = put(client, key, "C-2001", payload)
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "invalid_customer"
    assert words in error["message"]
    assert get(engine, Customer, "C-2001") is None


def test_an_id_in_the_body_must_match_the_url(client, engine, key):
    response = put(client, key, "C-2001", {**ADA, "id": "C-9999"})
    assert response.status_code == 422
    assert get(engine, Customer, "C-2001") is None and get(engine, Customer, "C-9999") is None


def test_a_customer_body_that_is_not_an_object_is_a_422(client, key):
    response = client.put("/api/customers/C-2001", content=b"[1, 2]",
                          headers={**bearer(key), "Content-Type": "application/json"})
    assert response.status_code == 422


def test_an_import_keeps_the_good_rows_and_lists_the_bad_ones(client, engine, key):
    rows = [
        {"id": "C-3001", **ADA},
        {"id": "C-3002", **ADA, "email": "broken"},
        "not an object",
        {"id": "C-3003", **ADA, "name": "Grace Hopper"},
        {"id": "C-3001", **ADA},
    ]
    response = post_json(client, "/api/customers/import", key, rows)
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["received"], report["created"], report["rejected"]) == (5, 2, 3)
    assert [e["index"] for e in report["errors"]] == [1, 2, 4]
    assert "email" in report["errors"][0]["reason"]
    assert "twice" in report["errors"][2]["reason"]
    assert get(engine, Customer, "C-3001") is not None and get(engine, Customer, "C-3003") is not None
    assert get(engine, Customer, "C-3002") is None
    [audited] = audit_rows(engine, "customers.imported")
    assert audited.actor == f"api:{key.split('_')[1]}" and audited.result == "partial"


def test_importing_the_same_rows_again_changes_nothing(client, key):
    rows = [{"id": "C-3001", **ADA}]
    post_json(client, "/api/customers/import", key, rows)
    report = post_json(client, "/api/customers/import", key, rows).json()
    assert (report["created"], report["updated"], report["unchanged"]) == (0, 0, 1)


@pytest.mark.parametrize("body", [b"{}", b'"rows"', b"{"])
def test_an_import_body_that_is_not_a_json_array_is_refused(client, key, body):
    response = client.post("/api/customers/import", content=body,
                           headers={**bearer(key), "Content-Type": "application/json"})
    assert response.status_code in (400, 422)
    error_of(response)


def test_an_empty_import_is_fine(client, key):
    report = post_json(client, "/api/customers/import", key, []).json()
    assert report["received"] == 0 and report["errors"] == []


def test_an_import_may_be_larger_than_an_event_but_not_unbounded(client, key):
    rows = [{"id": f"C-{4000 + i}", **ADA} for i in range(1500)]  # about 300 KiB
    response = post_json(client, "/api/customers/import", key, rows)
    assert response.status_code == 200 and response.json()["created"] == 1500
    huge = b"[" + b",".join([b'{"id": "C-1", "name": "' + b"x" * 1000 + b'"}'] * 9000) + b"]"
    response = client.post("/api/customers/import", content=huge,
                           headers={**bearer(key), "Content-Type": "application/json"})
    assert response.status_code == 413
