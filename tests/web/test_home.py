"""The home page, the API docs and the stylesheet."""

from __future__ import annotations


def test_the_home_page_links_to_the_docs_and_the_mail_catcher(client):
    page = client.get("/")
    assert page.status_code == 200
    for href in ('href="/docs"', 'href="/openapi.json"', 'href="/mail"'):
        assert href in page.text
    assert "<script" not in page.text


def test_the_openapi_docs_are_served(client):
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert schema["info"]["title"] == "Touchpoints"
    assert not any(path.startswith(("/s/", "/t/", "/u/", "/p/", "/teams/")) for path in schema["paths"])


def test_the_events_api_is_included(app):
    assert "/api/events" in app.openapi()["paths"]


def test_the_stylesheet_is_served_locally_with_focus_styles(client):
    css = client.get("/static/touchpoints.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert ":focus-visible" in css.text
    assert "http" not in css.text  # no external fonts or images
