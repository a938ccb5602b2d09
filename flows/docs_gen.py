"""docs/reference.md, generated from the step registry and the config models, so a new step
kind is documented with no other edit. `touchpoints docs --check` fails when it is stale."""

from __future__ import annotations

import inspect
import json
from typing import Any, get_args, get_origin

from flows.steps import kinds
from flows.steps.base import Marker

MARKER_WORDS = {
    "expression": "expression", "text": "template text", "header": "one-line template",
    "template": "template name", "team": "team name", "event": "event type",
    "category": "email category", "step": "earlier step id", "steps": "nested steps",
}


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is None:
        return getattr(annotation, "__name__", str(annotation)).replace("timedelta", "duration")
    args = [a for a in get_args(annotation) if a is not type(None)]
    name = getattr(origin, "__name__", str(origin))
    if name in ("Union", "UnionType"):
        return " | ".join(_type_name(a) for a in args)
    if name == "Literal":
        return " \\| ".join(repr(a) for a in get_args(annotation))
    if name == "Annotated":
        return _type_name(args[0])
    return f"{name}[{', '.join(_type_name(a) for a in args)}]"


def _marker(field) -> str:
    for item in field.metadata:
        if isinstance(item, Marker):
            return MARKER_WORDS.get(item.kind, item.kind)
    return ""


def _default(field) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "optional"
    if hasattr(value, "total_seconds"):
        from flows.durations import format_duration

        return f"`{format_duration(value)}`"
    return f"`{json.dumps(value, default=str)}`"


def _fields_table(model) -> list[str]:
    rows = ["| field | type | default | checked as | description |", "| --- | --- | --- | --- | --- |"]
    for name, field in model.model_fields.items():
        if name in ("kind",):
            continue
        yaml_name = field.alias or name
        rows.append(f"| `{yaml_name}` | {_type_name(field.annotation)} | {_default(field)} | "
                    f"{_marker(field)} | {(field.description or '').replace('|', '/')} |")
    return rows


def render_reference() -> str:
    out = ["# Reference", "",
           "Generated from the code by `touchpoints docs`; do not edit by hand. Ops leads start at "
           "[getting-started.md](getting-started.md); the language is described in "
           "[architecture.md](architecture.md).", "", "## Step kinds", ""]
    registry = kinds()
    out += [f"* [`{name}`](#{name.replace('_', '-')}): {kind.summary}" for name, kind in registry.items()]
    for name, kind in registry.items():
        model = kind.config
        out += ["", f"### {name}", "", kind.summary, ""]
        doc = inspect.getdoc(model)
        if doc:
            out += [doc, ""]
        out += _fields_table(model)
        out += ["", f"Registered by `{kind.run.__module__}`."]
    out += ["", "## What `steps.<id>` holds", "",
            "Later steps, conditions and templates read an earlier step's result as `steps.<id>`. "
            "An example per kind:", ""]
    for name, kind in registry.items():
        sample = _sample_result(kind.config)
        if sample:
            out.append(f"* `{name}`: `{json.dumps(sample, default=str)}`")
    out += ["", "## Triggers", "",
            "| form | example |", "| --- | --- |",
            "| event | `{event: contract.signed, where: \"event.data.plan != 'trial'\"}` |",
            "| date | `{date: \"90d before contract_end\", at: \"09:00\"}` |",
            "| schedule | `{schedule: quarterly}` or a cron such as `{schedule: \"0 9 1 */3 *\"}` |",
            "| inactivity | `{inactivity: 30d}` |",
            "| count | `{count: 3, event: ticket.opened, within: 30d, same: category}` |",
            "", "## Engine events", "",
            "The engine emits `survey.answered`, `task.acknowledged` and `task.completed`; a "
            "`wait_for` step can wait for them. Their `data` names the `journey_id` and `step_id` "
            "they answer, and their `result` is merged into `steps.<step_id>`.", "",
            "## Email categories", "",
            "Every email names a category from `categories:`. Transactional categories (outage, "
            "billing, service) cannot be turned off and ignore the send window; the others carry "
            "an unsubscribe link, `List-Unsubscribe` and `List-Unsubscribe-Post` headers, are "
            "checked against the customer's consent and holds at send time, and are deferred to "
            "the send window in the customer's timezone.", ""]
    return "\n".join(out)


def _sample_result(model) -> dict:
    """The kind's own example of its result, on a placeholder config (no validation)."""
    placeholders = {name: f"<{field.alias or name}>" for name, field in model.model_fields.items()
                    if field.is_required()}
    return model.model_construct(**placeholders).sample_result({})
