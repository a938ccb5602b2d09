"""The /report page: the report's figures and pygal charts inline, under a CSP that lets only
the charts' own styles apply; open on loopback, behind the operator login off it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from flows.web.app import create_app
from tests.reports import sample
from tests.web.test_api_support import make_key
from tests.web.test_operator_login import log_in
from tests.web.test_survey_browser import CHROMIUM, browser, server  # noqa: F401

SINCE = sample.SINCE.date().isoformat()
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "report-page.png"


@pytest.fixture
def report_server(server):  # noqa: F811 - the survey test's uvicorn fixture
    return server


def _filled(engine) -> None:
    with engine.store.session() as session:
        sample.fill(session)


def test_the_page_shows_the_figures_and_inline_charts_under_a_strict_csp(client, engine):
    _filled(engine)
    response = client.get("/report", params={"since": SINCE})
    assert response.status_code == 200
    html = response.text
    assert "OUT-1" in html and "p50 2.0 min, p95 10.0 min" in html
    assert html.count("<svg") == 4 and "<script" not in html
    assert not re.search(r'\sstyle="', html)  # no style attribute for the CSP to refuse
    csp = response.headers["content-security-policy"]
    styles = re.findall(r"<style[^>]*>(.*?)</style>", html, re.DOTALL)
    assert len(styles) == 4 and csp.count("'sha256-") == 4
    assert "script-src" not in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
    assert not re.search(r'(?:href|src)="(?!/|#|mailto:|data:)', html)  # nothing from elsewhere


def test_since_and_touchpoint_narrow_the_page_and_bad_values_are_explained(client, engine):
    _filled(engine)
    narrowed = client.get("/report", params={"since": "2026-11-24", "touchpoint": "outage"})
    assert narrowed.status_code == 200
    assert "OUT-2" in narrowed.text and "OUT-1" not in narrowed.text
    bad = client.get("/report", params={"since": "yesterday<script>"})
    assert bad.status_code == 400 and "YYYY-MM-DD" in bad.text and "<script>" not in bad.text
    unknown = client.get("/report", params={"touchpoint": "nope"})
    assert unknown.status_code == 200 and "no touch point" in unknown.text


def test_off_loopback_the_page_needs_an_operator_login(engine, dispatcher):
    with TestClient(create_app(engine, dispatcher, bind_host="0.0.0.0")) as public:
        response = public.get("/report", params={"since": SINCE}, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == "/login?next=%2Freport%3Fsince%3D" + SINCE
        _, key, _ = make_key(engine, "ops")
        assert log_in(public, key, next_="/report").headers["location"] == "/report"
        assert "Quality of service" in public.get("/report").text


# ----------------------------------------------------------------------------- a real browser
@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium is not installed at "
                    "/usr/bin/chromium (run .ci/browser-deps as root); browsers are never "
                    "downloaded")
def test_an_operator_reads_the_report_in_chromium(report_server, browser, engine):  # noqa: F811
    """Debian's Chromium: the charts draw in their own colours (their styles pass the CSP),
    nothing is refused or fetched from elsewhere; the screenshot goes to docs/report-page.png."""
    _filled(engine)
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text)
            if message.type in ("error", "warning") else None)
    page.on("requestfailed", lambda request: problems.append(f"failed: {request.url}"))
    page.on("request", lambda request: None if request.url.startswith(report_server)
            else problems.append(f"external: {request.url}"))

    page.goto(f"{report_server}/report?since={SINCE}")

    assert page.get_by_role("heading", level=1).inner_text() == "Quality of service"
    assert page.locator("figure svg").count() == 4
    assert page.get_by_role("img", name="NPS by week and touch point").is_visible()
    first_series = page.locator("figure svg .series.serie-0 .line").first
    assert first_series.evaluate("e => getComputedStyle(e).stroke") == "rgb(11, 110, 79)"
    title = page.locator("figure svg .title").first
    assert title.evaluate("e => getComputedStyle(e).fontSize") == "16px"
    assert page.evaluate("document.documentElement.scrollWidth") <= 1100
    sample_ = page.locator("table").first.inner_text()
    assert "install" in sample_ and "NPS" in sample_
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    page.get_by_label("Touch point", exact=True).select_option("outage")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**touchpoint=outage**")
    assert "OUT-1" in page.locator("main").inner_text()
    assert problems == []
    context.close()


def test_the_page_shows_every_weekly_figure_week_by_week(client, engine):
    _filled(engine)
    html = client.get("/report", params={"since": SINCE}).text
    table = html[html.index("<h2>Week by week</h2>"):html.index("<h2>Charts</h2>")]
    for week in range(44, 50):
        assert f">W{week}</th>" in table
    for figure in ("NPS", "CSAT %", "Acknowledged in SLA %", "Outages: notice p50 (min)",
                   "Survey response rate %"):
        assert f"<td>{figure}</td>" in table, figure
