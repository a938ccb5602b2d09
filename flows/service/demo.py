"""The scripted story `touchpoints demo` plays through the real HTTP API of a running service:
a sale, an install, a first invoice, an outage with an updated estimate and a resolution, a
detractor answering the install survey on its web page, and a burst of recurring tickets."""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from flows import clock
from flows.errors import ServiceError

#: the demo's compressed clock, kept in its own data folder so it never leaks into real sends
CLOCK_FILE = "demo-clock.json"


def demo_data_dir(data_dir: Path) -> Path:
    """The demo's own data folder (store, mailbox, Prefect home), inside the usual one."""
    return data_dir / "demo"


def read_demo_clock(data_dir: Path) -> dict | None:
    try:
        return json.loads((data_dir / CLOCK_FILE).read_text())
    except (OSError, ValueError):
        return None


def demo_clock(data_dir: Path, speed: float) -> str | None:
    """The TOUCHPOINTS_CLOCK value for the demo in ``data_dir``: the one it was started with
    (so a second `touchpoints demo` goes on where the first stopped), or a new one written
    there. None at real speed."""
    from flows.private import private_dir, write_private

    kept = read_demo_clock(data_dir)
    if kept is not None:
        if float(kept.get("speed", 1)) != float(speed):
            raise ServiceError(f"the demo in {data_dir} runs {kept['speed']:g}× faster, not "
                               f"{speed:g}×: its journeys are dated on that clock",
                               hint=f"run `touchpoints demo --speed {kept['speed']:g}` to go on, "
                                    "or `touchpoints demo --fresh` to start a new demo")
        return kept.get("clock")
    value = clock.dilate(speed) if speed != 1 else None
    private_dir(data_dir)
    write_private(data_dir / CLOCK_FILE, json.dumps(
        {"speed": speed, "clock": value, "created_at": datetime.now(UTC).isoformat()}))
    return value


def guard_clock(data_dir: Path) -> None:
    """`serve` runs on real time, on a real store. It refuses a demo's data folder unless the
    demo's own clock is set (that is what `touchpoints demo` does), and refuses a compressed
    clock on any other folder: demo time must never reach real customers."""
    kept = read_demo_clock(data_dir)
    current = os.environ.get(clock.ENV) or None
    if kept is not None and current != kept.get("clock"):
        raise ServiceError(f"{data_dir} holds the demo's store, whose journey time runs "
                           f"{float(kept.get('speed', 1)):g}× faster than real time",
                           hint="run `touchpoints demo` to go on with the demo, or point "
                                "TOUCHPOINTS_DATA_DIR at your real data folder")
    if kept is None and current:
        raise ServiceError(f"TOUCHPOINTS_CLOCK is set ({current}): journey time would run "
                           "faster than real time and real customers would get mail early",
                           hint="unset TOUCHPOINTS_CLOCK; the compressed clock belongs to "
                                "`touchpoints demo`, which keeps it in its own data folder")

SURVEY_LINK = re.compile(r"(https?://[^\s\"'<>]+/s/[A-Za-z0-9_\-\.]+)")


def describe_answer(answer: dict) -> str:
    """What the intake did with an event, in words: started, woke, or skipped and why."""
    def names(key: str) -> list[str]:
        return [item if isinstance(item, str) else item.get("touchpoint") or item.get("journey_id", "?")
                for item in answer.get(key) or []]

    parts = []
    if names("started"):
        parts.append("started " + ", ".join(names("started")))
    if names("resumed"):
        parts.append("woke " + ", ".join(names("resumed")))
    for item in answer.get("skipped") or []:
        if isinstance(item, dict):
            parts.append(f"skipped {item.get('touchpoint', '?')} ({item.get('reason', '')})")
    if answer.get("duplicate"):
        parts.append("a duplicate: nothing new")
    return "; ".join(parts) or "started nothing (no touch point waits for it)"


class Story:
    def __init__(self, *, web_url: str, api_key: str, mailbox, examples: dict[str, dict],
                 say=print, run_id: str | None = None) -> None:
        self.examples = examples
        self.web_url = web_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.mailbox = mailbox
        self.say = say
        self.run_id = run_id or uuid.uuid4().hex[:6]
        self.steps = 0
        self.failures: list[str] = []

    def summary(self) -> str:
        if not self.failures:
            return f"story: all {self.steps} steps went through"
        return (f"story: {len(self.failures)} of {self.steps} steps failed:\n"
                + "\n".join(f"  ✗ {failure}" for failure in self.failures))

    def post(self, type: str, customer_id: str | None = None, **overrides) -> dict:
        """Post an event whose data is the catalogue's example with ``overrides`` on top, so
        every template finds the fields it documents."""
        data = {**self.examples.get(type, {}), **overrides}
        event = {"id": f"demo-{self.run_id}-{type}-{customer_id or data.get('outage_id', '')}-{uuid.uuid4().hex[:4]}",
                 "type": type, "data": data, "occurred_at": clock.now().isoformat()}
        if customer_id:
            event["customer_id"] = customer_id
        step = f"{type}{' for ' + customer_id if customer_id else ''}"
        self.steps += 1
        try:
            response = httpx.post(f"{self.web_url}/api/events", json=event, headers=self.headers,
                                  timeout=60)
        except httpx.HTTPError as exc:
            return self._failed(step, f"{exc.__class__.__name__}: {exc}")
        if response.status_code >= 300:
            return self._failed(step, f"HTTP {response.status_code}: {response.text[:300]}")
        answer = response.json()
        self.say(f"  → {step}: {describe_answer(answer)}")
        return answer

    def _failed(self, step: str, why: str) -> dict:
        self.failures.append(f"{step}: {why}")
        self.say(f"  ✗ {step} failed: {why}")
        return {}

    def play(self) -> dict:
        now = clock.now()
        outage = f"OUT-{self.run_id.upper()}"
        self.say("playing the story through the API:")
        self.post("contract.signed", "C-1001")
        self.post("install.scheduled", "C-1002",
                  appointment_start=(now + timedelta(days=1)).replace(hour=8, minute=0).isoformat(),
                  appointment_end=(now + timedelta(days=1)).replace(hour=13, minute=0).isoformat())
        self.post("install.completed", "C-1002", completed_at=now.isoformat())
        self.post("invoice.issued", "C-1003", first=True)
        self.post("outage.declared", outage_id=outage, regions=["north"])
        self.post("outage.updated", outage_id=outage, regions=["north"])
        self.post("outage.resolved", outage_id=outage, regions=["north"])
        for n, summary in enumerate(["Wi-Fi drops every evening", "Wi-Fi slow upstairs",
                                     "Wi-Fi dropped again during a call"]):
            self.post("ticket.opened", "C-1005", ticket_id=f"TCK-{self.run_id}-{n}", category="wifi",
                      summary=summary)
        return {"outage": outage}

    def answer_survey_as_detractor(self, customer_email: str, *, timeout: float, score: int = 3) -> bool:
        """Wait for a survey email to the customer in the catcher, then answer it on its page."""
        self.steps += 1
        if self._answer_survey(customer_email, timeout=timeout, score=score):
            return True
        self.failures.append(f"the install survey to {customer_email} was not answered "
                             f"within {timeout:.0f}s")
        return False

    def _answer_survey(self, customer_email: str, *, timeout: float, score: int) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for summary in reversed(self.mailbox.list()):
                if customer_email not in str(summary.to):
                    continue
                message = self.mailbox.get(summary.id)
                match = SURVEY_LINK.search(message.text or "")
                if match:
                    return self._answer(match.group(1), score)
            time.sleep(2)
        return False

    def _answer(self, url: str, score: int) -> bool:
        with httpx.Client(timeout=30, follow_redirects=True) as client:
            page = client.get(url)
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            form = {"score": str(score), "comment": "The engineer was late and nobody told me."}
            if token:
                form["csrf_token"] = token.group(1)
            answer = client.post(url, data=form, headers={"Origin": self.web_url})
        self.say(f"  → answered the survey at {url.split('/s/')[0]}/s/… with {score}: HTTP {answer.status_code}")
        return answer.status_code < 400
