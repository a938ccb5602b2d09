"""Authentication of the HTTP API: an API key on every /api route, and an HMAC signature of
the body for keys that have a signing secret.

* ``Authorization: Bearer tp_<id>_<secret>`` or ``X-API-Key: tp_<id>_<secret>``;
* keys made with ``touchpoints keys create NAME --hmac`` must also send
  ``X-Touchpoints-Timestamp: <unix seconds>`` and
  ``X-Touchpoints-Signature: sha256=<hex of HMAC-SHA256(secret, f"{timestamp}." + body)>``;
  a timestamp more than ``TOUCHPOINTS_HMAC_TOLERANCE_SECONDS`` (default 300) away from the
  server's clock is refused, so a captured request cannot be replayed later.

Every refusal is a 401 with ``{"error": {"code", "message", "hint"}}`` and a
``WWW-Authenticate`` header; failed authentications are limited per key id and per client
address (a 429 with ``Retry-After`` over the limit) and audited in aggregate
(flows/web/ratelimit.py). Bodies are read here too, with a size limit enforced while
reading (a missing or false Content-Length does not get past it).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from flows import keys as api_keys

log = logging.getLogger("touchpoints.api")

#: default body limit of the API (events, one customer, a cancel)
BODY_LIMIT = 256 * 1024
_BODY_LIMIT_KEY = "touchpoints.body_limit"
_BODY_KEY = "touchpoints.body"
TOLERANCE_ENV = "TOUCHPOINTS_HMAC_TOLERANCE_SECONDS"

KEY_HINT = ("send `Authorization: Bearer <key>` or `X-API-Key: <key>`; "
            "an admin makes keys with `touchpoints keys create NAME`")


class ApiError(Exception):
    """An error answered as ``{"error": {"code", "message", "hint"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, *, hint: str | None = None,
                 headers: dict[str, str] | None = None, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.hint = status, code, message, hint
        self.headers = headers or {}
        self.extra = extra or {}

    def response(self) -> JSONResponse:
        return error_response(self.status, self.code, self.message, hint=self.hint,
                              headers=self.headers, extra=self.extra)


def error_response(status: int, code: str, message: str, *, hint: str | None = None,
                   headers: dict[str, str] | None = None,
                   extra: dict[str, Any] | None = None) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "hint": hint, **(extra or {})}}
    return JSONResponse(body, status_code=status, headers=headers or None)


def unauthorized(message: str, hint: str | None = KEY_HINT, code: str = "unauthorized") -> ApiError:
    return ApiError(401, code, message, hint=hint,
                    headers={"WWW-Authenticate": 'Bearer realm="touchpoints"'})


@dataclass(frozen=True)
class Principal:
    """Who is calling: the API key that authenticated the request."""

    key_id: str
    name: str
    signed: bool

    @property
    def actor(self) -> str:
        return api_keys.actor_for(self.key_id)


# ---------------------------------------------------------------------- bodies
def set_body_limit(request: Request, limit: int) -> None:
    request.scope[_BODY_LIMIT_KEY] = limit


async def read_body(request: Request, limit: int | None = None) -> bytes:
    """The raw body, read at most once per request, refused with 413 as soon as it grows past
    the route's limit (or ``limit``)."""
    cached = request.scope.get(_BODY_KEY)
    if cached is not None:
        return cached
    limit = limit or request.scope.get(_BODY_LIMIT_KEY) or BODY_LIMIT
    too_large = ApiError(413, "body_too_large", f"the body is larger than {limit} bytes",
                         hint="send smaller requests, e.g. split an import into several")
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    body = b"".join(chunks)
    request.scope[_BODY_KEY] = body
    return body


# ---------------------------------------------------------------------- keys
def presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    value = request.headers.get("x-api-key")
    return value.strip() if value and value.strip() else None


def tolerance_seconds(request: Request) -> int:
    """Allowed clock difference for signed requests: app.state.hmac_tolerance_seconds, the
    setting ``hmac_tolerance_seconds`` if it exists, TOUCHPOINTS_HMAC_TOLERANCE_SECONDS, 300."""
    value = getattr(request.app.state, "hmac_tolerance_seconds", None)
    if value is None:
        engine = getattr(request.app.state, "engine", None)
        value = getattr(getattr(engine, "settings", None), "hmac_tolerance_seconds", None)
    if value is None:
        value = os.environ.get(TOLERANCE_ENV)
    try:
        return int(value) if value is not None else api_keys.DEFAULT_TOLERANCE_SECONDS
    except (TypeError, ValueError):
        return api_keys.DEFAULT_TOLERANCE_SECONDS


def read_session(store):
    """A read-only session where the store has one (no SQLite write lock for a lookup)."""
    return getattr(store, "read_session", store.session)()


def _lookup(engine, presented: str) -> tuple[str, str, str | None] | None:
    with read_session(engine.store) as session:
        row = api_keys.verify_key(session, presented)
        found = (row.id, row.name, row.hmac_secret) if row is not None else None
    if found is None or not found[2]:
        return found
    settings = getattr(engine, "settings", None)  # the signing secret is stored sealed
    secret_key = settings.signing_key() if settings is not None else None
    return found[0], found[1], api_keys.reveal_secret(engine.store, found[0], found[2],
                                                      secret_key=secret_key)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _existing_key_id(engine, presented: str | None) -> str | None:
    """The id named by a presented key when a key with that id exists (revoked ones too)."""
    from flows.store.tables import ApiKey

    parsed = api_keys.parse_key(presented) if presented else None
    if parsed is None:
        return None
    with read_session(engine.store) as session:
        return parsed[0] if session.get(ApiKey, parsed[0]) is not None else None


async def count_failure(request: Request, presented: str | None, why: str, *,
                        blocked: bool = False) -> int | None:
    """Count a failed authentication with the app's limiter (flows/web/ratelimit.py) and write
    the audit rows it hands back; the seconds to wait when the caller is over a limit."""
    from flows.web.ratelimit import write_rows

    limiter = getattr(request.app.state, "auth_limiter", None)
    if limiter is None:
        return None
    engine = request.app.state.engine
    key_id = None if blocked else await run_in_threadpool(_existing_key_id, engine, presented)
    wait, rows = limiter.failure(address=client_address(request), key_id=key_id, reason=why,
                                 blocked=blocked)
    if rows:
        await run_in_threadpool(write_rows, engine.store, limiter, rows, log)
    return wait


def blocked_for(request: Request) -> int | None:
    """Seconds to wait when the client's address is over its failure limit, else None."""
    limiter = getattr(request.app.state, "auth_limiter", None)
    return limiter.blocked(client_address(request)) if limiter is not None else None


def too_many(wait: int) -> ApiError:
    return ApiError(429, "too_many_failures",
                    f"too many failed authentications; try again in {wait} s",
                    hint="check the key (`touchpoints keys list` shows which keys are active) "
                         "before trying again", headers={"Retry-After": str(wait)})


async def _refuse(request: Request, presented: str | None, why: str, error: ApiError) -> ApiError:
    wait = await count_failure(request, presented, why)
    return too_many(wait) if wait else error


async def require_api_key(request: Request) -> Principal:
    """FastAPI dependency of every /api route: the calling key, or a 401."""
    presented = presented_key(request)
    wait = blocked_for(request)
    if wait:
        await count_failure(request, presented, "address over its limit", blocked=True)
        raise too_many(wait)
    if presented is None:
        raise await _refuse(request, None, "no key", unauthorized("an API key is required"))
    engine = request.app.state.engine
    found = await run_in_threadpool(_lookup, engine, presented)
    if found is None:
        raise await _refuse(request, presented, "unknown, wrong or revoked key", unauthorized(
            "the API key is not valid (unknown, wrong or revoked)",
            hint="check the key; `touchpoints keys list` shows which keys are active"))
    key_id, name, hmac_secret = found
    if hmac_secret:
        body = await read_body(request)
        why = api_keys.check_signature(
            hmac_secret, timestamp=request.headers.get(api_keys.TIMESTAMP_HEADER),
            signature=request.headers.get(api_keys.SIGNATURE_HEADER), body=body,
            tolerance=tolerance_seconds(request))
        if why is not None:
            raise await _refuse(request, presented, "bad signature", unauthorized(
                why, code="bad_signature",
                hint='sign f"{timestamp}." + body with HMAC-SHA256 and the key\'s '
                     "signing secret (shown once by `touchpoints keys create`)"))
    return Principal(key_id=key_id, name=name, signed=bool(hmac_secret))
