"""Operator login for the pages that show other people's data: /mail, /mail/{id} and the team
task lists /teams/{token}.

While the web app listens on loopback only (``TOUCHPOINTS_WEB_HOST`` 127.0.0.1, ::1 or
localhost) these pages stay open: only someone on the machine reaches them. Bound to anything
else (or with ``TOUCHPOINTS_WEB_LOGIN=always``, e.g. behind a reverse proxy on the same
machine) they need a login with an existing API key:

* ``GET /login`` shows the form, ``POST /login`` (CSRF-checked, failures limited and audited
  like API failures: flows/web/ratelimit.py) checks the key and sets the cookie ``tp_operator``:
  the key's id signed with itsdangerous (HttpOnly, SameSite=Strict, Secure on https), valid
  ``SESSION_SECONDS``; ``POST /logout`` clears it. The login is audited (``operator.login``).
* every request re-checks the key: revoking it (``touchpoints keys revoke``) ends its sessions.
"""

from __future__ import annotations

import ipaddress
import logging
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.concurrency import run_in_threadpool

from flows import keys as api_keys
from flows.web import auth
from flows.web.pages import check_csrf, engine_of, forbidden, read_form, reading, redirect, render

log = logging.getLogger(__name__)

COOKIE = "tp_operator"
SESSION_SECONDS = 12 * 3600
router = APIRouter(include_in_schema=False)


def is_loopback(host: str | None) -> bool:
    host = (host or "").strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name or 0.0.0.0/:: (every interface): not loopback


def login_required(request: Request) -> bool:
    app = request.app
    if getattr(engine_of(request).settings, "web_login", "auto") == "always":
        return True
    return not is_loopback(getattr(app.state, "bind_host", None))


def _serializer(request: Request) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(engine_of(request).signer.secret, salt="touchpoints:operator")


def _live_key(engine, key_id: str) -> bool:
    from flows.store.tables import ApiKey

    with reading(engine) as session:
        row = session.get(ApiKey, key_id)
        return row is not None and row.revoked_at is None


def operator_of(request: Request) -> str | None:
    """The key id of the logged-in operator, or None."""
    cookie = request.cookies.get(COOKIE)
    if not cookie or len(cookie) > 500:
        return None
    try:
        claims = _serializer(request).loads(cookie, max_age=SESSION_SECONDS)
    except BadSignature:
        return None
    key_id = claims.get("key") if isinstance(claims, dict) else None
    if not isinstance(key_id, str) or not _live_key(engine_of(request), key_id):
        return None
    return key_id


def safe_next(value: str | None) -> str:
    """Only a path on this site: never //host or a scheme, so the login redirects nowhere else."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value \
            or any(ord(c) < 0x20 for c in value) or len(value) > 2000:
        return "/mail"
    return value


def gate(request: Request) -> Response | None:
    """None when the page may be shown, else the redirect to the login form."""
    if not login_required(request) or operator_of(request) is not None:
        return None
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return redirect("/login?next=" + quote(path, safe=""))


def _form(request: Request, *, next_: str, error: str | None = None, status: int = 200,
          wait: int | None = None) -> Response:
    response = render(request, "login.html", {"next": safe_next(next_), "error": error,
                                              "required": login_required(request),
                                              "operator": None if error else operator_of(request)},
                      status=status, form=True)
    if wait:
        response.headers["Retry-After"] = str(wait)
    return response


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str | None = None) -> Response:
    operator = operator_of(request)
    if operator is not None and next:
        return redirect(safe_next(next))
    return _form(request, next_=next or "/mail")


def _accept(engine, presented: str) -> str | None:
    from flows.store import audit

    with engine.store.session() as session:
        row = api_keys.verify_key(session, presented)
        if row is None:
            return None
        audit.record(session, action="operator.login", result="ok",
                     actor=api_keys.actor_for(row.id), reason=f"web login with API key {row.id}",
                     detail={"key_id": row.id})
        return row.id


@router.post("/login")
async def login(request: Request) -> Response:
    form = await read_form(request)
    if form is None or not check_csrf(request, form):
        return forbidden(request, "/login")
    next_ = form.get("next") if isinstance(form.get("next"), str) else None
    wait = auth.blocked_for(request)
    presented = form.get("key") if isinstance(form.get("key"), str) else ""
    presented = presented.strip()
    if wait:
        await auth.count_failure(request, presented, "address over its limit", blocked=True)
        return _form(request, next_=next_, status=429, wait=wait,
                     error=f"too many failed logins; try again in {wait} s")
    key_id = await run_in_threadpool(_accept, engine_of(request), presented) if presented else None
    if key_id is None:
        wait = await auth.count_failure(request, presented, "web login")
        if wait:
            return _form(request, next_=next_, status=429, wait=wait,
                         error=f"too many failed logins; try again in {wait} s")
        return _form(request, next_=next_, status=401,
                     error="that API key is not valid (unknown, wrong or revoked)")
    response = redirect(safe_next(next_))
    response.set_cookie(COOKIE, _serializer(request).dumps({"key": key_id}),
                        max_age=SESSION_SECONDS, path="/", httponly=True, samesite="strict",
                        secure=request.app.state.csrf.secure)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    form = await read_form(request)
    if form is None or not check_csrf(request, form):
        return forbidden(request, "/login")
    response = redirect("/login")
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict",
                           secure=request.app.state.csrf.secure)
    return response
