"""The web app: events API, survey/task/team pages, unsubscribe and preferences, mail catcher.

``create_app(engine, dispatcher)`` builds it; ``touchpoints serve`` runs it with uvicorn. The
OpenAPI docs are at /docs, a small home page at /.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from flows.web import operator, pages, preferences, reportpage
from flows.web.csrf import CSRF

log = logging.getLogger(__name__)


def _include_api(app: FastAPI) -> None:
    from flows.web import api

    app.include_router(api.router)
    app.include_router(api.health_router)
    api.install_error_handlers(app)
    api.document_event_data(app)


#: headers every response gets (a page may set its own CSP; nothing may be framed)
SECURITY_HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


class SecurityHeadersMiddleware:
    """Pure ASGI middleware: every HTTP response (pages, API, static files, 404s) carries a
    Content-Security-Policy (the page's own, else :data:`pages.CSP`), X-Frame-Options: DENY,
    nosniff and a same-origin referrer policy."""

    def __init__(self, app, csp: str = pages.CSP) -> None:
        self.app = app
        self.csp = csp.encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", self.csp))
                for name, value in SECURITY_HEADERS.items():
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def docs_csp(html: str) -> str:
    """The CSP of the Swagger UI page: its scripts from this app, its one inline script by
    hash, its inline styles, the schema fetched from this app; nothing from elsewhere."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(html))
    return (f"default-src 'none'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; font-src 'self'; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'")


def _serve_api_docs(app: FastAPI) -> None:
    """Swagger UI at /docs from the files the fastapi-offline package ships: no CDN, so the
    docs work on a machine with no internet, under a CSP that allows only this app's assets."""
    from importlib.resources import files

    from fastapi.openapi.docs import get_swagger_ui_html

    # Swagger UI 5 (it reads OpenAPI 3.1, which FastAPI writes), as fastapi-offline ships it
    assets = str(files("fastapi_offline") / "static")
    app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")
    page = get_swagger_ui_html(openapi_url="/openapi.json", title="Touchpoints API",
                               swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                               swagger_css_url="/docs-assets/swagger-ui.css",
                               swagger_favicon_url="/docs-assets/favicon.png",
                               swagger_ui_parameters={"validatorUrl": None})
    html = bytes(page.body).decode()
    csp = docs_csp(html)

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(html, headers={"Content-Security-Policy": csp,
                                           "Cache-Control": "no-store"})


def make_limiter(settings):
    from flows.web.ratelimit import FailedAuthLimiter

    return FailedAuthLimiter(window_s=settings.auth_failure_window_seconds,
                             per_key=settings.auth_failures_per_key,
                             per_address=settings.auth_failures_per_address)


@asynccontextmanager
async def lifespan(app: FastAPI):
    """Close the failed-authentication windows as they run out, and all of them at shutdown,
    so every failure ends up counted in the audit trail."""
    from flows.web.ratelimit import write_rows

    limiter, store = app.state.auth_limiter, app.state.engine.store

    async def closing() -> None:
        while True:
            await asyncio.sleep(min(max(limiter.window_s / 4, 0.05), 15.0))
            await run_in_threadpool(write_rows, store, limiter, limiter.due(), log)

    task = asyncio.create_task(closing())
    try:
        yield
    finally:
        task.cancel()
        await run_in_threadpool(write_rows, store, limiter, limiter.drain(), log)


def create_app(engine, dispatcher, *, bind_host: str | None = None) -> FastAPI:
    """``bind_host``: the address uvicorn listens on (default ``TOUCHPOINTS_WEB_HOST``); off
    loopback the operator pages need a login (flows/web/operator.py)."""
    app = FastAPI(
        lifespan=lifespan,
        title="Touchpoints",
        summary="Events in; survey, task and preference pages out.",
        description="The events API of Touchpoints. Customer and team pages (/s, /t, /u, /p, "
                    "/teams) are opened from signed links in emails and are not listed here.",
        docs_url=None, redoc_url=None, openapi_url="/openapi.json",
    )
    _serve_api_docs(app)
    app.state.engine = engine
    app.state.dispatcher = dispatcher
    app.state.csrf = CSRF(engine.signer.secret, engine.settings.base_url)
    app.state.auth_limiter = make_limiter(engine.settings)
    app.state.bind_host = bind_host or engine.settings.web_host
    app.state.templates = pages.make_templates()
    app.mount("/static", StaticFiles(directory=str(pages.STATIC_DIR)), name="static")
    _include_api(app)
    app.include_router(pages.router)
    app.include_router(preferences.router)
    app.include_router(operator.router)
    app.include_router(reportpage.router)
    if engine.settings.embedded_mail:
        from flows.web import mailpages

        app.include_router(mailpages.router)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def home(request: Request) -> Response:
        api = []
        for path, operations in sorted(app.openapi().get("paths", {}).items()):
            get = operations.get("get")
            if get is not None and "{" not in path:
                api.append({"path": path, "summary": get.get("summary", "")})
        return pages.render(request, "home.html",
                            {"mail": engine.settings.embedded_mail, "api": api})

    app.add_middleware(SecurityHeadersMiddleware)
    return app
