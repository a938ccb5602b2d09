"""The web app: events API, survey/task/team pages, unsubscribe and preferences, mail catcher.

``create_app(engine, dispatcher)`` builds it; ``touchpoints serve`` runs it with uvicorn. The
OpenAPI docs are at /docs, a small home page at /.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from flows.web import pages, preferences
from flows.web.csrf import CSRF

log = logging.getLogger(__name__)


def _include_api(app: FastAPI) -> None:
    from flows.web import api

    app.include_router(api.router)
    app.include_router(api.health_router)
    api.install_error_handlers(app)


def _serve_api_docs(app: FastAPI) -> None:
    """Swagger UI at /docs from the files the swagger-ui-bundle package ships: no CDN, so the
    docs work on a machine with no internet."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="Touchpoints API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon-32x32.png")


def create_app(engine, dispatcher) -> FastAPI:
    app = FastAPI(
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
    app.state.templates = pages.make_templates()
    app.mount("/static", StaticFiles(directory=str(pages.STATIC_DIR)), name="static")
    _include_api(app)
    app.include_router(pages.router)
    app.include_router(preferences.router)
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

    return app
