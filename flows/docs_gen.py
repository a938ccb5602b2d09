"""docs/reference.md, generated from the step registry and the config models.

Everything about a step kind comes from what it registered: its summary, its config model's
docstring and fields (YAML key, type, default, marker, description), an example built from the
model and checked by parsing it through the registry, what ``sample_result()`` says
``steps.<id>`` holds and the extra template names its ``messages()`` add. A new kind, built in
or from a plugin, is documented with no edit here. ``touchpoints docs --check`` fails when the
file on disk is stale; CI runs it.

Public API: :func:`render_reference`, :func:`example_step` and :data:`REFERENCE`.
"""

from __future__ import annotations

import inspect
import json
import types
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, WithJsonSchema
from pydantic.fields import FieldInfo

#: where `touchpoints docs` writes by default (relative to the project)
REFERENCE = Path("docs/reference.md")

#: how each field marker reads in the "checked as" column
MARKER_WORDS = {
    "expression": "expression", "text": "template text", "header": "one-line template",
    "template": "template name", "team": "team name", "event": "event type",
    "category": "email category", "step": "earlier step id", "steps": "nested steps",
}

#: sample values for marked fields, used to build the examples
MARKER_SAMPLES: dict[str, Any] = {
    "expression": "customer.plan == 'Fibre 500'",
    "text": "Hello {{ customer.first_name }}",
    "header": "About your {{ customer.plan }} service",
    "template": "my-touchpoint/message",
    "team": "support",
    "event": "survey.answered",
    "category": "surveys",
    "step": "earlier_step",
}

#: sample values and names for scalar types
_SCALARS: dict[Any, tuple[str, Any]] = {
    str: ("string", None), int: ("integer", 1), float: ("number", 1.0), bool: ("true/false", True),
    timedelta: ("duration", "3d"), time: ("time of day (HH:MM)", "09:00"),
    date: ("date", "2026-01-01"), datetime: ("date and time", "2026-01-01T09:00:00+00:00"),
}
_SPECIAL_NAMES = {"RelativeTime": "relative date (e.g. `60d before contract_end`)"}

CONTEXT_NAMES = {
    "customer": "The member's customer.",
    "event": "The event being handled (the trigger, or the event a `wait_for` step received).",
    "trigger": "The event that started the journey. Date, inactivity, schedule and count "
               "triggers have an event the engine builds (see Triggers).",
    "steps": "Results of earlier steps by id (see below).",
    "company": "The sender from `defaults:`.",
    "journey": "The journey being run.",
    "links": "Signed links for this member; `survey`, `task`, `ack` and `complete` only in "
             "survey and handoff emails.",
    "task": "In handoff and notify emails: the task.",
    "now": "The current time (UTC, timezone-aware).",
}

ENTRY_RULE_WORDS = {
    "once_per_cycle": "Once per customer per contract cycle (`contract_start`). The default for "
                      "customer audiences.",
    "once": "Once per key, ever.",
    "after_end": "Again, but not while a journey for the same key is still running.",
    "every_time": "Every trigger starts a journey. The default for segment audiences (keyed by "
                  "the event id).",
}

TRIGGER_EXAMPLES = {
    "event": ("{event: contract.signed, where: \"event.data.plan != 'trial'\"}",
              "when the event arrives and `where` (if given) is true"),
    "date": ("{date: \"90d before contract_end\", at: \"09:00\"}",
             "once per customer per contract cycle, at `at` in the customer's timezone"),
    "schedule": ("{schedule: quarterly} or {schedule: \"0 9 1 */3 *\"}",
                 "daily, weekly, monthly, quarterly, yearly (09:00 UTC) or a 5-field cron (UTC)"),
    "inactivity": ("{inactivity: 30d}", "when there was no contact with the customer for that long"),
    "count": ("{count: 3, event: ticket.opened, within: 30d, same: category}",
              "on the n-th such event within the window, grouped by `event.data.<same>`"),
}
TRIGGER_EVENTS = {
    "date": "`date.trigger`, data `{field, date, fires_at}`",
    "inactivity": "`inactivity.trigger`, data `{last_contact}`",
    "schedule": "`schedule`, data `{schedule}` (the touch point's name), no customer",
    "count": "the counted event's type, data `{category, count, history}` (`history`: the "
             "counted events as `{id, occurred_at, data}`)",
}


# --------------------------------------------------------------------------- annotations
def _strip(annotation: Any) -> tuple[Any, list[Any]]:
    """``annotation`` without ``Annotated`` and ``| None``, and the metadata met on the way."""
    metadata: list[Any] = []
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            metadata.extend(annotation.__metadata__)
            annotation = annotation.__origin__
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation, metadata
            annotation = args[0]
        else:
            return annotation, metadata


def _schema_examples(metadata: list[Any]) -> list[Any]:
    for item in metadata:
        if isinstance(item, WithJsonSchema) and item.json_schema:
            return list(item.json_schema.get("examples") or [])
    return []


def type_name(annotation: Any) -> str:
    """A field's type in words: ``duration``, ``list of string``, ``'nps' or 'csat'``…"""
    annotation, _ = _strip(annotation)
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return " or ".join(f"`{a}`" for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in args if a is not type(None))
    if origin in (list, tuple, set, frozenset):
        return f"list of {type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping of {type_name(args[1])}" if len(args) == 2 else "mapping"
    if annotation in _SCALARS:
        return _SCALARS[annotation][0]
    name = getattr(annotation, "__name__", str(annotation))
    if annotation is Any:
        return "any"
    return _SPECIAL_NAMES.get(name, name)


def _marker(info: FieldInfo) -> str | None:
    from flows.config.parsing import field_marker

    return field_marker(info)


def _nested_models(info: FieldInfo) -> list[type[BaseModel]]:
    from flows.config.parsing import model_types

    stripped, metadata = _strip(info.annotation)
    if _schema_examples(list(info.metadata) + metadata):
        return []  # a model written as a string (e.g. a relative date): documented as a scalar
    return [m for m in model_types(stripped) if m.__name__ not in _SPECIAL_NAMES]


def _cell(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "**required**"
    value = info.get_default(call_default_factory=True)
    if value is None:
        return "optional"
    if isinstance(value, timedelta):
        from flows.durations import format_duration

        return f"`{format_duration(value)}`"
    if isinstance(value, time):
        return f"`{value:%H:%M}`"
    return f"`{json.dumps(value, default=str, ensure_ascii=False)}`"


def fields_table(model: type[BaseModel], *, skip: tuple[str, ...] = ("kind",)) -> list[str]:
    """A Markdown table of a model's fields as an ops lead writes them."""
    rows = ["| field | type | default | checked as | description |",
            "| --- | --- | --- | --- | --- |"]
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        marker = _marker(info)
        kind = "list of steps" if marker == "steps" else type_name(info.annotation)
        rows.append(f"| `{info.alias or name}` | {_cell(kind)} | "
                    f"{_default(info)} | {MARKER_WORDS.get(marker, marker or '')} | "
                    f"{_cell(info.description or '')} |")
    return rows


def _model_section(model: type[BaseModel], heading: str, seen: set[type]) -> list[str]:
    """Tables of the models nested in ``model``'s fields (e.g. a branch's arms)."""
    out: list[str] = []
    for name, info in model.model_fields.items():
        for nested in _nested_models(info):
            if nested in seen:
                continue
            seen.add(nested)
            out += ["", f"{heading} `{info.alias or name}`: {nested.__name__}", ""]
            doc = inspect.getdoc(nested)
            if doc and doc != inspect.getdoc(BaseModel):
                out += [doc, ""]
            out += fields_table(nested, skip=())
            out += _model_section(nested, heading, seen)
    return out


# --------------------------------------------------------------------------- examples
def _sample(key: str, info: FieldInfo | None, annotation: Any, nested_step: dict | None) -> Any:
    """A sample value for a field, from its examples, its marker or its type."""
    if info is not None and info.examples:
        return info.examples[0]
    stripped, metadata = _strip(annotation)
    metadata += list(info.metadata) if info is not None else []
    marker = _marker(info) if info is not None else None
    origin, args = get_origin(stripped), get_args(stripped)
    if marker == "steps":
        return [nested_step] if nested_step else []
    examples = _schema_examples(metadata)
    if examples:
        return examples[0]
    if origin in (list, tuple, set, frozenset):
        return [_sample(key, None, args[0] if args else str, nested_step)] if marker is None \
            else [MARKER_SAMPLES.get(marker, key)]
    if origin is dict:
        if marker is not None:
            return {"name": MARKER_SAMPLES.get(marker, key)}
        return {}
    if marker is not None:
        return MARKER_SAMPLES.get(marker, f"<{key}>")
    if origin is Literal:
        return args[0]
    if isinstance(stripped, type) and issubclass(stripped, BaseModel):
        return _example_of(stripped, {}, nested_step)
    if stripped in _SCALARS:
        for item in metadata:  # respect a lower bound (Field(ge=...))
            low = getattr(item, "ge", None) if stripped is int else None
            if low is not None:
                return max(low, 1)
        sample = _SCALARS[stripped][1]
        return f"<{key}>" if sample is None else sample
    return f"<{key}>"


def _valid(model: type[BaseModel], data: dict) -> bool:
    from flows.config.parsing import parse_step
    from flows.steps.base import StepConfig

    if issubclass(model, StepConfig):
        problems: list = []
        parse_step(data, loc=(), problems=problems)
        return not problems
    try:
        model.model_validate(data)
    except ValueError:
        return False
    return True


def _example_of(model: type[BaseModel], first: dict, nested_step: dict | None) -> dict:
    """Required fields (and fields with ``examples``); optional ones are added one at a time
    until the example is valid (e.g. exactly one of ``for`` and ``until``)."""
    data = dict(first)
    optional = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        if key in data:
            continue
        if info.is_required() or info.examples:
            data[key] = _sample(key, info, info.annotation, nested_step)
        else:
            optional.append((key, info))
    for key, info in [(None, None), *optional]:
        attempt = data if key is None else {**data, key: _sample(key, info, info.annotation, nested_step)}
        if _valid(model, attempt):
            return attempt
    return data


def example_step(kind_name: str, *, step_id: str | None = None) -> dict[str, Any]:
    """An example step of a registered kind as it is written in touchpoints.yaml.

    Nested step lists hold one step of the first kind (by name) that has none of its own.
    """
    from flows.steps import kinds

    registry = kinds()
    nested = None
    for name, kind in registry.items():
        if not _nests_steps(kind.config):
            nested = _example_of(kind.config, {"id": "then_this", "kind": name}, None)
            break
    model = registry[kind_name].config
    return _example_of(model, {"id": step_id or f"my_{kind_name}", "kind": kind_name}, nested)


def _nests_steps(model: type[BaseModel], seen: frozenset = frozenset()) -> bool:
    """True if a field of ``model``, or of a model inside it, holds nested steps."""
    for info in model.model_fields.values():
        if _marker(info) == "steps":
            return True
        if any(_nests_steps(m, seen | {model}) for m in _nested_models(info) if m not in seen):
            return True
    return False


def _yaml(data: Any) -> str:
    """Block-style YAML as in touchpoints.yaml (keys in the model's order)."""
    from io import StringIO

    from ruamel.yaml import YAML

    dumper = YAML(typ="rt")
    dumper.default_flow_style = False
    dumper.indent(mapping=2, sequence=4, offset=2)
    dumper.width = 88
    buffer = StringIO()
    dumper.dump(data, buffer)
    return buffer.getvalue().rstrip()


def _engine_examples() -> dict[str, dict[str, Any]]:
    """The example data of the built-in events, for ``sample_result(examples)``."""
    from flows.config.models import ENGINE_EVENTS

    return {name: dict(spec.example) for name, spec in ENGINE_EVENTS.items()}


def _parsed(example: dict) -> Any:
    from flows.config.parsing import parse_step

    problems: list = []
    step = parse_step(example, loc=(), problems=problems)
    return None if problems else step


# --------------------------------------------------------------------------- the document
def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation other than - and _ dropped."""
    text = heading.strip().lower()
    return "".join(ch for ch in text.replace(" ", "-") if ch.isalnum() or ch in "-_")


def _step_kinds() -> list[str]:
    from flows.steps import kinds

    registry = kinds()
    out = ["## Step kinds", "",
           ("Every step has an `id` (snake_case, unique in the touch point, nested steps "
           "included), a `kind` and an optional `note`. The kinds:"), ""]
    out += [f"* [`{name}`](#{_anchor(name)}): {kind.summary}" for name, kind in registry.items()]
    for name, kind in registry.items():
        model = kind.config
        out += ["", f"### {name}", "", kind.summary, ""]
        doc = inspect.getdoc(model)
        if doc:
            out += [doc, ""]
        out += fields_table(model)
        out += _model_section(model, "Items of", set())
        example = example_step(name)
        out += ["", "Example:", "", "```yaml", _yaml({"steps": [example]}), "```"]
        step = _parsed(example)
        if step is not None:
            sample = step.sample_result(_engine_examples())
            if sample:
                out += ["", f"What `steps.{example['id']}` holds afterwards (an example):", "",
                        "```json", json.dumps(sample, indent=2, default=str, ensure_ascii=False),
                        "```"]
            extra = sorted({key for message in step.messages() for key in message.extra})
            if extra:
                out += ["", "Its emails' templates can also use: "
                        + ", ".join(f"`{key}`" for key in extra) + "."]
        out += ["", f"Registered by `{kind.run.__module__}`."]
    return out


def _triggers() -> list[str]:
    from flows.config.triggers import (
        CountTrigger,
        DateTrigger,
        EventTrigger,
        InactivityTrigger,
        ScheduleTrigger,
    )

    models = {"event": EventTrigger, "date": DateTrigger, "schedule": ScheduleTrigger,
              "inactivity": InactivityTrigger, "count": CountTrigger}
    out = ["## Triggers", "",
           "`trigger:` is written in exactly one of these forms, told apart by its keys.", "",
           "| form | example | fires |", "| --- | --- | --- |"]
    out += [f"| {form} | `{_cell(example)}` | {_cell(fires)} |"
            for form, (example, fires) in TRIGGER_EXAMPLES.items()]
    for form, model in models.items():
        out += ["", f"### {form} trigger", "", inspect.getdoc(model) or "", ""]
        out += fields_table(model, skip=())
        if form in TRIGGER_EVENTS:
            out += ["", f"`trigger` (and `event`) in templates: type {TRIGGER_EVENTS[form]}."]
    return out


def _audience_and_entry() -> list[str]:
    from flows.config.triggers import Entry, EntryRule, Segment

    rules = get_args(EntryRule)
    out = ["## Audience", "",
           ("* `audience: customer`: the customer the trigger is about (the event's "
           "`customer_id`)."),
           ("* `audience: {segment: <expression>}`: every customer for whom the expression is "
           "true, streamed from the store in batches. A schedule trigger needs a segment."), ""]
    out += fields_table(Segment, skip=())
    out += ["", "## Entry rules", "",
            ("`entry: {rule: <rule>, key: <expression>}` says when a trigger may start a journey "
            "again. `key` is optional and makes the journey key (e.g. `event.data.outage_id`)."),
            ""]
    out += fields_table(Entry, skip=())
    out += ["", "| rule | starts a journey |", "| --- | --- |"]
    out += [f"| `{rule}` | {_cell(ENTRY_RULE_WORDS.get(rule, ''))} |" for rule in rules]
    return out


def _exit_when() -> list[str]:
    from flows.config.models import EventType, ExitWhen

    out = ["## Exit conditions", "",
           ("`exit_when:` lists events that end a touch point's journeys at once, when the "
            "event arrives: e.g. `exit_when: [{event: contract.renewed, goal: Renewed}]`. "
            "Members still active or waiting are exited with the goal (counted as a goal "
            "reached) or the reason, nothing of theirs resumes, and the journey ends."), "",
           inspect.getdoc(ExitWhen) or "", ""]
    out += fields_table(ExitWhen, skip=())
    out += ["", ("An event type's `updates:` sets customer fields from its data when it "
                 "arrives (e.g. `{contract_end: new_contract_end}`); waits relative to a "
                 "changed date (`until: 60d before contract_end`) move with it, as they do "
                 "when an import or the API changes the customer."), ""]
    out += [line for line in fields_table(EventType, skip=())
            if line.startswith("| `updates`") or not line.startswith("| `")]
    return out


def _context() -> list[str]:
    from flows.config.samples import company_sample, sample_context, sample_event
    from flows.steps import kinds

    context = sample_context(company=company_sample(None), touchpoint="my-touchpoint",
                             trigger=sample_event("contract.signed", {"plan": "Fibre 500"}),
                             results={})
    out = ["## Templates and expressions", "",
           ("Filters (`where`, `segment`, `if`, `match`, `key`) are sandboxed Jinja2 expressions; "
           "subjects, titles and bodies are Jinja2 templates. They can use these names:"), "",
           "| name | holds | keys |", "| --- | --- | --- |"]
    for name, value in context.items():
        keys = ", ".join(f"`{k}`" for k in value) if isinstance(value, dict) and value else ""
        out.append(f"| `{name}` | {_cell(CONTEXT_NAMES.get(name, ''))} | {keys} |")
    out += ["", ("A reference to `steps.X` where X is not an earlier step is an error when the "
            "file is checked."), "", "### What `steps.<id>` holds", "",
            ("Later steps, conditions and templates read an earlier step's result as "
            "`steps.<id>`. Per kind, an example:"), "",
            "| kind | `steps.<id>` holds, e.g. |", "| --- | --- |"]
    for name in kinds():
        step = _parsed(example_step(name))
        sample = step.sample_result(_engine_examples()) if step is not None else {}
        shown = json.dumps(sample, default=str, ensure_ascii=False) if sample else "nothing"
        out.append(f"| `{name}` | `{_cell(shown)}` |")
    return out


def _engine_events() -> list[str]:
    from flows.config.models import ENGINE_EVENTS

    out = ["## Events built in", "",
           ("Touchpoints sends these events itself; they need no entry under `events:`. Their "
           "data names the `journey_id` and `step_id` they answer, so a `wait_for` step without "
           "`match` takes only the ones of its own journey. When one answers a wait, "
           "`steps.<wait_for id>` holds `{outcome: event, event: {...}}`, and the event's "
           "`result` (if any) is merged into `steps.<step_id>` (a survey's score, a task's "
           "outcome)."), "",
           ("Their data contracts are built in: `touchpoints check` proves templates and "
            "expressions against these fields whether or not `events:` declares the event. A "
            "declaration may describe it in its own words and add optional fields; it may not "
            "change a field's type, or make required a field Touchpoints may leave out."), ""]
    for name, spec in ENGINE_EVENTS.items():
        out += [f"### {name}", "", spec.description, "", "| field | type | required | means |",
                "| --- | --- | --- | --- |"]
        out += [f"| `{key}` | {_cell(field.type)} | {'yes' if field.required else 'no'} | "
                f"{_cell(field.description or '')} |" for key, field in spec.fields.items()]
        out += ["", "Example data:", "", "```json",
                json.dumps(spec.example, indent=2, ensure_ascii=False), "```", ""]
    return out[:-1]


def _categories() -> list[str]:
    return [
        "## Email categories", "",
        ("Every email a step sends names a category from `categories:`; each has "
        "`transactional` and `description`."), "",
        ("* **Transactional** categories (outage, billing and service notices) go out whenever "
        "they are needed: customers cannot turn them off and they ignore the send window."),
        ("* **Other** categories (surveys, check-ins, marketing) are checked at send time against "
        "the customer's preferences and against holds from other journeys (a `hold` step); "
        "outside the send window they are deferred to its next opening in the customer's "
        "timezone. They carry an unsubscribe link and the `List-Unsubscribe` and "
        "`List-Unsubscribe-Post` (one-click) headers."),
        ("* Email to the account owner or a team is internal: no consent check and no "
        "unsubscribe link."),
        "* An address that bounced (a 5xx from SMTP) is suppressed for every category.",
        ("* Every email goes through the delivery ledger keyed by (journey, step, recipient): a "
        "retried or replayed step sends nothing twice. Suppressed and deferred emails are "
        "recorded in the audit trail with the reason."),
    ]


def render_reference() -> str:
    """The whole of docs/reference.md."""
    sections = [
        ["# Reference", "",
         ("Generated from the code by `touchpoints docs`; do not edit by hand (CI runs "
         "`touchpoints docs --check`). Ops leads start at [getting-started.md](getting-started.md); "
         "the language is described in [architecture.md](architecture.md), and adding a step "
         "kind in [extending.md](extending.md).")],
        [("Contents: [Step kinds](#step-kinds) · [Triggers](#triggers) · [Audience](#audience) · "
         "[Entry rules](#entry-rules) · [Exit conditions](#exit-conditions) · "
         "[Templates and expressions](#templates-and-expressions) "
         "· [Events built in](#events-built-in) · [Email categories](#email-categories)")],
        _step_kinds(), _triggers(), _audience_and_entry(), _exit_when(), _context(),
        _engine_events(),
        _categories(),
    ]
    return "\n\n".join("\n".join(section) for section in sections) + "\n"
