"""Unsubscribe (/u) and email preference (/p) pages.

``POST /u/{token}`` with the RFC 8058 body ``List-Unsubscribe=One-Click`` comes from a mail
client, not from our page: it carries no CSRF cookie and is accepted on the signed token
alone. Every other POST is CSRF-checked. Transactional categories can't be turned off.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from flows import actions
from flows.errors import NotFoundError
from flows.store.tables import Customer
from flows.web.pages import (
    check_csrf,
    claims,
    engine_of,
    forbidden,
    read_form,
    reading,
    redirect,
    render,
    unavailable,
)

router = APIRouter(include_in_schema=False)


def mask(email: str) -> str:
    """j•••@example.com: enough to recognise, not enough to harvest from a forwarded link."""
    local, at, domain = (email or "").partition("@")
    if not at:
        return "your address"
    return f"{local[:1]}•••@{domain}"


def _customer(request: Request, customer_id: Any) -> dict[str, Any] | None:
    if not isinstance(customer_id, str):
        return None
    with reading(engine_of(request)) as session:
        row = session.get(Customer, customer_id)
        if row is None:
            return None
        return {"id": row.id, "email": mask(row.email)}


def _preferences_href(request: Request, customer_id: str) -> str:
    return "/p/" + engine_of(request).signer.token("preferences", customer=customer_id)


# --------------------------------------------------------------------------- unsubscribe
def _unsubscribe_context(request: Request, token: str) -> dict[str, Any] | None:
    found = claims(request, "unsubscribe", token)
    if not found:
        return None
    category = found.get("category")
    config = engine_of(request).config
    if not isinstance(category, str) or category not in config.categories:
        return None
    customer = _customer(request, found.get("customer"))
    if customer is None:
        return None
    return {"token": token, "customer_id": customer["id"], "email": customer["email"],
            "category": category,
            "description": config.categories[category].description or category,
            "transactional": bool(config.categories[category].transactional),
            "preferences_href": _preferences_href(request, customer["id"])}


@router.get("/u/{token}", response_class=HTMLResponse)
def unsubscribe_page(request: Request, token: str) -> Response:
    context = _unsubscribe_context(request, token)
    if context is None:
        return unavailable(request)
    if context["transactional"]:
        context.update(state="refused",
                       refusal=actions.transactional_refusal(engine_of(request).config,
                                                             context["category"]))
        return render(request, "unsubscribe.html", context)
    return render(request, "unsubscribe.html", {**context, "state": "confirm"}, form=True)


def _unsubscribe(request: Request, token: str, source: str) -> Response:
    context = _unsubscribe_context(request, token)
    if context is None:
        return unavailable(request)
    try:
        result = actions.unsubscribe(engine_of(request), context["customer_id"],
                                     context["category"], source=source, actor="web")
    except NotFoundError:
        return unavailable(request)
    if result.refused:
        context.update(state="refused", refusal=result.refused[context["category"]])
    else:
        context["state"] = "done" if result.changed else "already"
    return render(request, "unsubscribe.html", context)


@router.post("/u/{token}", response_class=HTMLResponse)
async def unsubscribe_post(request: Request, token: str) -> Response:
    form = await read_form(request)
    if form is not None and form.get("List-Unsubscribe") == "One-Click":
        return await run_in_threadpool(_unsubscribe, request, token, "one-click")
    if form is None or not check_csrf(request, form):
        return forbidden(request, f"/u/{token}")
    return await run_in_threadpool(_unsubscribe, request, token, "unsubscribe-page")


# --------------------------------------------------------------------------- preferences
def _preferences_context(request: Request, token: str) -> dict[str, Any] | None:
    found = claims(request, "preferences", token)
    if not found:
        return None
    customer = _customer(request, found.get("customer"))
    if customer is None:
        return None
    engine = engine_of(request)
    with reading(engine) as session:
        current = actions.subscriptions(session, engine.config, customer["id"])
    optional, essential = [], []
    for name, cat in engine.config.categories.items():
        item = {"name": name, "description": cat.description or name,
                "subscribed": current.get(name, True)}
        (essential if cat.transactional else optional).append(item)
    return {"token": token, "customer_id": customer["id"], "email": customer["email"],
            "optional": optional, "essential": essential}


@router.get("/p/{token}", response_class=HTMLResponse)
def preferences_page(request: Request, token: str, saved: str | None = None) -> Response:
    context = _preferences_context(request, token)
    if context is None:
        return unavailable(request)
    context["saved"] = saved == "1"
    return render(request, "preferences.html", context, form=True)


def _save_preferences(request: Request, token: str, form) -> Response:
    context = _preferences_context(request, token)
    if context is None:
        return unavailable(request)
    ticked = {v for v in form.getlist("subscribed") if isinstance(v, str)}
    choices = {c["name"]: c["name"] in ticked for c in context["optional"]}
    try:
        result = actions.set_preferences(engine_of(request), context["customer_id"], choices,
                                         actor="web", source="preferences-page")
    except NotFoundError:
        return unavailable(request)
    if result.refused:  # only possible if the config changed under the form
        context = _preferences_context(request, token) or context
        context["refused"] = "; ".join(result.refused.values())
        return render(request, "preferences.html", context, status=409, form=True)
    return redirect(f"/p/{token}?saved=1")


@router.post("/p/{token}", response_class=HTMLResponse)
async def preferences_post(request: Request, token: str) -> Response:
    form = await read_form(request)
    if form is None or not check_csrf(request, form):
        return forbidden(request, f"/p/{token}")
    return await run_in_threadpool(_save_preferences, request, token, form)
