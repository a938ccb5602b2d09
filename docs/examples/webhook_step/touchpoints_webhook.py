"""webhook: POST a JSON payload about each customer to a URL (a CRM, a chat channel…).

A worked example of a step kind that lives in its own package and registers through the
``touchpoints.steps`` entry point (see pyproject.toml): importing this module registers the
kind. docs/extending.md walks through it; tests/steps/test_extension.py loads it through the
entry point and runs it against a real HTTP server.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any, Literal

import httpx
from pydantic import Field

from flows.steps import register
from flows.steps.base import (
    Duration,
    Member,
    Next,
    Outcome,
    StepConfig,
    StepContext,
    StepKind,
    Text,
)


class WebhookStep(StepConfig):
    """POST ``payload`` as JSON to ``url``, once per member. The payload's values are
    templates, rendered for each customer. Connection errors, timeouts and 5xx answers are
    retried ``retries`` times, waiting ``backoff_seconds`` and then twice as long each time.
    Each request carries an ``Idempotency-Key`` header (journey:step:customer), so a receiver
    can drop the repeat of a retried batch. A call that still fails is recorded in the audit
    trail and in ``steps.<id>.error``; the journey carries on."""

    kind: Literal["webhook"] = "webhook"
    url: str = Field(pattern=r"^https?://", description="Where to POST.",
                     examples=["https://crm.example.com/hooks/touchpoints"])
    payload: dict[str, Text] = Field(
        default_factory=dict, description="The JSON body; each value is a template.",
        examples=[{"customer_id": "{{ customer.id }}", "plan": "{{ customer.plan }}"}])
    timeout: Duration = Field(timedelta(seconds=10), description="Per request.")
    retries: int = Field(3, ge=0, le=10, description="Retries after the first attempt.")
    backoff_seconds: float = Field(1.0, ge=0, le=60, description="The first wait between "
                                                                 "attempts; it doubles.")

    def describe(self) -> str:
        return f"POST to {self.url}"

    def sample_result(self, examples=None) -> dict:
        return {"status": 200, "attempts": 1}


def _post(client: httpx.Client, config: WebhookStep, body: dict[str, Any],
          key: str) -> tuple[int, int]:
    """POST with retries; returns (status, attempts). Raises RuntimeError when out of tries."""
    delay, error = config.backoff_seconds, ""
    for attempt in range(1, config.retries + 2):
        try:
            response = client.post(config.url, json=body, headers={"Idempotency-Key": key})
            if response.status_code < 500:
                return response.status_code, attempt
            error = f"HTTP {response.status_code}"
        except httpx.TransportError as exc:  # connection refused, reset, timed out…
            error = f"{type(exc).__name__}: {exc}"
        if attempt <= config.retries:
            time.sleep(delay)
            delay *= 2
    raise RuntimeError(f"{error} after {config.retries + 1} attempts")


def run(*, config: WebhookStep, ctx: StepContext, members: list[Member]) -> dict[int, Outcome]:
    outcomes: dict[int, Outcome] = {}
    with httpx.Client(timeout=config.timeout.total_seconds()) as client:  # one per batch
        for member in members:
            customer = member.customer.id
            body = {name: ctx.render(value, member) for name, value in config.payload.items()}
            key = f"{ctx.journey_id}:{config.id}:{customer}"
            try:
                status, attempts = _post(client, config, body, key)
            except RuntimeError as exc:
                ctx.audit("webhook.failed", customer_id=customer, result="failed",
                          reason=f"POST {config.url}: {exc}", detail={"url": config.url})
                outcomes[member.id] = Next({"status": None, "error": str(exc)})
                continue
            ctx.audit("webhook.posted", customer_id=customer,
                      result="sent" if status < 400 else "rejected",
                      reason=f"POST {config.url}: HTTP {status} after {attempts} attempt(s)",
                      detail={"url": config.url, "status": status, "attempts": attempts})
            outcomes[member.id] = Next({"status": status, "attempts": attempts})
    return outcomes


register(StepKind(name="webhook", config=WebhookStep, run=run, origin="touchpoints_webhook",
                  summary="POST a JSON payload about the customer to a URL, with retries."))
