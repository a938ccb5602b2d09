"""`touchpoints check` against the event data contracts (the ``fields:`` of the catalogue).

* only declared fields are used: ``event.data.x``, ``trigger.data.x`` and
  ``steps.<wait_for>.event.data.x`` must name a field of that event;
* a field compared with a constant of another type (``event.data.first == 'yes'``) is an
  error, since values arrive typed;
* every template and expression is also rendered with only the required fields of each
  event, so an optional field used without a guard is an error with its line
  (:func:`optional_problem` words it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from jinja2 import UndefinedError

from flows.config.contracts import FieldSpec, check_data, required_only
from flows.config.diagnostics import Loc, Problem, did_you_mean, one_of
from flows.config.fieldrefs import comparable, comparisons, data_references
from flows.config.samples import sample_context, sample_event

_MISSING = re.compile(r"has no attribute '([^']+)'|'([^']+)' is undefined|no element '([^']+)'")


@dataclass
class Contracts:
    """The declared fields of every event type, and the examples typed as they arrive. An
    event that declares no ``fields:`` (``implied``) has no contract: templates and
    expressions are evaluated with its example alone, so a field it does not show is an error
    there, worded to say so (:func:`example_hint`)."""

    fields: dict[str, dict[str, FieldSpec]] = field(default_factory=dict)
    typed: dict[str, dict[str, Any]] = field(default_factory=dict)      # full examples
    required: dict[str, dict[str, Any]] = field(default_factory=dict)   # required fields only
    implied: set[str] = field(default_factory=set)   # events whose fields are their example's

    @classmethod
    def build(cls, examples: dict[str, dict[str, Any]],
              fields: dict[str, dict[str, FieldSpec]]) -> Contracts:
        contracts = {k: v for k, v in fields.items() if v}
        typed, required = {}, {}
        for name, example in examples.items():
            spec = contracts.get(name) or {}
            typed[name] = check_data(spec, example)[0] if spec else dict(example)
            required[name] = required_only(spec, typed[name])
        return cls(fields=contracts, typed=typed, required=required,
                   implied={name for name in examples if name not in contracts})

    def optional_names(self, event_types: set[str]) -> dict[str, str]:
        """Optional field → its event type, over the events a context holds."""
        out: dict[str, str] = {}
        for name in sorted(event_types):
            for key, spec in self.fields.get(name, {}).items():
                if not spec.required:
                    out.setdefault(key, name)
        return out


@dataclass
class Contexts:
    """The sample contexts at a place (examples in full, and with only their required
    fields), and the event type each data root (``event``, ``trigger``,
    ``steps.<id>.event``) holds there."""

    full: dict[str, Any]
    required: dict[str, Any]
    scope: dict[str, str | None]

    def seeing(self, event_type: str, contracts: Contracts,
               examples: dict[str, dict[str, Any]]) -> Contexts:
        """The same contexts where ``event`` is a sample ``event_type`` (a wait_for's match)."""
        typed = contracts.typed.get(event_type, examples.get(event_type, {}))
        required = contracts.required.get(event_type, typed)
        return Contexts(full={**self.full, "event": sample_event(event_type, dict(typed))},
                        required={**self.required,
                                  "event": sample_event(event_type, dict(required))},
                        scope={**self.scope, "event": event_type})


def contexts_at(contracts: Contracts, *, examples: dict[str, dict[str, Any]],
                company: dict[str, Any], touchpoint: str,
                triggers: tuple[dict[str, Any], dict[str, Any]], trigger_type: str | None,
                earlier: list[tuple[str, Any]]) -> Contexts:
    """The contexts after the ``earlier`` steps, for the trigger in full and required-only."""
    out = []
    for trigger, typed in zip(triggers, (contracts.typed, contracts.required)):
        results = {}
        for step_id, step in earlier:
            try:
                results[step_id] = step.sample_result(typed or examples)
            except Exception:  # noqa: BLE001 - a plugin's sample_result must not break the check
                results[step_id] = {}
        out.append(sample_context(company=company, trigger=trigger, touchpoint=touchpoint,
                                  results=results))
    scope: dict[str, str | None] = {"event": trigger_type, "trigger": trigger_type}
    for step_id, result in out[0]["steps"].items():
        received = result.get("event") if isinstance(result, dict) else None
        if isinstance(received, dict):
            scope[f"steps.{step_id}.event"] = received.get("type")
    return Contexts(full=out[0], required=out[1], scope=scope)


def declared_fields(config: Any, raw_events: dict[Any, Any]) -> dict[str, dict[str, FieldSpec]]:
    """The ``fields:`` of each event: from the parsed file, or (when it did not parse) from
    each event that does parse on its own."""
    from flows.config.eventtypes import ENGINE_EVENTS

    if config is not None:
        return {name: dict(spec.fields) for name, spec in config.event_types().items()}
    out: dict[str, dict[str, FieldSpec]] = {name: dict(spec.fields)
                                            for name, spec in ENGINE_EVENTS.items()}
    for name, raw in raw_events.items():
        specs = raw.get("fields") if isinstance(raw, dict) else None
        if not isinstance(specs, dict):
            continue
        parsed = {}
        for key, value in specs.items():
            try:
                parsed[str(key)] = FieldSpec.model_validate(value)
            except ValueError:  # reported where it is; still a declared field, of no type
                required = value.get("required") if isinstance(value, dict) else None
                parsed[str(key)] = FieldSpec.model_construct(
                    type="object", required=required if isinstance(required, bool) else True)
        out[str(name)] = {**out.get(str(name), {}), **parsed}
    return out


def example_problems(raw_events: dict[Any, Any],
                     fields: dict[str, dict[str, FieldSpec]]) -> list[Problem]:
    """An example field the contract does not declare (the example must show the contract)."""
    problems = []
    for name, raw in raw_events.items():
        declared = fields.get(str(name)) or {}
        example = raw.get("example") if isinstance(raw, dict) else None
        if not declared or not isinstance(example, dict):
            continue
        for key in example:
            if key not in declared:
                problems.append(Problem(
                    ("events", name, "example", key),
                    f"the example has {key!r}, which is not one of the fields",
                    hint=f"declare it under events.{name}.fields (with its type), "
                         f"or leave it out of the example", at="key"))
    return problems


def field_problems(loc: Loc, source: str, *, expression: bool, scope: dict[str, str | None],
                   contracts: Contracts, label: str = "") -> list[Problem]:
    """Undeclared fields and mistyped comparisons in one expression or template. ``scope``
    maps each root (``event``, ``trigger``, ``steps.<id>.event``) to its event type."""
    problems: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    where = (lambda line: f"{label} line {line}: ") if label else (lambda line: "")
    for ref in data_references(source, expression=expression):
        event_type = scope.get(ref.root)
        declared = contracts.fields.get(event_type or "")
        if not declared or ref.field in declared or (ref.root, ref.field) in seen:
            continue
        seen.add((ref.root, ref.field))
        problems.append(Problem(
            loc, f"{where(ref.line)}{ref.root}.data.{ref.field} is not a field of {event_type}",
            hint=did_you_mean(ref.field, declared, fallback=(
                f"declare it under events.{event_type}.fields, or use one of its fields "
                f"({one_of(declared)})"))))
    for ref, value in comparisons(source, expression=expression):
        event_type = scope.get(ref.root)
        spec = (contracts.fields.get(event_type or "") or {}).get(ref.field)
        if spec is not None and not comparable(spec.type, value):
            problems.append(Problem(
                loc, f"{where(ref.line)}{ref.root}.data.{ref.field} is a {spec.type} "
                     f"({event_type}), so it never equals {value!r}",
                hint=_compare_hint(spec.type)))
    return problems


def example_hint(exc: BaseException, scope: dict[str, str | None],
                 contracts: Contracts) -> str | None:
    """The hint for a render that failed on a name the example of an event with no
    ``fields:`` does not have: that event has no contract, so the check goes by its example."""
    m = _MISSING.search(str(getattr(exc, "message", None) or exc))
    name = next((g for g in m.groups() if g), None) if m else None
    for root, event_type in scope.items():
        if event_type in contracts.implied and name not in contracts.typed.get(event_type, {}):
            shown = ", ".join(contracts.typed.get(event_type, {})) or "nothing"
            return (f"{event_type} declares no fields:, so the check renders {root}.data with "
                    f"its example alone ({shown}); declare its fields under "
                    f"events.{event_type}.fields (type, required: false for one it may leave "
                    f"out), or add {name or 'the field'} to its example")
    return None


def _compare_hint(kind: str) -> str:
    if kind in ("date", "datetime"):
        return ("dates arrive as dates: compare with another date, or format it first, "
                "e.g. (event.data.x | date('%Y-%m-%d')) == '2026-12-01'")
    if kind == "boolean":
        return "write the test on its own (event.data.x, or not event.data.x)"
    return f"compare it with a {kind}"


def optional_problem(loc: Loc, exc: BaseException, *, where: str, optional: dict[str, str],
                     source: str = "", expression: bool = False,
                     line: int | None = None) -> Problem | None:
    """The problem of a render that failed only because optional fields were left out: the
    field the error names, else the optional field used on the failing line."""
    name = None
    if isinstance(exc, UndefinedError):
        m = _MISSING.search(str(exc.message or ""))
        name = next((g for g in m.groups() if g), None) if m else None
    refs = [r for r in data_references(source, expression=expression)
            if r.field in optional and (line is None or r.line == line)]
    if name not in optional:
        name = refs[0].field if refs else None
    event_type = optional.get(name or "")
    if event_type is None:
        return None
    used = next((f"{r.root}.data.{r.field}" for r in refs if r.field == name), f"data.{name}")
    return Problem(loc, f"{where}uses {used} without a guard, but it is optional in "
                        f"{event_type}: this fails for every event that leaves it out",
                   hint=f"guard it ({{% if {used} is defined %}} ... {{% endif %}} "
                        f"or | default(...)), or make it required: true under "
                        f"events.{event_type}.fields")


def evaluate_strictly(expression: str, context: dict[str, Any]) -> Any:
    """An expression's value on ``context``; a missing name raises (as at run time), the
    original Jinja2 error kept so the check can say which name."""
    from jinja2 import Undefined

    from flows.templating import compile_expression

    value = compile_expression(expression)(**context)
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    return value
