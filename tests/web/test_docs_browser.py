"""The API docs render in a real browser under their CSP, with nothing fetched from elsewhere
(Debian's Chromium, never a downloaded one)."""

from __future__ import annotations

from tests.web.test_survey_browser import browser, pytestmark, server  # noqa: F401 (fixtures)


def test_the_swagger_ui_renders_under_its_csp_with_no_violation(server, browser):  # noqa: F811
    context = browser.new_context()
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("request", lambda request: None if request.url.startswith(server)
            else problems.append(f"external: {request.url}"))

    response = page.goto(server + "/docs")

    assert "script-src 'self' 'sha256-" in response.headers["content-security-policy"]
    page.wait_for_selector(".swagger-ui .info .title", timeout=15000)
    assert "Touchpoints" in page.locator(".swagger-ui .info .title").inner_text()
    page.get_by_text("/api/events", exact=True).first.wait_for(timeout=15000)
    assert problems == []
    context.close()
