"""Unsubscribe (/u/{token}, with RFC 8058 one-click) and preferences (/p/{token})."""

from __future__ import annotations

import re

import pytest

from flows.store.tables import Preference
from tests.web.support import add_customer, audit_rows, csrf_token, get, path_of


@pytest.fixture
def customer(engine):
    return add_customer(engine)


def unsubscribe_url(engine, customer: str, category: str) -> str:
    return path_of(engine.signer.url("unsubscribe", customer=customer, category=category))


def preferences_url(engine, customer: str) -> str:
    return path_of(engine.signer.url("preferences", customer=customer))


def subscribed(engine, customer: str, category: str) -> bool:
    row = get(engine, Preference, (customer, category))
    return True if row is None else row.subscribed


def test_the_unsubscribe_link_asks_first_and_changes_nothing(client, engine, customer):
    page = client.get(unsubscribe_url(engine, customer, "surveys"))
    assert page.status_code == 200
    assert "Unsubscribe from these emails?" in page.text
    assert "a•••@example.com" in page.text and "ada@example.com" not in page.text
    assert subscribed(engine, customer, "surveys")
    assert audit_rows(engine, "preference.changed") == []


def test_confirming_unsubscribes_and_audits(client, engine, customer):
    url = unsubscribe_url(engine, customer, "surveys")
    token = csrf_token(client.get(url).text)
    response = client.post(url, data={"csrf_token": token})
    assert response.status_code == 200 and "You're unsubscribed" in response.text
    assert not subscribed(engine, customer, "surveys")
    assert subscribed(engine, customer, "marketing")
    [row] = audit_rows(engine, "preference.changed")
    assert (row.actor, row.result, row.customer_id) == ("web", "unsubscribed", customer)
    assert row.detail["source"] == "unsubscribe-page"


def test_the_confirm_form_needs_the_csrf_token(client, engine, customer):
    url = unsubscribe_url(engine, customer, "surveys")
    client.get(url)
    assert client.post(url, data={}).status_code == 403
    assert client.post(url, data={"csrf_token": "x"},
                       headers={"Origin": "https://evil.example"}).status_code == 403
    assert subscribed(engine, customer, "surveys")


def test_one_click_unsubscribe_from_a_mail_client_works_without_a_cookie(client, engine, customer):
    url = unsubscribe_url(engine, customer, "marketing")
    response = client.post(url, content="List-Unsubscribe=One-Click",
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200
    assert not subscribed(engine, customer, "marketing")
    [row] = audit_rows(engine, "preference.changed")
    assert row.detail["source"] == "one-click"
    again = client.post(url, data={"List-Unsubscribe": "One-Click"})
    assert again.status_code == 200 and "already" in again.text


def test_transactional_categories_cannot_be_turned_off(client, engine, customer):
    url = unsubscribe_url(engine, customer, "outage")
    page = client.get(url)
    assert page.status_code == 200 and "can't be turned off" in page.text
    assert "csrf_token" not in page.text
    one_click = client.post(url, data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200 and "can't be turned off" in one_click.text
    assert subscribed(engine, customer, "outage")
    assert get(engine, Preference, (customer, "outage")) is None
    [row] = audit_rows(engine, "preference.changed")
    assert row.result == "refused"


def test_a_forged_or_foreign_unsubscribe_link_gets_the_polite_page(client, engine, customer):
    assert client.get("/u/forged").status_code == 410
    assert client.post("/u/forged", data={"List-Unsubscribe": "One-Click"}).status_code == 410
    for claims in ({"customer": "C-404", "category": "surveys"},
                   {"customer": customer, "category": "no-such-category"}):
        token = engine.signer.token("unsubscribe", **claims)
        assert client.get(f"/u/{token}").status_code == 410


def test_the_preferences_page_has_a_checkbox_per_optional_category(client, engine, customer):
    page = client.get(preferences_url(engine, customer))
    assert page.status_code == 200
    optional = [n for n, c in engine.config.categories.items() if not c.transactional]
    essential = [n for n, c in engine.config.categories.items() if c.transactional]
    boxes = re.findall(r'<input type="checkbox" id="cat-([^"]+)" name="subscribed" value="[^"]+" checked',
                       page.text)
    assert boxes == optional
    for name in optional:
        assert f'<label for="cat-{name}">' in page.text
    for name in essential:
        assert f'value="{name}"' not in page.text
    assert "<legend>" in page.text


def test_saving_preferences_turns_unticked_categories_off_and_ticked_on(client, engine, customer):
    url = preferences_url(engine, customer)
    token = csrf_token(client.get(url).text)
    optional = [n for n, c in engine.config.categories.items() if not c.transactional]
    keep, drop = optional[0], optional[1:]

    response = client.post(url, data={"csrf_token": token, "subscribed": [keep]},
                           follow_redirects=False)

    assert response.status_code == 303 and response.headers["location"] == f"{url}?saved=1"
    assert subscribed(engine, customer, keep)
    assert not any(subscribed(engine, customer, name) for name in drop)
    page = client.get(response.headers["location"]).text
    assert "Saved" in page
    assert f'id="cat-{drop[0]}" name="subscribed" value="{drop[0]}" aria' in page
    rows = audit_rows(engine, "preference.changed")
    assert {r.detail["category"] for r in rows} == set(drop)
    token = csrf_token(page)
    client.post(url, data={"csrf_token": token, "subscribed": optional})
    assert all(subscribed(engine, customer, name) for name in optional)


def test_saving_preferences_needs_the_csrf_token(client, engine, customer):
    url = preferences_url(engine, customer)
    client.get(url)
    assert client.post(url, data={"subscribed": []}).status_code == 403
    optional = [n for n, c in engine.config.categories.items() if not c.transactional]
    assert all(subscribed(engine, customer, name) for name in optional)
