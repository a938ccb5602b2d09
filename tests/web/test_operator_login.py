"""Off loopback, /mail, /mail/{id} and the team task lists need an operator login with an API
key; on loopback they stay open."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from flows import teamlinks
from flows.keys import revoke_key
from flows.web.app import create_app
from flows.web.operator import COOKIE, is_loopback, safe_next
from tests.web.support import audit_rows, csrf_token, path_of
from tests.web.test_api_support import make_key
from tests.web.test_mail_pages import catch


@pytest.fixture
def public(engine, dispatcher):
    """The app as `touchpoints serve` builds it with TOUCHPOINTS_WEB_HOST=0.0.0.0."""
    with TestClient(create_app(engine, dispatcher, bind_host="0.0.0.0")) as client:
        yield client


@pytest.fixture
def team_url(engine) -> str:
    with engine.store.session() as session:
        return path_of(teamlinks.url_for(engine.signer, teamlinks.mint(
            session, "install", days=30, actor="test:ops")))


def log_in(client, key: str, next_: str = "/mail"):
    form = client.get("/login", params={"next": next_})
    return client.post("/login", data={"key": key, "next": next_,
                                       "csrf_token": csrf_token(form.text)},
                       follow_redirects=False)


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("::", False), ("", False), ("10.0.0.5", False),
    ("touchpoints.example", False),
])
def test_which_bind_hosts_count_as_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_on_loopback_the_pages_stay_open(client, engine, team_url):
    mail_id = catch(engine, subject="Hello")
    assert client.get("/mail").status_code == 200
    assert client.get(f"/mail/{mail_id}").status_code == 200
    assert client.get(team_url).status_code == 200


def test_off_loopback_every_operator_page_sends_you_to_the_login(public, engine, team_url):
    mail_id = catch(engine, subject="Private <stuff>")
    for path in ("/mail", f"/mail/{mail_id}", team_url):
        response = public.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login?next=%2F")
        assert "Private" not in response.text


def test_the_bind_host_comes_from_the_web_host_setting(engine, dispatcher, monkeypatch):
    monkeypatch.setattr(engine, "settings", engine.settings.model_copy(update={"web_host": "0.0.0.0"}))
    with TestClient(create_app(engine, dispatcher)) as client:
        assert client.get("/mail", follow_redirects=False).status_code == 303


def test_web_login_always_asks_even_on_loopback(engine, dispatcher, monkeypatch):
    monkeypatch.setattr(engine, "settings", engine.settings.model_copy(update={"web_login": "always"}))
    with TestClient(create_app(engine, dispatcher)) as client:
        assert client.get("/mail", follow_redirects=False).status_code == 303


def test_a_login_with_an_api_key_opens_the_pages_with_a_strict_httponly_cookie(public, engine,
                                                                             team_url):
    key_id, key, _ = make_key(engine, "ops")
    catch(engine, subject="Welcome")

    response = log_in(public, key, next_=team_url)

    assert response.status_code == 303 and response.headers["location"] == team_url
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie
    assert "samesite=strict" in cookie.lower() and key not in cookie
    assert public.get(team_url).status_code == 200
    assert "Welcome" in public.get("/mail").text
    [row] = audit_rows(engine, "operator.login")
    assert row.actor == f"api:{key_id}"


def test_revoking_the_key_ends_its_sessions(public, engine):
    key_id, key, _ = make_key(engine, "ops")
    log_in(public, key)
    assert public.get("/mail").status_code == 200
    with engine.store.session() as session:
        revoke_key(session, key_id, actor="test:admin")
    assert public.get("/mail", follow_redirects=False).status_code == 303


def test_a_forged_session_cookie_does_not_log_you_in(public, engine):
    key_id, _, _ = make_key(engine, "ops")
    from itsdangerous import URLSafeTimedSerializer

    for forged in (f'{{"key": "{key_id}"}}',
                   URLSafeTimedSerializer("not-our-secret", salt="touchpoints:operator")
                   .dumps({"key": key_id})):
        public.cookies.set(COOKIE, forged)
        assert public.get("/mail", follow_redirects=False).status_code == 303


def test_a_wrong_key_is_refused_and_audited_and_repeated_failures_get_429(public, engine):
    key_id, key, _ = make_key(engine, "ops")
    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    response = log_in(public, wrong)
    assert response.status_code == 401 and "not valid" in response.text
    assert COOKIE not in public.cookies
    [row] = audit_rows(engine, "auth.failed")
    assert row.actor == f"api:{key_id}" and row.detail["count"] == 1
    statuses = [log_in(public, wrong).status_code for _ in range(12)]
    assert 429 in statuses
    limited = log_in(public, wrong)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1


def test_a_login_without_the_forms_token_is_refused(public, engine):
    _, key, _ = make_key(engine, "ops")
    response = public.post("/login", data={"key": key, "next": "/mail"}, follow_redirects=False)
    assert response.status_code == 403 and COOKIE not in public.cookies


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example", "/\\evil",
                                    "mail", "", "/ok\r\nSet-Cookie: x"])
def test_the_login_only_redirects_to_this_site(target):
    assert safe_next(target) == "/mail"


def test_logging_out_clears_the_session(public, engine):
    _, key, _ = make_key(engine, "ops")
    log_in(public, key)
    page = public.get("/login")
    assert "Log out" in page.text
    public.post("/logout", data={"csrf_token": csrf_token(page.text)})
    assert public.get("/mail", follow_redirects=False).status_code == 303


def test_on_https_the_session_cookie_is_secure(engine, dispatcher, monkeypatch):
    monkeypatch.setattr(engine, "settings", engine.settings.model_copy(
        update={"base_url": "https://touchpoints.example"}))
    _, key, _ = make_key(engine, "ops")
    with TestClient(create_app(engine, dispatcher, bind_host="0.0.0.0"),
                    base_url="https://touchpoints.example") as client:
        response = log_in(client, key)
        assert "secure" in response.headers["set-cookie"].lower()


@given(st.text(max_size=300))
def test_no_next_value_leads_off_this_site(value):
    target = safe_next(value)
    assert target.startswith("/") and not target.startswith("//") and "\\" not in target
    assert target == value or target == "/mail"
    assert not any(ord(c) < 0x20 for c in target)
