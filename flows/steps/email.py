"""email: send one templated email to the customer, the account owner or a team."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from flows.steps import register
from flows.steps.base import (
    CategoryRef,
    Defer,
    Header,
    Member,
    MessageSpec,
    Next,
    Outcome,
    StepConfig,
    StepContext,
    StepKind,
    TemplateName,
)

#: Delivery.status of an email not sent because the member's journey ended before it went
ENDED = "ended"
RECIPIENT = r"^(customer|account_owner|team:[a-z0-9][a-z0-9\-]*)$"


class EmailStep(StepConfig):
    """Send an email built from ``templates/<template>.txt`` and ``.html``."""

    kind: Literal["email"] = "email"
    to: str = Field("customer", pattern=RECIPIENT,
                    description="customer, account_owner, or team:<name>.")
    from_: Literal["company", "account_owner"] = Field(
        "company", alias="from", description="Send as the company or as the account owner.")
    subject: Header
    template: TemplateName
    category: CategoryRef

    def describe(self) -> str:
        return f"email {self.to}: {self.template} [{self.category}]"

    def messages(self) -> list[MessageSpec]:
        return [MessageSpec(to=self.to, template=self.template, subject=self.subject,
                            category=self.category)]

    def sample_result(self, examples=None) -> dict:
        return {"sent": True, "status": "sent", "reason": "", "message_id": "<sample@example>"}


def send_all(ctx: StepContext, requests: list[dict]) -> list:
    """The Deliveries of ``requests`` (each ``member`` plus ``send_email``'s keyword
    arguments): in one batch when the context can (the engine's), else one by one."""
    batch = getattr(ctx, "send_emails", None)
    if batch is not None:
        return batch(requests)
    return [ctx.send_email(r.pop("member"), **r) for r in (dict(r) for r in requests)]


def run(*, config: EmailStep, ctx: StepContext, members: list[Member]) -> dict[int, Outcome]:
    deliveries = send_all(ctx, [dict(member=m, to=config.to, sender=config.from_,
                                     template=config.template, subject=config.subject,
                                     category=config.category, step_id=config.id)
                                for m in members])
    outcomes: dict[int, Outcome] = {}
    for member, delivery in zip(members, deliveries, strict=True):
        if delivery.status == ENDED:  # the journey ended meanwhile: nothing more for them
            continue
        if delivery.status == "deferred":
            outcomes[member.id] = Defer(until=delivery.until, reason=delivery.reason)
        else:
            outcomes[member.id] = Next({"sent": delivery.ok, "status": delivery.status,
                                        "reason": delivery.reason, "message_id": delivery.message_id})
    return outcomes


register(StepKind(name="email", config=EmailStep, run=run,
                  summary="Send a templated email (text and HTML parts) to the customer, "
                          "their account owner or a team."))
