"""The HTTP API for other systems: the CRM, billing, network monitoring.

Every route under /api needs an API key (flows/web/auth.py). Errors are always
``{"error": {"code", "message", "hint"}}`` with a 4xx status for anything wrong with the
request; a validation error also lists ``fields: [{"field", "message"}]``.

=====================================================  ======================================
route                                                  answers
=====================================================  ======================================
``POST /api/events``                                   202 stored (and dispatched), see below
``PUT /api/customers/{id}``                            201 created, 200 updated
``POST /api/customers/import``                         200 with per-row errors
``GET /api/journeys?customer_id=&touchpoint=&limit=``  200 ``{"journeys": [...]}``
``POST /api/journeys/{id}/cancel``                     200; 404 unknown; 409 already ended
``POST /api/customers/{id}/journeys/cancel?touchpoint=``  200 ``{"cancelled": [...]}``
``GET /healthz`` (``health_router``, no key)           200 ``{"ok": true}``
=====================================================  ======================================

``POST /api/events`` takes ``{"id", "type", "customer_id"?, "data"?, "occurred_at"?}`` and
answers 202 ``{"event_id", "status": "accepted", "duplicate", "started": [touch point names],
"resumed": [journey ids], "skipped": [{"touchpoint", "reason"}]}`` once the event is committed to the inbox. Posting the same id
again answers the same lists with ``duplicate: true`` and starts nothing. Refusals: 400
malformed JSON, 413 body over 256 KiB, 422 unknown event type (``unknown_event_type``, with a
did-you-mean hint), 422 unknown customer (``unknown_customer``: the request is well formed but
names a customer the directory does not have; 404 is kept for routes whose own resource is
missing), 422 missing/wrong/unknown field naming it, 422 ``invalid_event_data`` when ``data``
breaks the event's contract (its ``fields:`` in touchpoints.yaml; ``fields`` lists each bad
``data.<name>`` with what was expected; nothing is stored, the refusal is audited as
``event.refused``), 401 no or bad key or signature. ``skipped`` lists the touch points the
event triggers but that will not start (the entry rule, a filter), with the reason. The data
schema of each event type is in the OpenAPI document (``EventData.<type>``).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from flows.engine.rescheduling import following_dates
from flows.errors import (
    ConfigError,
    EventDataError,
    ExpressionError,
    ImportRowsError,
    NotFoundError,
    ServiceError,
    StoreError,
    TouchpointsError,
)
from flows.web.auth import (
    BODY_LIMIT,
    ApiError,
    Principal,
    error_response,
    read_body,
    read_session,
    require_api_key,
    set_body_limit,
)
from flows.web.event_answers import admitted, data_refused, document_event_data  # noqa: F401

log = logging.getLogger("touchpoints.api")

EVENT_BODY_LIMIT = BODY_LIMIT  # 256 KiB
IMPORT_BODY_LIMIT = 8 * 1024 * 1024
MAX_DEPTH = 32  # nesting of objects and arrays in a body
INT_MIN, INT_MAX = -(2 ** 63), 2 ** 63 - 1  # what Prefect's JSON (orjson) and the store take

_STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 409: "conflict", 413: "body_too_large",
                 415: "unsupported_media_type", 422: "invalid", 429: "too_many_requests"}


# ---------------------------------------------------------------------- errors
def _field_name(loc: tuple) -> str:
    parts: list[str] = []
    for item in loc:
        if item in ("body", "query", "path", "header") and not parts:
            continue
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "body"


def _field_message(err: dict) -> str:
    field, kind = _field_name(tuple(err.get("loc", ()))), err.get("type", "")
    if kind == "missing":
        return f"`{field}` is required"
    if kind == "extra_forbidden":
        return f"`{field}` is not a field of this request"
    if kind == "string_type":
        return f"`{field}` must be a string"
    if kind in ("dict_type", "model_type"):
        return f"`{field}` must be a JSON object"
    if kind == "list_type":
        return f"`{field}` must be a JSON array"
    msg = str(err.get("msg", "is invalid"))
    msg = msg.removeprefix("Value error, ")
    return f"`{field}`: {msg}"


def validation_error(errors: list[dict], hint: str | None = None) -> ApiError:
    fields = [{"field": _field_name(tuple(e.get("loc", ()))), "message": _field_message(e)}
              for e in errors[:20]]
    message = "; ".join(f["message"] for f in fields[:5]) or "the request is invalid"
    return ApiError(422, "invalid_field", message, hint=hint, extra={"fields": fields})


#: seconds a client should wait before retrying a 503
RETRY_AFTER = "2"


def _overloaded(exc: BaseException) -> bool:
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    if isinstance(exc, PoolTimeout):
        return True
    return isinstance(exc, OperationalError) and "locked" in str(exc).lower()


def exception_response(exc: Exception) -> JSONResponse:
    """The JSON answer for any exception raised while handling an /api request."""
    if isinstance(exc, ApiError):
        return exc.response()
    if isinstance(exc, RequestValidationError):
        return validation_error(list(exc.errors())).response()
    if isinstance(exc, StarletteHTTPException):
        return error_response(exc.status_code, _STATUS_CODES.get(exc.status_code, "error"),
                              str(exc.detail), headers=getattr(exc, "headers", None))
    if isinstance(exc, NotFoundError):
        return error_response(404, "not_found", exc.message, hint=exc.hint)
    if isinstance(exc, ExpressionError):
        return error_response(422, "cannot_evaluate", exc.message,
                              hint=exc.hint or "the event data lacks what a trigger filter needs")
    if isinstance(exc, (StoreError, ServiceError)):
        log.warning("API request failed: %s", exc.message)
        return error_response(503, "unavailable", exc.message, hint=exc.hint,
                              headers={"Retry-After": RETRY_AFTER})
    if _overloaded(exc):  # a locked database or an exhausted pool: busy, not broken
        log.warning("API request refused under load: %s", type(exc).__name__)
        return error_response(503, "overloaded", "the service is busy; try again shortly",
                              hint=f"retry after {RETRY_AFTER} s", headers={"Retry-After": RETRY_AFTER})
    if isinstance(exc, ConfigError):
        log.error("API request failed on the configuration: %s", exc.message)
        return error_response(500, "config_error", "the service's configuration is invalid",
                              hint="run `touchpoints check` on the server")
    if isinstance(exc, EventDataError):
        return data_refused(exc).response()
    if isinstance(exc, ImportRowsError):
        return error_response(422, "invalid_rows", exc.message, hint=exc.hint)
    if isinstance(exc, TouchpointsError):
        return error_response(422, "invalid", exc.message, hint=exc.hint)
    log.exception("unexpected error in the API", exc_info=exc)
    return error_response(500, "internal", "internal error", hint="see the service's log")


class ApiRoute(APIRoute):
    """Routes of the API: JSON errors for everything raised (including 401/413/422 from the
    dependencies), and the per-route body limit (``@body_limit``)."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()
        limit = getattr(self.endpoint, "body_limit", BODY_LIMIT)

        async def api_handler(request: Request):
            set_body_limit(request, limit)
            try:
                return await handler(request)
            except Exception as exc:  # noqa: BLE001 - every failure gets the error shape
                return exception_response(exc)

        return api_handler


def body_limit(limit: int) -> Callable:
    def mark(fn):
        fn.body_limit = limit
        return fn
    return mark


def install_error_handlers(app) -> None:
    """Give 404/405 under /api (no route matched) the API's error shape. Optional: errors of
    the API's own routes are already shaped by ApiRoute."""
    from fastapi.exception_handlers import http_exception_handler

    async def handler(request: Request, exc: StarletteHTTPException):
        if request.url.path.startswith("/api/") or request.url.path == "/api":
            return exception_response(exc)
        return await http_exception_handler(request, exc)

    app.add_exception_handler(StarletteHTTPException, handler)


# ---------------------------------------------------------------------- bodies
def parse_json(body: bytes) -> Any:
    """The JSON value of a body; 400 when it is not JSON."""
    if not body.strip():
        raise ApiError(400, "empty_body", "the request has no body",
                       hint="send a JSON document with Content-Type: application/json")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "malformed_json", f"the body is not UTF-8 (byte {exc.start})",
                       hint="encode the JSON as UTF-8") from None
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ApiError(400, "malformed_json",
                       f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                       hint="check the JSON with a validator, e.g. `python -m json.tool`") from None
    except RecursionError:
        raise ApiError(400, "malformed_json", "the body is nested too deeply",
                       hint=f"nest objects and arrays at most {MAX_DEPTH} levels") from None
    except ValueError as exc:  # NaN/Infinity, integers too long to convert
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}",
                       hint="numbers must be finite and fit in 64 bits") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _bad_value(path: str, message: str, hint: str | None = None) -> ApiError:
    field = path or "body"
    return ApiError(422, "invalid_value", f"`{field}` {message}", hint=hint,
                    extra={"fields": [{"field": field, "message": f"`{field}` {message}"}]})


def check_json_values(value: Any) -> None:
    """Refuse what parses as JSON but the store, Prefect or other systems cannot hold: nesting
    deeper than MAX_DEPTH, numbers outside 64 bits or not finite, strings with NUL characters
    or unpaired surrogates."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth >= MAX_DEPTH:
                raise _bad_value(path, f"is nested more than {MAX_DEPTH} levels deep")
            if isinstance(item, dict):
                for key, child in item.items():
                    _check_string(key, f"{path}.{key!r}" if path else repr(key), key=True)
                    stack.append((child, f"{path}.{key}" if path else key, depth + 1))
            else:
                for index, child in enumerate(item):
                    stack.append((child, f"{path}[{index}]", depth + 1))
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not INT_MIN <= item <= INT_MAX:
                raise _bad_value(path, "is a number too large: integers must fit in 64 bits",
                                 hint="send big identifiers as strings")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise _bad_value(path, "is not a finite number")
        elif isinstance(item, str):
            _check_string(item, path)


def _check_string(text: str, path: str, *, key: bool = False) -> None:
    what = "has a key" if key else "is a string"
    if "\x00" in text:
        raise _bad_value(path, f"{what} with a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad_value(path, f"{what} with an unpaired surrogate (\\ud800-\\udfff)",
                         hint="encode characters outside the BMP as a surrogate pair") from None


async def json_body(request: Request, *, expect: type) -> Any:
    value = parse_json(await read_body(request))
    if not isinstance(value, expect):
        kind = "object" if expect is dict else "array"
        raise ApiError(422, "invalid_body", f"the body must be a JSON {kind}",
                       hint='e.g. {"id": "crm-123", "type": "contract.signed", ...}'
                       if expect is dict else "e.g. [{...}, {...}]")
    check_json_values(value)
    return value


def validate(model: type[BaseModel], value: Any, hint: str | None = None) -> Any:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise validation_error(exc.errors(include_url=False, include_input=False), hint) from None


# ---------------------------------------------------------------------- models
Text = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]
CustomerId = Annotated[str, StringConstraints(min_length=1, max_length=64,
                                              pattern=r"^[^\x00-\x1f\x7f]+$")]
EARLIEST, LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC)


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    id: Text = Field(description="The sender's event id: posting it twice starts nothing twice.")
    type: Text = Field(description="An event type from the catalogue in touchpoints.yaml.")
    customer_id: CustomerId | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    occurred_at: datetime | None = Field(None, description="ISO 8601 with a timezone; default now.")

    @field_validator("occurred_at", mode="before")
    @classmethod
    def _iso_with_zone(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError("must be an ISO 8601 string, e.g. 2026-11-23T09:30:00+00:00")  # noqa: TRY004 - pydantic reports ValueError
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError("is not an ISO 8601 date and time, "
                             "e.g. 2026-11-23T09:30:00+00:00") from None
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError("needs a timezone, e.g. 2026-11-23T09:30:00Z or +01:00")
        try:
            moment = moment.astimezone(UTC)
        except (OverflowError, ValueError):
            raise ValueError("is out of range") from None
        if not EARLIEST <= moment < LATEST:
            raise ValueError("is out of range (1970 to 8999)")
        return moment

    @field_validator("data")
    @classmethod
    def _reply_fields(cls, data: dict[str, Any]) -> dict[str, Any]:
        # replies to a journey (survey.answered, task.completed) name it by these fields
        for name in ("journey_id", "step_id"):
            if data.get(name) is not None and not isinstance(data[name], str):
                raise ValueError(f"`data.{name}` must be a string")
        return data


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


# ---------------------------------------------------------------------- routers
router = APIRouter(prefix="/api", route_class=ApiRoute, dependencies=[Depends(require_api_key)],
                   tags=["api"])
health_router = APIRouter(tags=["health"])

Caller = Annotated[Principal, Depends(require_api_key)]


@health_router.get("/healthz")
async def healthz(request: Request) -> dict:
    """Liveness for `touchpoints emit` and load balancers; no key needed. The web app answers
    while a background part retries a fault (a locked database, Prefect busy): ``ok`` stays
    true and ``parts`` says which part is retrying and why."""
    engine = getattr(request.app.state, "engine", None)
    parts = dict(getattr(engine, "health", {}) or {})
    return {"ok": True, "degraded": any(not p.get("ok", True) for p in parts.values()),
            "parts": parts}


# ---- events
def _emit(dispatcher, event: EventIn, caller: Principal) -> dict:
    from sqlalchemy.exc import IntegrityError

    try:
        dispatcher.check_type(event.type)
    except TouchpointsError as exc:
        raise ApiError(422, "unknown_event_type", exc.message, hint=exc.hint) from None
    for attempt in range(2):
        try:
            result = dispatcher.emit(type=event.type, customer_id=event.customer_id,
                                     data=event.data, event_id=event.id,
                                     occurred_at=event.occurred_at, source=caller.actor,
                                     actor=caller.actor)
            break
        except EventDataError as exc:
            raise data_refused(exc) from None
        except NotFoundError as exc:
            raise ApiError(422, "unknown_customer", exc.message,
                           hint="create it first with PUT /api/customers/{id}, "
                                "or leave customer_id out for an event about no one customer") from None
        except IntegrityError:  # the same id posted twice at once: the other one won
            if attempt:
                raise
        except TouchpointsError:
            raise
        except Exception as exc:
            if _stored(dispatcher, event.id):
                log.exception("event %s stored, but dispatching it failed", event.id)
                raise ApiError(503, "dispatch_failed",
                               f"event {event.id} was stored but starting its touch points "
                               f"failed: {type(exc).__name__}",
                               hint="the event stays in the inbox; see the service's log") from None
            raise
    if getattr(result, "entries_checked", False):  # the outbox told refusals apart already
        started = [s["touchpoint"] if isinstance(s, dict) else str(s) for s in result.started]
        skipped = [{"touchpoint": s.get("touchpoint"), "reason": s.get("reason")}
                   for s in result.skipped if isinstance(s, dict)]
    else:
        started, skipped = admitted(dispatcher, result)
    return {"event_id": result.event_id, "status": "accepted", "duplicate": result.duplicate,
            "started": started,
            "resumed": [w["journey_id"] if isinstance(w, dict) else str(w) for w in result.resumed],
            "skipped": skipped}


def _stored(dispatcher, event_id: str) -> bool:
    from flows.store.tables import Event

    try:
        with read_session(dispatcher.engine.store) as session:
            return session.get(Event, event_id) is not None
    except Exception:  # noqa: BLE001 - only decides which error to answer
        return False


def _json_body_doc(model: type[BaseModel] | None = None, *, array: bool = False) -> dict:
    """OpenAPI for a body the route reads itself (so the limit and the errors are ours)."""
    schema: dict[str, Any] = model.model_json_schema() if model is not None else {"type": "object"}
    if array:
        schema = {"type": "array", "items": {"type": "object"}}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


@router.post("/events", status_code=202, summary="Send an event",
             openapi_extra=_json_body_doc(EventIn))
@body_limit(EVENT_BODY_LIMIT)
async def post_event(request: Request, caller: Caller) -> JSONResponse:
    """Store the event in the inbox, wake the journeys waiting for it and start the touch
    points it triggers. Answers once the event is stored; the same id answers the same."""
    payload = await json_body(request, expect=dict)
    event = validate(EventIn, payload,
                     hint='send {"id": "...", "type": "...", "customer_id": "...", "data": {...}}')
    answer = await run_in_threadpool(_emit, request.app.state.dispatcher, event, caller)
    return JSONResponse(answer, status_code=202)


# ---- customers
def _categories(engine) -> list[str] | None:
    """The email categories of touchpoints.yaml: an unsubscribe from any other is refused."""
    categories = getattr(engine.config, "categories", None)
    return list(categories) if categories is not None else None


def _upsert(engine, customer_id: str, payload: dict, caller: Principal) -> tuple[bool, dict]:
    from sqlalchemy.exc import IntegrityError

    from flows.store import customers
    from flows.store.tables import Customer

    data = {**payload, "id": customer_id}
    for attempt in range(2):
        try:
            with engine.store.session() as session:
                created = session.get(Customer, customer_id) is None
                with following_dates(engine, session, [customer_id], actor=caller.actor):
                    row = customers.upsert_customer(session, data, actor=caller.actor,
                                                    source="api", categories=_categories(engine))
                return created, _customer_json(row)
        except IntegrityError:  # created by a concurrent PUT: this one becomes the update
            if attempt:
                raise
    raise AssertionError("unreachable")


def _customer_json(row) -> dict:
    fields = ("id", "name", "email", "timezone", "region", "plan", "contract_start",
              "contract_end", "account_owner", "account_owner_name", "attributes")
    out = {f: getattr(row, f) for f in fields}
    for f in ("contract_start", "contract_end"):
        out[f] = out[f].isoformat() if out[f] is not None else None
    return out


@router.put("/customers/{customer_id}", summary="Create or update one customer",
            openapi_extra=_json_body_doc())
async def put_customer(request: Request, customer_id: str, caller: Caller) -> JSONResponse:
    """Keep the directory in sync with the CRM: 201 when created, 200 when updated; the same
    checks as `touchpoints customers import`."""
    payload = await json_body(request, expect=dict)
    if "id" in payload and payload["id"] != customer_id:
        raise ApiError(422, "invalid_field", "`id` in the body differs from the id in the URL",
                       hint="leave `id` out of the body, or make them equal",
                       extra={"fields": [{"field": "id", "message": "differs from the URL"}]})
    try:
        created, view = await run_in_threadpool(_upsert, request.app.state.engine, customer_id,
                                                payload, caller)
    except ImportRowsError as exc:
        raise ApiError(422, "invalid_customer", exc.message, hint=exc.hint) from None
    return JSONResponse({"customer": view, "created": created}, status_code=201 if created else 200)


def _import(engine, rows: list, caller: Principal) -> dict:
    from flows.store import customers

    with engine.store.session() as session, following_dates(  # waits follow changed dates
            engine, session, (r.get("id") for r in rows if isinstance(r, dict)),
            actor=caller.actor):
        report = customers.import_rows(session, rows, actor=caller.actor, source="api",
                                       categories=_categories(engine))
    answer = report.as_dict()
    answer.pop("source", None)
    answer["errors"] = [{"index": e["index"], "customer_id": e.get("customer_id"),
                         "reason": e["reason"]} for e in answer["errors"]]
    return answer


@router.post("/customers/import", summary="Create or update many customers",
             openapi_extra=_json_body_doc(array=True))
@body_limit(IMPORT_BODY_LIMIT)
async def import_customers(request: Request, caller: Caller) -> JSONResponse:
    """A JSON array of customers. Good rows are kept; each bad row is listed with its index
    (from 0) and the reason: ``{"received", "created", "updated", "unchanged", "rejected",
    "errors": [{"index", "customer_id", "reason"}]}``."""
    rows = await json_body(request, expect=list)
    answer = await run_in_threadpool(_import, request.app.state.engine, rows, caller)
    return JSONResponse(answer, status_code=200)


# ---- journeys
def _journeys(engine, customer_id, touchpoint, limit) -> list[dict]:
    from flows.engine.status import journey_rows

    with read_session(engine.store) as session:
        rows = journey_rows(session, customer_id=customer_id, touchpoint=touchpoint, limit=limit)
    for row in rows:
        for key, value in row.items():
            if isinstance(value, datetime):
                row[key] = value.isoformat()
    return rows


@router.get("/journeys", summary="List journeys")
async def list_journeys(request: Request, caller: Caller,
                        customer_id: Annotated[str | None, Query(max_length=64)] = None,
                        touchpoint: Annotated[str | None, Query(max_length=128)] = None,
                        limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> dict:
    rows = await run_in_threadpool(_journeys, request.app.state.engine, customer_id, touchpoint,
                                   limit)
    return {"journeys": rows}


def _prefect_url(request: Request) -> str | None:
    return getattr(request.app.state, "prefect_api_url", None)


def _cancel_one(engine, journey_id: str, reason: str, caller: Principal, prefect_url) -> dict:
    from flows.engine.cancel import cancel_journey

    try:
        return cancel_journey(engine, journey_id, actor=caller.actor, reason=reason,
                              prefect_api_url=prefect_url)
    except NotFoundError:
        raise
    except TouchpointsError as exc:
        raise ApiError(409, "journey_ended", exc.message, hint=exc.hint) from None


@router.post("/journeys/{journey_id}/cancel", summary="Cancel one journey",
             openapi_extra=_json_body_doc(CancelIn))
async def cancel_one(request: Request, journey_id: str, caller: Caller) -> dict:
    """Body ``{"reason": "..."}``. Cancelling a cancelled journey again answers 200 with
    ``already: true``; a journey that has ended answers 409."""
    body = validate(CancelIn, await json_body(request, expect=dict),
                    hint='send {"reason": "why it is cancelled"}')
    return await run_in_threadpool(_cancel_one, request.app.state.engine, journey_id, body.reason,
                                   caller, _prefect_url(request))


def _cancel_customer(engine, customer_id, touchpoint, reason, caller, prefect_url) -> list[dict]:
    from flows.engine.cancel import cancel_for_customer

    return cancel_for_customer(engine, customer_id, touchpoint, actor=caller.actor, reason=reason,
                               prefect_api_url=prefect_url)


@router.post("/customers/{customer_id}/journeys/cancel",
             summary="Cancel a customer's journeys", openapi_extra=_json_body_doc(CancelIn))
async def cancel_customer(request: Request, customer_id: str, caller: Caller,
                          touchpoint: Annotated[str | None, Query(max_length=128)] = None) -> dict:
    """Body ``{"reason": "..."}``. Cancels the customer's active journeys (of one touch point
    with ``?touchpoint=``) and takes them out of segment journeys; 404 for an unknown
    customer or touch point."""
    body = validate(CancelIn, await json_body(request, expect=dict),
                    hint='send {"reason": "why they are cancelled"}')
    cancelled = await run_in_threadpool(_cancel_customer, request.app.state.engine, customer_id,
                                        touchpoint, body.reason, caller, _prefect_url(request))
    return {"customer_id": customer_id, "cancelled": cancelled}
