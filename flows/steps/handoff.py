"""handoff: create a task for a team with a due time from its SLA, and email the team."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import Field
from sqlalchemy import select

from flows.durations import format_duration
from flows.steps import register
from flows.steps.base import (
    Duration,
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
    Text,
)
from flows.store.tables import Task

INTERNAL = "internal"


class HandoffStep(StepConfig):
    """Hand a task to a team. Due after ``sla`` (default: the team's SLA); overdue tasks are
    escalated to the team's escalation contacts, level by level."""

    kind: Literal["handoff"] = "handoff"
    team: TeamRef
    title: Header
    body: Text = ""
    sla: Duration | None = None
    owner: str | None = Field(None, pattern=r"^(account_owner|[^@\s]+@[^@\s]+)$",
                              description="account_owner, or an email address.")
    template: TemplateName = Field("_system/handoff", description="Email to the team.")

    def describe(self) -> str:
        sla = f", SLA {format_duration(self.sla)}" if self.sla else ""
        owner = f", owner {self.owner}" if self.owner else ""
        return f"handoff to {self.team}{sla}{owner}"

    def messages(self) -> list[MessageSpec]:
        task = {"id": "T-preview", "title": self.title, "body": self.body, "team": self.team,
                "due_at": "2026-01-02T09:00:00+00:00", "owner": self.owner,
                "escalation": [{"after": 0, "to": "lead@example.com"}]}
        links = {"task": "http://127.0.0.1:8000/t/preview",
                 "ack": "http://127.0.0.1:8000/t/preview?action=ack",
                 "complete": "http://127.0.0.1:8000/t/preview?action=complete"}
        return [MessageSpec(to=f"team:{self.team}", template=self.template,
                            subject="{{ task.title }}", category=INTERNAL,
                            extra={"task": task, "links": links})]

    def sample_result(self, examples=None) -> dict:
        return {"task_id": "T-sample", "due_at": "2026-01-02T09:00:00+00:00",
                "team": self.team, "owner": "owner@example.com"}


def _owner(config: HandoffStep, member: Member) -> str | None:
    if config.owner == "account_owner":
        return member.customer.account_owner
    return config.owner


def run(*, config: HandoffStep, ctx: StepContext, members: list[Member]) -> dict[int, Outcome]:
    team = ctx.config.teams[config.team]
    outcomes: dict[int, Outcome] = {}
    for member in members:
        key = f"{ctx.journey_id}:{config.id}:{member.customer.id}"
        task = ctx.session.scalar(select(Task).where(Task.key == key))
        if task is None:
            task = Task(
                id=f"T-{uuid.uuid4().hex[:10]}", key=key, journey_id=ctx.journey_id,
                touchpoint=ctx.touchpoint.name, step_id=config.id, customer_id=member.customer.id,
                team=config.team, owner=_owner(config, member),
                title=ctx.render(config.title, member, header=True),
                body=ctx.render(config.body, member) if config.body else "",
                due_at=ctx.now + (config.sla or team.sla), created_at=ctx.now,
                escalations=[{"after": level.after.total_seconds(), "to": level.to}
                             for level in team.escalation],
            )
            ctx.session.add(task)
            ctx.session.flush()
            ctx.audit("handoff.created", customer_id=member.customer.id, result="created",
                      reason=f"task {task.id} for {config.team}, due {task.due_at.isoformat()}",
                      detail={"task_id": task.id, "team": config.team, "owner": task.owner})
        task_view = {"id": task.id, "title": task.title, "body": task.body, "team": task.team,
                     "due_at": task.due_at, "owner": task.owner, "escalation": task.escalations}
        links = {"task": ctx.link("task", task=task.id),
                 "ack": ctx.link("task-ack", task=task.id),
                 "complete": ctx.link("task-complete", task=task.id)}
        recipients = [f"team:{config.team}"] + ([task.owner] if task.owner else [])
        for to in recipients:
            ctx.send_email(member, to=to, template=config.template, subject="{{ task.title }}",
                           category=INTERNAL, step_id=config.id,
                           extra={"task": task_view, "links": links}, key=to)
        outcomes[member.id] = Next({"task_id": task.id, "due_at": task.due_at.isoformat(),
                                    "team": task.team, "owner": task.owner})
    return outcomes


register(StepKind(name="handoff", config=HandoffStep, run=run,
                  summary="Create a task for a team with a title, a body and a due time from "
                          "the SLA; email the team (and the owner) with acknowledge and "
                          "complete links."))
