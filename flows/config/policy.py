"""The models of ``defaults.contact_policy`` and a touch point's ``holdout:`` share.

A contact rule caps the non-transactional email one customer gets across every touch point::

    contact_policy:
      - {max: 2, per: 7d}                                    # defer the third, any category
      - {max: 1, per: 14d, categories: [surveys], action: suppress}

The engine applies them at send time (:mod:`flows.engine.contact_policy`).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
)

from flows.durations import Duration, format_duration

#: the longest window a rule may count over (the ledger read is bounded by it)
MAX_WINDOW = timedelta(days=366)
MAX_HOLDOUT = 0.5
_SHARE = re.compile(r"^\s*(\d+(\.\d+)?)\s*%\s*$")


class ContactRule(BaseModel):
    """At most ``max`` emails of ``categories`` to one customer in any ``per``; the next one
    is deferred until the window frees up, or suppressed."""

    model_config = ConfigDict(extra="forbid")
    max: int = Field(ge=1, le=1000, description="How many emails the window may hold.")
    per: Duration = Field(description="The rolling window, e.g. 7d.")
    categories: list[str] | None = Field(
        None, min_length=1,
        description="Non-transactional categories the rule counts and limits (default: all of "
                    "them). Transactional mail is never limited.")
    action: Literal["defer", "suppress"] = Field(
        "defer", description="defer: send it when the window frees up; suppress: drop it.")

    @field_validator("per")
    @classmethod
    def _sensible_window(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("the window must be longer than nothing; write e.g. per: 7d")
        if value > MAX_WINDOW:
            raise ValueError(f"a window of {format_duration(value)} is longer than a year; "
                             "write at most per: 366d")
        return value

    def counts(self, category: str, transactional: dict[str, bool]) -> bool:
        """Whether mail of ``category`` is counted and limited by this rule."""
        if transactional.get(category, True):
            return False
        return self.categories is None or category in self.categories

    def describe(self) -> str:
        what = " or ".join(self.categories) if self.categories else "non-transactional"
        return f"at most {self.max} {what} email(s) per {format_duration(self.per)}"


def policy_problems(rules: list[ContactRule],
                    categories: dict[str, Any]) -> list[tuple[tuple, str]]:
    """(location under the rules, why) for each category a rule names that does not fit:
    unknown, or transactional."""
    out = []
    for index, rule in enumerate(rules):
        for position, name in enumerate(rule.categories or []):
            category = categories.get(name)
            loc = (index, "categories", position)
            if category is None:
                known = ", ".join(sorted(n for n, c in categories.items() if not c.transactional))
                out.append((loc, f"no category {name!r}; declare it under categories:, or use "
                                 f"one of: {known or '(none)'}"))
            elif category.transactional:
                out.append((loc, f"{name} is transactional, and transactional mail is never "
                                 "limited; remove it from the rule"))
    return out


def _share(value: Any) -> float:
    match = _SHARE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{value!r} is not a percentage; write e.g. holdout: 10%")
    share = float(match.group(1)) / 100
    if not 0 < share <= MAX_HOLDOUT:
        raise ValueError("a holdout is more than 0% and at most 50% of the entrants "
                         "(the rest must get the touch point to compare with)")
    return share


def _format_share(share: float) -> str:
    return f"{share * 100:g}%"


Share = Annotated[
    float,
    BeforeValidator(_share),
    PlainSerializer(_format_share, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*%\s*$",
                    "description": "A share of the entrants, e.g. 10%.", "examples": ["10%"]}),
]
