"""`touchpoints plan`: what a touch point compiles to, as indented text or a Mermaid flowchart.

Steps are drawn through the step protocol only (``describe()``, ``waits()``, ``ends()`` and
the labels of ``children()``), never by their kind, so a new step kind shows up in plans with
no edit here. Triggers, audiences and entry rules are part of the language and are put in words.

Public API: :func:`plan_text`, :func:`plan_mermaid`, :func:`render_plans` and the three
``describe_*`` helpers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flows.durations import format_duration

#: plan marks: a step members may park at, one with nested arms, one every member leaves at
WAIT, BRANCH, STEP, EXIT, END = "⏸", "⑂", "•", "⏹", "■"
INDENT = "    "
#: the label of an arm every member left over takes (so none carries on past the branch)
CATCH_ALL = "else"

#: named schedules in words (the cron they stand for is printed next to them)
_SCHEDULE_WORDS = {"daily": "every day", "weekly": "every week", "monthly": "every month",
                   "quarterly": "every quarter", "yearly": "every year"}

ENTRY_WORDS = {
    "once_per_cycle": "once per customer per contract cycle",
    "once": "once per entry key, ever",
    "after_end": "again, but not while a journey for the same key is still running",
    "every_time": "every trigger starts a journey",
}


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# --------------------------------------------------------------------------- in words
def describe_trigger(trigger: Any) -> str:
    """The trigger in words, e.g. ``on the 3rd ticket.opened within 30d with the same category``."""
    kind = trigger.kind
    if kind == "event":
        where = f" (where {trigger.where})" if trigger.where else ""
        return f"when {trigger.event} arrives{where}"
    if kind == "date":
        return (f"{trigger.date} at {trigger.at.strftime('%H:%M')} in the customer's timezone, "
                "once per contract cycle")
    if kind == "schedule":
        named = _SCHEDULE_WORDS.get(trigger.schedule)
        return f"{named} (cron {trigger.cron}, UTC)" if named else f"on the cron schedule {trigger.cron} (UTC)"
    if kind == "inactivity":
        return f"after {format_duration(trigger.inactivity)} without contact"
    if kind == "count":
        same = f" with the same {trigger.same}" if trigger.same else ""
        return (f"on the {_ordinal(trigger.count)} {trigger.event} within "
                f"{format_duration(trigger.within)}{same}")
    return str(kind)


def describe_audience(touchpoint: Any) -> str:
    audience = touchpoint.audience
    if audience == "customer":
        return "the customer the trigger is about"
    return f"every customer where {audience.segment}"


def describe_entry(touchpoint: Any) -> str:
    entry = touchpoint.entry
    words = ENTRY_WORDS.get(entry.rule, "")
    text = f"{entry.rule}: {words}" if words else str(entry.rule)
    return text + (f"; keyed by {entry.key}" if entry.key else "")


def _mark(step: Any) -> str:
    if step.waits():
        return WAIT
    if step.children():
        return BRANCH
    if step.ends():
        return EXIT
    return STEP


# --------------------------------------------------------------------------- text
def plan_text(touchpoint: Any) -> str:
    """The plan as an indented tree: header lines, then every step, nested arms indented."""
    lines = [f"{touchpoint.name}  (Prefect flow '{touchpoint.name}'"
             + (", disabled)" if not getattr(touchpoint, "enabled", True) else ")"),
             f"  trigger:  {describe_trigger(touchpoint.trigger)}",
             f"  audience: {describe_audience(touchpoint)}",
             f"  entry:    {describe_entry(touchpoint)}",
             "  steps:"]

    def walk(steps: Iterable[Any], depth: int) -> None:
        pad = INDENT * (depth + 1)
        for step in steps:
            lines.append(f"{pad}{_mark(step)} {step.id}: {_one_line(step.describe())}")
            for label, child in step.children():
                lines.append(f"{pad}{INDENT}{_one_line(label)}:")
                walk(child, depth + 2)
                if not child:
                    lines.append(f"{pad}{INDENT * 2}(no steps)")

    walk(touchpoint.steps, 0)
    lines.append(f"{INDENT}{END} end")
    return "\n".join(lines)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# --------------------------------------------------------------------------- Mermaid
#: characters that would end or confuse a quoted Mermaid label, as Mermaid entity codes
#: (``#<decimal>;``, which Mermaid decodes itself in both HTML and SVG labels)
_MERMAID_CODES = {'"': "#34;", "#": "#35;", "&": "#38;", "<": "#60;", ">": "#62;",
                  "`": "#96;", "|": "#124;"}


def mermaid_label(text: str) -> str:
    """``text`` as the inside of a quoted Mermaid label: one line, special characters coded."""
    return "".join(_MERMAID_CODES.get(ch, ch) for ch in _one_line(text))


def plan_mermaid(touchpoint: Any) -> str:
    """A ``flowchart TD``: the trigger, a node per step (waits as parallelograms, branches as
    rhombi), edges in order, each arm as a labelled edge, and the end node. Node ids are
    ``s_<step id>`` (step ids are unique in a touch point), so no step id can clash with the
    ``start``/``finish`` nodes or a Mermaid keyword such as ``end``.

    After a step with arms, the ends of its arms lead on; so does the step itself ("no arm")
    unless one arm is labelled ``else``. A step that ``ends()`` leads nowhere."""
    lines = ["flowchart TD",
             f'  start(["{mermaid_label(describe_trigger(touchpoint.trigger))}"])']

    def node(step: Any) -> str:
        nid, text = f"s_{step.id}", mermaid_label(f"{step.id}: {step.describe()}")
        if step.waits():
            return f'  {nid}[/"{WAIT} {text}"/]'
        if step.children():
            return f'  {nid}{{"{text}"}}'
        if step.ends():
            return f'  {nid}[["{text}"]]'
        return f'  {nid}["{text}"]'

    def edge(source: str, target: str, label: str | None) -> str:
        arrow = f' -->|"{mermaid_label(label)}"| ' if label else " --> "
        return f"  {source}{arrow}{target}"

    def walk(steps: list[Any], entries: list[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
        """Draw ``steps`` reached from ``entries`` (node id, edge label); return the loose ends."""
        for step in steps:
            nid = f"s_{step.id}"
            lines.append(node(step))
            lines.extend(edge(source, nid, label) for source, label in entries)
            if step.ends():
                return []
            arms = step.children()
            if not arms:
                entries = [(nid, None)]
                continue
            entries = []
            for label, arm_steps in arms:
                entries += walk(arm_steps, [(nid, label)])
            if not any(label == CATCH_ALL for label, _ in arms):
                entries.append((nid, "no arm"))  # members no arm takes carry on
        return entries

    loose = walk(list(touchpoint.steps), [("start", None)])
    lines.append('  finish(["end"])')
    lines.extend(edge(source, "finish", label) for source, label in loose)
    return "\n".join(lines)


# --------------------------------------------------------------------------- several
def render_plans(config: Any, name: str | None = None, *, mermaid: bool = False) -> str:
    """The plan of touch point ``name`` (every touch point when None), text or Mermaid.

    An unknown name raises :class:`flows.errors.NotFoundError` with a did-you-mean hint.
    """
    touchpoints = [config.touchpoint(name)] if name else list(config.touchpoints.values())
    render = plan_mermaid if mermaid else plan_text
    if mermaid and len(touchpoints) > 1:
        # one diagram per touch point, each a fenced block so the output pastes into Markdown
        return "\n\n".join(f"## {tp.name}\n\n```mermaid\n{render(tp)}\n```" for tp in touchpoints)
    return "\n\n".join(render(tp) for tp in touchpoints)
