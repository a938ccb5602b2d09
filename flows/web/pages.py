"""Customer- and team-facing pages: surveys (/s), tasks (/t) and team task lists (/teams).

Every page is server-rendered (Jinja2, autoescaped), works without JavaScript and loads only
/static/touchpoints.css. GET never changes state; every form POST is CSRF-checked
(flows/web/csrf.py). A link that is forged, expired, for another purpose or already used gets
the same polite page with the same status (410), so the page never tells which case it was.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from flows import actions, clock, teamlinks
from flows.errors import NotFoundError
from flows.links import InvalidLink
from flows.store.tables import Customer, Survey, Task
from flows.web.csrf import CSRFError

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
UNAVAILABLE_STATUS = 410  # forged, expired and used links all get this, with the same page
MAX_FORM_BYTES = 64 * 1024
CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")

router = APIRouter(include_in_schema=False)


# --------------------------------------------------------------------------- rendering
def make_templates() -> Jinja2Templates:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES_DIR)),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True)
    return Jinja2Templates(env=env)


def engine_of(request: Request):
    return request.app.state.engine


def company(engine) -> dict[str, Any]:
    d = engine.config.defaults
    return {"name": getattr(d, "company_name", None) or "Touchpoints", "reply_to": d.reply_to,
            "postal_address": d.postal_address}


def reading(engine):
    """A read-only session: on SQLite it does not take the write lock, so pages never hold up
    the engine's writers."""
    store = engine.store
    return getattr(store, "read_session", store.session)()


def security_headers(response: Response, csp: str = CSP) -> Response:
    response.headers["Content-Security-Policy"] = csp
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    return response


def render(request: Request, name: str, context: dict[str, Any] | None = None, *,
           status: int = 200, form: bool = False, csp: str = CSP) -> Response:
    """Render a page; ``form=True`` issues the CSRF token (hidden field + cookie)."""
    app = request.app
    ctx = {"company": company(engine_of(request)), **(context or {})}
    token = None
    if form:
        token = app.state.csrf.token_for(request)
        ctx["csrf_token"] = token
    response = app.state.templates.TemplateResponse(request, name, ctx, status_code=status)
    if token:
        app.state.csrf.set_cookie(response, token)
    return security_headers(response, csp)


def unavailable(request: Request) -> Response:
    return render(request, "unavailable.html", status=UNAVAILABLE_STATUS)


def forbidden(request: Request, back: str | None) -> Response:
    return render(request, "forbidden.html", {"back": back}, status=403)


def redirect(url: str) -> Response:
    return security_headers(RedirectResponse(url, status_code=303))


async def read_form(request: Request):
    """The posted form, refusing bodies over MAX_FORM_BYTES (pages post a few fields)."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_FORM_BYTES:
        return None
    return await request.form(max_files=0, max_fields=50, max_part_size=MAX_FORM_BYTES)


def check_csrf(request: Request, form) -> bool:
    try:
        request.app.state.csrf.check(request, form)
    except CSRFError as exc:
        log.info("refused a form POST to %s: %s", request.url.path, exc)
        return False
    return True


def claims(request: Request, purpose: str, token: str) -> dict[str, Any] | None:
    try:
        return engine_of(request).signer.verify(purpose, token)
    except InvalidLink:
        return None


def text_field(form, name: str) -> str | None:
    value = form.get(name) if form is not None else None
    return value if isinstance(value, str) else None


# --------------------------------------------------------------------------- time
def zone(engine) -> ZoneInfo:
    try:
        return ZoneInfo(engine.config.defaults.timezone or "UTC")
    except (ValueError, KeyError):  # an unknown zone shows UTC rather than breaking the page
        return ZoneInfo("UTC")


def local(engine, moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(zone(engine)).strftime("%a %-d %b %Y, %H:%M %Z")


def due_state(due_at: datetime, created_at: datetime | None, now: datetime) -> dict[str, str]:
    """{kind: overdue|soon|due, label} for the due badge."""
    if due_at <= now:
        return {"kind": "overdue", "label": f"Overdue by {actions.human_duration(now - due_at)}"}
    left = due_at - now
    span = (due_at - created_at) if created_at and created_at < due_at else timedelta(days=1)
    soon = left <= max(timedelta(hours=1), span / 4)
    return {"kind": "soon" if soon else "due", "label": f"Due in {actions.human_duration(left)}"}


def escalation_when(after: Any) -> str:
    try:
        seconds = float(after or 0)
    except (TypeError, ValueError):
        return f"{after} after it falls overdue"
    if seconds <= 0:
        return "as soon as it is overdue"
    return f"{actions.human_duration(timedelta(seconds=seconds))} after it falls overdue"


# --------------------------------------------------------------------------- surveys
LABELS = {
    "nps": {0: "Not at all likely", 10: "Extremely likely"},
    "csat": {1: "Very dissatisfied", 2: "Dissatisfied", 3: "Neither", 4: "Satisfied",
             5: "Very satisfied"},
}


def _first_name(session, customer_id: str | None) -> str | None:
    row = session.get(Customer, customer_id) if customer_id else None
    if row is None or not row.name:
        return None
    from flows.store.customers import to_view  # the one rule: preferred name, else first word

    return to_view(row).first_name or None


def _survey_view(engine, survey: Survey) -> dict[str, Any]:
    low, high = actions.SCALES.get(survey.question, (None, None))
    labels = LABELS.get(survey.question, {})
    return {"id": survey.id, "question": survey.question, "text": survey.text,
            "choices": [str(c) for c in survey.choices or []], "low": low, "high": high,
            "scale": list(range(low, high + 1)) if low is not None else [], "labels": labels,
            "low_label": labels.get(low, ""), "high_label": labels.get(high, "")}


def _open_survey(request: Request, token: str) -> dict[str, Any] | None:
    """The page context of an open survey, or None for every kind of unusable link."""
    found = claims(request, "survey", token)
    if not found or not isinstance(found.get("survey"), str):
        return None
    engine = engine_of(request)
    with reading(engine) as session:
        survey = session.get(Survey, found["survey"])
        if actions.survey_state(survey) != "open":
            return None
        return {"token": token, "survey": _survey_view(engine, survey),
                "first_name": _first_name(session, survey.customer_id),
                "expires": survey.expires_at.astimezone(zone(engine)).strftime("%-d %B %Y")}


@router.get("/s/{token}", response_class=HTMLResponse)
def survey_page(request: Request, token: str) -> Response:
    context = _open_survey(request, token)
    if context is None:
        return unavailable(request)
    return render(request, "survey.html", context, form=True)


def _survey_post(request: Request, token: str, form) -> Response:
    found = claims(request, "survey", token)
    if not found or not isinstance(found.get("survey"), str):
        return unavailable(request)
    engine = engine_of(request)
    try:
        actions.answer_survey(engine, request.app.state.dispatcher, found["survey"],
                              score=text_field(form, "score"), answer=text_field(form, "answer"),
                              comment=text_field(form, "comment"), actor="web")
    except actions.SurveyUnavailable:
        return unavailable(request)
    except actions.InvalidAnswer as exc:
        context = _open_survey(request, token)
        if context is None:
            return unavailable(request)
        context.update(error=exc.message, comment=text_field(form, "comment"),
                       selected=text_field(form, "score") or text_field(form, "answer"))
        return render(request, "survey.html", context, status=400, form=True)
    return redirect(f"/s/{token}/thanks")


@router.post("/s/{token}")
async def survey_post(request: Request, token: str) -> Response:
    form = await read_form(request)
    if form is None or not check_csrf(request, form):
        return forbidden(request, f"/s/{token}")
    return await run_in_threadpool(_survey_post, request, token, form)


@router.get("/s/{token}/thanks", response_class=HTMLResponse)
def survey_thanks(request: Request, token: str) -> Response:
    found = claims(request, "survey", token)
    if not found or not isinstance(found.get("survey"), str):
        return unavailable(request)
    with reading(engine_of(request)) as session:
        survey = session.get(Survey, found["survey"])
        if survey is None or survey.answered_at is None:
            return unavailable(request)
        shown = survey.answer
        if survey.score is not None:
            high = actions.SCALES.get(survey.question, (None, None))[1]
            shown = f"{survey.score} out of {high}" if high is not None else str(survey.score)
        context = {"shown": shown, "first_name": _first_name(session, survey.customer_id)}
    return render(request, "survey_thanks.html", context)


# --------------------------------------------------------------------------- tasks
def _via_ok(session, found: dict[str, Any], task: Task | None):
    """A task link handed out by a team list works only while that team link does: the live
    TeamLink, True for a link from an email (no ``via``), None when it no longer works."""
    if task is None:
        return None
    if "via" not in found:
        return True
    return teamlinks.active(session, found["via"], task.team)


def task_id_of(request: Request, token: str) -> str | None:
    """The task a task link opens, or None (forged, expired, or its team link is dead)."""
    found = claims(request, "task", token)
    if not found or not isinstance(found.get("task"), str):
        return None
    with reading(engine_of(request)) as session:
        if _via_ok(session, found, session.get(Task, found["task"])) is None:
            return None
    return found["task"]


def _task_context(request: Request, token: str) -> dict[str, Any] | None:
    found = claims(request, "task", token)
    if not found or not isinstance(found.get("task"), str):
        return None
    engine = engine_of(request)
    now = clock.now()
    with reading(engine) as session:
        task = session.get(Task, found["task"])
        via = _via_ok(session, found, task)
        if via is None:
            return None
        if via is True:  # from an email: the team's shared link, if one is live (none is made)
            via = teamlinks.current_shared(session, task.team, 0, now)
        team_link = f"/teams/{teamlinks.token_for(engine.signer, via)}" if via else None
        customer = session.get(Customer, task.customer_id) if task.customer_id else None
        done = task.escalation_level or 0
        view = {
            "id": task.id, "title": task.title, "body": task.body, "team": task.team,
            "owner": task.owner, "status": task.status, "touchpoint": task.touchpoint,
            "outcome": task.outcome, "acknowledged_by": task.acknowledged_by,
            "completed_by": task.completed_by,
            "due": due_state(task.due_at, task.created_at, now),
            "due_at_local": local(engine, task.due_at),
            "created_at_local": local(engine, task.created_at),
            "acknowledged_at_local": local(engine, task.acknowledged_at),
            "completed_at_local": local(engine, task.completed_at),
            "escalation": [{"to": level.get("to"), "when": escalation_when(level.get("after")),
                            "done": i < done} for i, level in enumerate(task.escalations or [])],
        }
        customer_view = None
        if customer is not None:
            customer_view = {"id": customer.id, "name": customer.name, "email": customer.email,
                             "plan": customer.plan, "region": customer.region,
                             "account_owner": customer.account_owner,
                             "account_owner_name": customer.account_owner_name}
    return {"token": token, "task": view, "customer": customer_view, "by": view["owner"],
            "team_link": team_link}


@router.get("/t/{token}", response_class=HTMLResponse)
def task_page(request: Request, token: str, action: str | None = None,
              done: str | None = None) -> Response:
    context = _task_context(request, token)
    if context is None:
        return unavailable(request)
    status = context["task"]["status"]
    shown = {"ack": status in ("acknowledged", "completed"), "complete": status == "completed"}
    context.update(action=action if action in ("ack", "complete") else None,
                   done=done if shown.get(done or "") else None)  # only say what is true
    return render(request, "task.html", context, form=True)


def _task_post(request: Request, token: str, form, which: str) -> Response:
    task_id = task_id_of(request, token)
    if task_id is None:
        return unavailable(request)
    engine, dispatcher = engine_of(request), request.app.state.dispatcher
    by = (text_field(form, "by") or "").strip()
    outcome = text_field(form, "outcome")
    try:
        if which == "ack":
            actions.acknowledge_task(engine, dispatcher, task_id, by=by, actor=f"web:{by}")
        else:
            actions.complete_task(engine, dispatcher, task_id, by=by, outcome=outcome or "",
                                  actor=f"web:{by}")
    except NotFoundError:
        return unavailable(request)
    except (actions.InvalidAnswer, actions.TaskStateError) as exc:
        context = _task_context(request, token)
        if context is None:
            return unavailable(request)
        context.update(error=exc.message, action=which, by=by or context["by"], outcome=outcome)
        status = 409 if isinstance(exc, actions.TaskStateError) else 400
        return render(request, "task.html", context, status=status, form=True)
    return redirect(f"/t/{token}?done={which}")


@router.post("/t/{token}/ack")
async def task_ack(request: Request, token: str) -> Response:
    form = await read_form(request)
    if form is None or not check_csrf(request, form):
        return forbidden(request, f"/t/{token}?action=ack")
    return await run_in_threadpool(_task_post, request, token, form, "ack")


@router.post("/t/{token}/complete")
async def task_complete(request: Request, token: str) -> Response:
    form = await read_form(request)
    if form is None or not check_csrf(request, form):
        return forbidden(request, f"/t/{token}?action=complete")
    return await run_in_threadpool(_task_post, request, token, form, "complete")


# --------------------------------------------------------------------------- team task lists
@router.get("/teams/{token}", response_class=HTMLResponse)
def team_page(request: Request, token: str) -> Response:
    from flows.web.operator import gate  # off loopback: operators only

    if (login := gate(request)) is not None:
        return login
    found = claims(request, "team-tasks", token)
    engine = engine_of(request)
    now = clock.now()
    rows = []
    with reading(engine) as session:
        link = teamlinks.resolve(session, found, now)  # expired, revoked, old-style: None
        if link is None or link.team not in engine.config.teams:
            return unavailable(request)
        team = link.team
        names = {}
        for task in actions.list_tasks(session, team=team):
            if task.customer_id and task.customer_id not in names:
                customer = session.get(Customer, task.customer_id)
                names[task.customer_id] = customer.name if customer else task.customer_id
            rows.append({
                "id": task.id, "title": task.title, "status": task.status, "owner": task.owner,
                "customer": names.get(task.customer_id) if task.customer_id else None,
                "due": due_state(task.due_at, task.created_at, now),
                "due_at_local": local(engine, task.due_at),
                "href": "/t/" + engine.signer.token("task", task=task.id, via=link.id),
            })
    overdue = sum(1 for r in rows if r["due"]["kind"] == "overdue")
    tz = zone(engine)
    return render(request, "team.html", {
        "team": team, "tasks": rows, "overdue": overdue, "now_local": local(engine, now),
        "tz_label": f"in {tz.key.replace('_', ' ')} time"})
