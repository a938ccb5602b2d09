"""A customer answers a survey in a real browser (Debian's Chromium, never a downloaded one)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from flows.store.tables import Survey
from tests.web.support import add_customer, add_survey, add_waiting_journey, events, get, path_of

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "survey-page.png"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="Debian's Chromium is not installed at /usr/bin/chromium "
                              "(run .ci/browser-deps as root); browsers are never downloaded"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(app):
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


def test_a_customer_answers_the_survey_on_a_phone(server, browser, engine, launcher):
    customer = add_customer(engine)
    journey_id = add_waiting_journey(engine, customer)
    survey_id = add_survey(engine, customer, question="nps", journey_id=journey_id)
    url = server + path_of(engine.signer.url("survey", survey=survey_id))
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                  is_mobile=True, has_touch=True, java_script_enabled=False)
    page = context.new_page()
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.on("request", lambda request: None if request.url.startswith(server)
            else failed.append(f"external: {request.url}"))

    page.goto(url)

    assert page.title().startswith("One quick question")
    assert page.locator("fieldset legend").inner_text().startswith("How likely")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling

    page.get_by_label("9", exact=True).check()
    page.get_by_label("Anything you'd like to tell us?").fill("Quick, tidy install.")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    page.get_by_role("button", name="Send my answer").click()

    page.wait_for_url("**/thanks")
    assert page.get_by_role("heading", level=1).inner_text().startswith("Thank you")
    assert "9 out of 10" in page.locator("main").inner_text()
    survey = get(engine, Survey, survey_id)
    assert (survey.score, survey.comment) == (9, "Quick, tidy install.")
    assert [e.id for e in events(engine, "survey.answered")] == [f"survey-{survey_id}"]
    assert [r["journey_id"] for r in launcher.resumed] == [journey_id]

    page.goto(url)  # the link works once
    assert "can't be used any more" in page.locator("main").inner_text()
    assert failed == []
    context.close()
