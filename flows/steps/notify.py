"""notify: an internal email to a team (no consent or send window applies)."""

from __future__ import annotations

from typing import Literal

from flows.steps import register
from flows.steps.base import (
    Header,
    Member,
    MessageSpec,
    Next,
    Outcome,
    StepConfig,
    StepContext,
    StepKind,
    TeamRef,
    TemplateName,
)

INTERNAL = "internal"


class NotifyStep(StepConfig):
    """Tell a team something, e.g. the NOC that customers were notified."""

    kind: Literal["notify"] = "notify"
    team: TeamRef
    subject: Header
    template: TemplateName

    def describe(self) -> str:
        return f"notify team {self.team}: {self.template}"

    def messages(self) -> list[MessageSpec]:
        return [MessageSpec(to=f"team:{self.team}", template=self.template, subject=self.subject,
                            category=INTERNAL)]

    def sample_result(self, examples=None) -> dict:
        return {"sent": True, "status": "sent"}


def run(*, config: NotifyStep, ctx: StepContext, members: list[Member]) -> dict[int, Outcome]:
    outcomes: dict[int, Outcome] = {}
    for member in members:
        delivery = ctx.send_email(member, to=f"team:{config.team}", template=config.template,
                                  subject=config.subject, category=INTERNAL, step_id=config.id)
        outcomes[member.id] = Next({"sent": delivery.ok, "status": delivery.status})
    return outcomes


register(StepKind(name="notify", config=NotifyStep, run=run,
                  summary="Send an internal email to a team."))
