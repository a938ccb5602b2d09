"""webhook: POST a JSON payload about each customer to a URL (a CRM, a chat channel…).

A worked example of a step kind that lives in its own package and registers through the
``touchpoints.steps`` entry point. Importing this module registers the kind.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any, Literal

import httpx
from pydantic import Field

from flows.steps import register
from flows.steps.base import Duration, Member, Next, Outcome, StepConfig, StepContext, StepKind, Text


class WebhookStep(StepConfig):
    """POST ``payload`` (its string values are templates) as JSON to ``url``, once per member.
    Connection errors and 5xx answers are retried ``retries`` times with a doubling back-off."""

    kind: Literal["webhook"] = "webhook"
    url: str = Field(pattern=r"^https?://", description="Where to POST.")
    payload: dict[str, Text] = Field(default_factory=dict, description="JSON body; values are templates.")
    timeout: Duration = timedelta(seconds=10)
    retries: int = Field(3, ge=1, le=10)
    backoff_seconds: float = Field(1.0, ge=0, description="First back-off; doubles each retry.")

    def describe(self) -> str:
        return f"POST to {self.url}"

    def sample_result(self, examples=None) -> dict:
        return {"status": 200, "attempts": 1}


def _post(config: WebhookStep, body: dict[str, Any]) -> tuple[int, int]:
    delay, last_error = config.backoff_seconds, None
    for attempt in range(1, config.retries + 1):
        try:
            response = httpx.post(config.url, json=body, timeout=config.timeout.total_seconds())
            if response.status_code < 500:
                return response.status_code, attempt
            last_error = f"HTTP {response.status_code}"
        except httpx.TransportError as exc:
            last_error = str(exc)
        if attempt < config.retries:
            time.sleep(delay)
            delay *= 2
    raise RuntimeError(f"POST {config.url} failed after {config.retries} attempts: {last_error}")


def run(*, config: WebhookStep, ctx: StepContext, members: list[Member]) -> dict[int, Outcome]:
    outcomes: dict[int, Outcome] = {}
    for member in members:
        body = {key: ctx.render(value, member) for key, value in config.payload.items()}
        try:
            status, attempts = _post(config, body)
        except RuntimeError as exc:
            ctx.audit("webhook.failed", customer_id=member.customer.id, result="failed", reason=str(exc))
            outcomes[member.id] = Next({"status": None, "error": str(exc)})
            continue
        ctx.audit("webhook.posted", customer_id=member.customer.id, result=str(status),
                  reason=f"POST {config.url} ({attempts} attempt{'s' if attempts > 1 else ''})")
        outcomes[member.id] = Next({"status": status, "attempts": attempts})
    return outcomes


register(StepKind(name="webhook", config=WebhookStep, run=run, origin="touchpoints_webhook",
                  summary="POST a JSON payload about the customer to a URL, with retries."))
