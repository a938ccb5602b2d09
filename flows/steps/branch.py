"""branch: route each member down the first arm whose condition holds."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from flows.steps import register
from flows.steps.base import (
    Expression,
    Member,
    Outcome,
    Route,
    StepConfig,
    StepContext,
    StepKind,
    StepList,
)


class Arm(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    if_: Expression = Field(alias="if", description="Condition, e.g. steps.install_nps.score <= 6")
    steps: StepList


class BranchStep(StepConfig):
    """Evaluate ``when`` conditions in order; the first true one's steps run. ``else`` runs
    when none is true. Members who do not exit carry on after the branch."""

    kind: Literal["branch"] = "branch"
    when: list[Arm] = Field(min_length=1, description="Conditions tried in order, each `{if: <expression>, steps: [...]}`.")
    else_: StepList = Field(default_factory=list, alias="else")

    def children(self) -> list[tuple[str, list[StepConfig]]]:
        arms = [(f"if {arm.if_}", arm.steps) for arm in self.when]
        if self.else_:
            arms.append(("else", self.else_))
        return arms

    def describe(self) -> str:
        return f"branch ({len(self.when)} condition{'s' if len(self.when) != 1 else ''}" + \
               (", else)" if self.else_ else ")")

    def sample_result(self, examples=None) -> dict:
        return {"arm": 0, "label": "if …"}


def run(*, config: BranchStep, ctx: StepContext, members: list[Member]) -> dict[int, Outcome]:
    labels = [label for label, _ in config.children()]
    outcomes: dict[int, Outcome] = {}
    for member in members:
        chosen = None
        for index, arm in enumerate(config.when):
            if ctx.evaluate(arm.if_, member):
                chosen = index
                break
        if chosen is None and config.else_:
            chosen = len(config.when)
        outcomes[member.id] = Route(arm=chosen, result={
            "arm": chosen, "label": labels[chosen] if chosen is not None else "none"})
    return outcomes


register(StepKind(name="branch", config=BranchStep, run=run,
                  summary="Branch on conditions over the customer, the event and earlier step "
                          "results; each arm holds nested steps or an exit."))
