"""`touchpoints plan`: what a touch point compiles to, as text or a Mermaid diagram.

Only the step protocol is used (``describe()``, ``waits()``, ``children()``), so a new step
kind appears in plans with no edit here.
"""

from __future__ import annotations

from flows.durations import format_duration


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def describe_trigger(trigger) -> str:
    kind = trigger.kind
    if kind == "event":
        where = f" where {trigger.where}" if trigger.where else ""
        return f"when {trigger.event} arrives{where}"
    if kind == "date":
        at = trigger.at.strftime("%H:%M") if getattr(trigger, "at", None) else "09:00"
        return f"{trigger.date} at {at} (customer's timezone), once per contract cycle"
    if kind == "schedule":
        return f"on the schedule '{trigger.schedule}' (cron {trigger.cron})"
    if kind == "inactivity":
        return f"after {format_duration(trigger.inactivity)} without contact"
    if kind == "count":
        same = f" with the same {trigger.same}" if trigger.same else ""
        return f"on the {_ordinal(trigger.count)} {trigger.event} within {format_duration(trigger.within)}{same}"
    return kind


def describe_audience(touchpoint) -> str:
    audience = touchpoint.audience
    return "the event's customer" if audience == "customer" else f"every customer where {audience.segment}"


def plan_text(touchpoint) -> str:
    entry = touchpoint.entry
    lines = [f"touch point {touchpoint.name}  (Prefect flow '{touchpoint.name}')",
             f"  trigger:  {describe_trigger(touchpoint.trigger)}",
             f"  audience: {describe_audience(touchpoint)}",
             f"  entry:    {entry.rule}" + (f", keyed by {entry.key}" if entry.key else ""),
             "  steps:"]

    def walk(steps, depth: int) -> None:
        for step in steps:
            mark = "⏸ " if step.waits() else ("⑂ " if step.children() else "• ")
            lines.append(f"{'    ' * depth}  {mark}{step.id}: {step.describe()}")
            for label, child in step.children():
                lines.append(f"{'    ' * (depth + 1)}  {label}:")
                walk(child, depth + 2)

    walk(touchpoint.steps, 1)
    lines.append(f"{'    '}  ■ end")
    return "\n".join(lines)


def _label(text: str) -> str:
    """Mermaid label text: quotes and angle brackets become entities."""
    return (text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
            .replace(">", "&gt;").replace("\n", " "))


def plan_mermaid(touchpoint) -> str:
    lines = ["flowchart TD", f'  trigger(["{_label(describe_trigger(touchpoint.trigger))}"])']

    def node(step) -> str:
        text = _label(f"{step.id}: {step.describe()}")
        if step.waits():
            return f'  {step.id}[/"{text}"/]'
        if step.children():
            return f'  {step.id}{{"{text}"}}'
        return f'  {step.id}["{text}"]'

    def walk(steps, entry: str, edge_label: str | None = None) -> list[str]:
        """Draw ``steps`` after node ``entry``; returns the nodes the list ends at."""
        previous, label = [entry], edge_label
        for step in steps:
            lines.append(node(step))
            arrow = f' -->|"{_label(label)}"| ' if label else " --> "
            lines.extend(f"  {p}{arrow}{step.id}" for p in previous)
            label = None
            if step.ends():
                return []
            arms = step.children()
            if arms:
                ends = []
                for arm_label, arm_steps in arms:
                    ends += walk(arm_steps, step.id, arm_label)
                previous = ends + [step.id]  # members no arm takes carry on too
            else:
                previous = [step.id]
        return previous

    ends = walk(touchpoint.steps, "trigger")
    lines.append('  done(["end"])')
    lines.extend(f"  {p} --> done" for p in ends)
    return "\n".join(lines)
