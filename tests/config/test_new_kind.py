"""A step kind registered from outside flows/steps is parsed, checked and put in the schema
through its field markers alone."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from flows import steps as registry
from flows.config import build_schema, check, load_config
from flows.steps.base import (
    CategoryRef,
    Expression,
    Header,
    Next,
    StepConfig,
    StepKind,
    StepList,
    TeamRef,
)
from tests.config.support import write_config


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid")
    team: TeamRef
    unless: Expression | None = None
    then: StepList


class FanOutStep(StepConfig):
    """Test-only kind: nested models holding marked fields and nested steps."""

    kind: Literal["fan_out"] = "fan_out"
    routes: list[Route]
    labels: list[CategoryRef] = Field(default_factory=list)
    banner: Header | None = None

    def sample_result(self, examples=None) -> dict:
        return {"routes": len(self.routes)}


@pytest.fixture
def fan_out():
    registry.load()
    kind = registry.register(StepKind(
        name="fan_out", config=FanOutStep, summary="test only",
        run=lambda *, config, ctx, members: {m.id: Next() for m in members}))
    yield kind
    registry._REGISTRY.pop("fan_out", None)


STEPS = """\
sale:
  description: Fan out.
  trigger: {event: contract.signed}
  audience: customer
  steps:
    - id: spread
      kind: fan_out
      labels: [service, @LABEL]
      banner: "@BANNER"
      routes:
        - team: @TEAM
          unless: "@UNLESS"
          then:
            - {id: inner, kind: exit, goal: "done"}
            - {id: @INNER_ID, kind: wait, for: 1d}
    - {id: after, kind: handoff, team: support, title: "{{ steps.spread.routes }}"}
"""


def _steps(**changes: str) -> str:
    values = {"LABEL": "surveys", "BANNER": "Hi {{ customer.name }}", "TEAM": "install",
              "UNLESS": "customer.plan == 'Business'", "INNER_ID": "pause"}
    text = STEPS
    for name, value in {**values, **changes}.items():
        text = text.replace(f"@{name}", value)
    return text


def test_a_new_kind_with_nested_steps_loads_with_no_other_edit(fan_out, tmp_path):
    config = load_config(write_config(tmp_path, _steps()))
    spread = config.touchpoint("sale").steps[0]
    assert isinstance(spread, FanOutStep)
    assert [type(s).__name__ for s in spread.routes[0].then] == ["ExitStep", "WaitStep"]


def test_a_new_kinds_marked_fields_are_checked_wherever_they_sit(fan_out, tmp_path):
    path = write_config(tmp_path, _steps(LABEL="surveyz", TEAM="instal", INNER_ID="spread",
                                         BANNER="{{ customer.nmae }}",
                                         UNLESS="steps.after.x"))
    assert [(d.path, d.message) for d in check(path)] == [
        ("touchpoints.sale.steps[0].labels[1]", "unknown category 'surveyz'"),
        ("touchpoints.sale.steps[0].banner", "'dict object' has no attribute 'nmae'"),
        ("touchpoints.sale.steps[0].routes[0].team", "unknown team 'instal'"),
        ("touchpoints.sale.steps[0].routes[0].unless", "'steps.after' is not an earlier step"),
        ("touchpoints.sale.steps[0].routes[0].then[1].id",
         "duplicate step id 'spread' (also touchpoints.sale.steps[0])"),
    ]


def test_a_new_kind_appears_in_the_schema_with_its_nested_steps(fan_out):
    schema = build_schema()
    assert schema["$defs"]["Step"]["discriminator"]["mapping"]["fan_out"] == \
        "#/$defs/FanOutStep"
    assert {"$ref": "#/$defs/FanOutStep"} in schema["$defs"]["Step"]["oneOf"]
    assert schema["$defs"]["Route"]["properties"]["then"]["items"] == {"$ref": "#/$defs/Step"}
