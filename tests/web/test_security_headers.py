"""Every response of the web app, on every route, carries a CSP and X-Frame-Options."""

from __future__ import annotations

import re

import pytest
from starlette.routing import Mount

from flows.web.app import docs_csp

#: a real file under each mount, so the walk sees a 200 from static files too
MOUNT_FILES = {"/static": "/static/touchpoints.css", "/docs-assets": "/docs-assets/swagger-ui.css"}


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def walk(routes, prefix: str = ""):
    """(path, route) of every route, into included routers (FastAPI 0.150 keeps them whole)."""
    for route in routes:
        original = getattr(route, "original_router", None)
        if original is not None:
            yield from walk(original.routes, prefix + route.include_context.prefix)
        else:
            yield prefix + route.path, route


def requests_for(app) -> list[tuple[str, str]]:
    out = [("GET", "/redoc"), ("GET", "/no-such-page")]
    for path, route in walk(app.routes):
        if isinstance(route, Mount):
            out.append(("GET", MOUNT_FILES[path]))
            continue
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            if method != "HEAD":
                out.append((method, concrete(path)))
    return out


def test_every_route_sends_a_csp_and_x_frame_options(app, client):
    seen = requests_for(app)
    assert ("GET", "/docs") in seen and ("POST", "/api/events") in seen and ("GET", "/mail") in seen
    statuses = set()
    for method, path in seen:
        response = client.request(method, path)
        statuses.add(response.status_code)
        assert "default-src 'none'" in response.headers.get("content-security-policy", ""), \
            (method, path)
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers.get("x-frame-options") == "DENY", (method, path)
        assert response.headers.get("x-content-type-options") == "nosniff"
        assert response.status_code < 500, (method, path, response.text)
    assert {200, 401, 404} <= statuses


def test_a_page_keeps_its_own_csp(client, engine):
    from tests.web.test_mail_pages import catch

    mail_id = catch(engine, subject="Styled")
    page = client.get(f"/mail/{mail_id}")
    assert "'unsafe-inline'" in page.headers["content-security-policy"]
    assert page.headers["content-security-policy"].count("default-src") == 1


def test_the_docs_allow_only_their_own_inline_script_by_hash(client):
    page = client.get("/docs")
    csp = page.headers["content-security-policy"]
    assert csp == docs_csp(page.text)
    assert "'unsafe-eval'" not in csp and "http" not in csp
    script_src = next(p for p in csp.split(";") if p.strip().startswith("script-src"))
    assert "'unsafe-inline'" not in script_src and script_src.count("'sha256-") == 1


@pytest.mark.parametrize("script", ["alert(1)", "const ui = SwaggerUIBundle({})"])
def test_another_inline_script_gets_another_hash(script):
    assert docs_csp(f"<script>{script}</script>") != docs_csp("<script>x</script>")
