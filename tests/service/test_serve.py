"""`touchpoints serve` end to end: events through the API become served Prefect runs that send
real mail; waits are scheduled flow runs; a detractor's answer on the survey page takes the
recovery branch; an overdue task is escalated once per level; and after a SIGKILL and a
restart every waiting journey still fires and nothing is sent twice."""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx
import pytest

pytestmark = pytest.mark.e2e

SURVEY_LINK = re.compile(r"(http://127\.0\.0\.1:\d+/s/[A-Za-z0-9_\-\.]+)")


def to(address: str):
    return lambda m: address in m["to"]


def subject(text: str):
    return lambda m: text in m["subject"]


def both(*predicates):
    return lambda m: all(p(m) for p in predicates)


def flow_runs(service, name_prefix: str) -> list:
    from prefect.client.orchestration import PrefectClient

    async def read():
        async with PrefectClient(f"{service.info['prefect_url']}/api") as client:
            return [r for r in await client.read_flow_runs(limit=200) if r.name.startswith(name_prefix)]

    return asyncio.run(read())


def test_an_event_posted_to_the_api_sends_mail_through_a_served_deployment(service):
    answer = service.post_event("ping", "T-1")

    assert answer["started"] == ["ping"]
    first = service.wait_for_mail(both(to("ada@example.com"), subject("First hello")))
    assert "Ada" in first[0]["text"]


def test_a_wait_is_a_scheduled_flow_run_that_fires_on_time(service):
    service.wait_for_mail(both(to("ada@example.com"), subject("First hello")))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not flow_runs(service, "T-1 · pause"):
        time.sleep(1)
    assert flow_runs(service, "T-1 · pause"), "the wait did not become a scheduled flow run"

    service.wait_for_mail(both(to("ada@example.com"), subject("Second hello")), timeout=120)


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def answer_in_chromium(url: str, score: int, comment: str) -> str:
    """Open the link in Debian's Chromium, pick a score, write a comment, submit; returns the
    text of the page that follows."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})
            page.goto(url)
            page.check(f"#score-{score}")
            page.fill("#comment", comment)
            page.get_by_role("button", name="Send my answer").click()
            page.wait_for_load_state()
            return page.inner_text("body")
        finally:
            browser.close()


@pytest.mark.browser
def test_a_detractor_answer_in_a_real_browser_takes_the_recovery_branch(service):
    import os

    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    survey = service.wait_for_mail(both(to("ada@example.com"), subject("One question")), timeout=120)
    url = SURVEY_LINK.search(survey[0]["text"]).group(1)  # the link from the caught email

    thanks = answer_in_chromium(url, 3, "Slow to fix my line")

    assert "thank" in thanks.lower()
    handoff = service.wait_for_mail(both(to("care@isp.example"), subject("Call Ada Lovelace back (scored 3)")),
                                    timeout=90)
    assert "Slow to fix my line" in handoff[0]["text"]


def test_an_overdue_task_is_escalated_once_per_level(service):
    service.wait_for_mail(to("care@isp.example"), timeout=120)
    service.wait_for_mail(to("care-lead@isp.example"), timeout=60)
    service.wait_for_mail(to("care-director@isp.example"), timeout=60)
    time.sleep(12)  # two more housekeeping ticks: no level may be escalated twice

    assert len([m for m in service.mail() if "care-lead@isp.example" in m["to"]]) == 1
    assert len([m for m in service.mail() if "care-director@isp.example" in m["to"]]) == 1


def test_after_a_sigkill_and_a_restart_waiting_journeys_fire_and_nothing_is_sent_twice(service):
    service.post_event("ping", "T-2", event_id="restart-1")
    service.wait_for_mail(both(to("grace@example.com"), subject("First hello")))
    sent_at = time.monotonic()

    service.kill()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{service.web}/healthz", timeout=2)
    time.sleep(max(0.0, 25 - (time.monotonic() - sent_at)))  # the 20 s wait falls due while down
    service.start()

    service.wait_for_mail(both(to("grace@example.com"), subject("Second hello")), timeout=150)
    mail = [m for m in service.mail() if "grace@example.com" in m["to"]]
    assert len([m for m in mail if "First hello" in m["subject"]]) == 1
    assert len([m for m in mail if "Second hello" in m["subject"]]) == 1
    again = service.post_event("ping", "T-2", event_id="restart-1")
    assert again["duplicate"] is True


def test_an_event_accepted_just_before_a_kill_starts_its_journey_after_the_restart(service):
    service.post_event("ping", "T-3", event_id="accepted-then-killed")  # 202: it is stored
    service.kill()
    service.start()

    service.wait_for_mail(both(to("alan@example.com"), subject("First hello")), timeout=150)
    assert len([m for m in service.mail() if "alan@example.com" in m["to"]]) == 1


def test_a_thousand_concurrent_posts_of_one_event_start_one_journey_and_never_a_500(service):
    from collections import Counter

    event = {"id": "one-event-many-posts", "type": "ping", "customer_id": "T-4", "data": {}}
    headers = {"Authorization": f"Bearer {service.info['api_key']}"}

    async def post_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=service.web, limits=limits, timeout=120) as client:
            return await asyncio.gather(*[client.post("/api/events", json=event, headers=headers)
                                          for _ in range(1000)])

    answers = asyncio.run(post_all())
    codes = Counter(r.status_code for r in answers)
    assert set(codes) <= {200, 202, 503}, codes
    assert codes[200] + codes[202] >= 1
    assert all("retry-after" in r.headers for r in answers if r.status_code == 503)
    assert httpx.get(f"{service.web}/healthz", timeout=10).status_code == 200
    service.wait_for_mail(both(to("katherine@example.com"), subject("First hello")), timeout=120)
    time.sleep(3)
    assert len([m for m in service.mail() if "katherine@example.com" in m["to"]
                and "First hello" in m["subject"]]) == 1
    journeys = json.loads(service.cli("journeys", "--customer", "T-4", "--json").stdout)
    assert len([j for j in journeys if j["touchpoint"] == "ping"]) == 1, journeys


def test_a_served_flow_run_is_forked_warm_from_the_runners_fork_server(service):
    import os

    import psutil

    def cmdline(process) -> list[str]:
        try:
            return process.cmdline()
        except psutil.Error:  # ended in between
            return []

    runner = psutil.Process(service.info["children"]["runner"])
    servers = [p for p in runner.children()
               if os.getsid(p.pid) == p.pid and cmdline(p) == runner.cmdline()]
    assert len(servers) == 1, runner.children()  # forked from the runner, a session of its own
    fork_server = servers[0]
    service.post_event("ping", "T-3")
    runs, launchers, deadline = [], [], time.monotonic() + 120
    while not runs and time.monotonic() < deadline:  # a run lives for a second or more
        launchers = [p for p in runner.children() if "flows.service.runlauncher" in cmdline(p)]
        runs = fork_server.children()
        time.sleep(0.02)
    assert runs, "no flow run was forked"
    assert launchers  # what Prefect started and watches, standing in for the forked run
    service.wait_for_mail(both(to("alan@example.com"), subject("First hello")), count=1)


def test_when_a_part_dies_serve_says_so_and_exits_non_zero(service):
    import os
    import signal

    runner = service.info["children"]["runner"]

    os.kill(runner, signal.SIGKILL)

    code = service.proc.wait(60)
    assert code != 0
    assert "a part died" in service.log() and "runner" in service.log()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{service.web}/healthz", timeout=2)
    # the stop wrote a signed audit checkpoint after its last audit row (the key revocation)
    head = json.loads(service.cli("audit", "head", "--json").stdout)
    last = json.loads((service.data / "audit-checkpoints.jsonl").read_text().splitlines()[-1])
    assert (last["seq"], last["hash"]) == (head["rows"], head["hash"])
    assert "reaches the signed checkpoint" in service.cli("audit", "verify").stdout
