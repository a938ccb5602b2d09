"""exit: the member leaves the journey, having reached a goal or for a reason."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from flows.steps import register
from flows.steps.base import Exit, Member, Outcome, StepConfig, StepContext, StepKind


class ExitStep(StepConfig):
    """End the journey for the member. Give exactly one of ``goal`` or ``reason``."""

    kind: Literal["exit"] = "exit"
    goal: str | None = None
    reason: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> ExitStep:
        if (self.goal is None) == (self.reason is None):
            raise ValueError("give exactly one of 'goal' (what was achieved) or 'reason'")
        return self

    def ends(self) -> bool:
        return True

    def describe(self) -> str:
        return f"exit: goal '{self.goal}'" if self.goal else f"exit: {self.reason}"


def run(*, config: ExitStep, ctx: StepContext, members: list[Member]) -> dict[int, Outcome]:
    text = config.goal or config.reason or ""
    return {m.id: Exit(reason=text, goal=config.goal is not None) for m in members}


register(StepKind(name="exit", config=ExitStep, run=run,
                  summary="End the journey with a goal reached or a reason."))
