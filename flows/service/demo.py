"""The scripted story `touchpoints demo` plays through the real HTTP API of a running service:
a sale, an install, a first invoice, an outage with an updated estimate and a resolution, a
detractor answering the install survey on its web page, and a burst of recurring tickets."""

from __future__ import annotations

import re
import time
import uuid
from datetime import timedelta

import httpx

from flows import clock

SURVEY_LINK = re.compile(r"(https?://[^\s\"'<>]+/s/[A-Za-z0-9_\-\.]+)")


class Story:
    def __init__(self, *, web_url: str, api_key: str, mailbox, examples: dict[str, dict],
                 say=print, run_id: str | None = None) -> None:
        self.examples = examples
        self.web_url = web_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.mailbox = mailbox
        self.say = say
        self.run_id = run_id or uuid.uuid4().hex[:6]

    def post(self, type: str, customer_id: str | None = None, **overrides) -> dict:
        """Post an event whose data is the catalogue's example with ``overrides`` on top, so
        every template finds the fields it documents."""
        data = {**self.examples.get(type, {}), **overrides}
        event = {"id": f"demo-{self.run_id}-{type}-{customer_id or data.get('outage_id', '')}-{uuid.uuid4().hex[:4]}",
                 "type": type, "data": data, "occurred_at": clock.now().isoformat()}
        if customer_id:
            event["customer_id"] = customer_id
        response = httpx.post(f"{self.web_url}/api/events", json=event, headers=self.headers, timeout=60)
        response.raise_for_status()
        answer = response.json()
        started = ", ".join(answer.get("started") or []) or "nothing new"
        self.say(f"  → {type}{' for ' + customer_id if customer_id else ''}: started {started}")
        return answer

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
