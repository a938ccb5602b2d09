"""The event catalogue's entries: an event type with its data contract (``fields:``), the
customer fields it may update, and the engine's own events with their built-in contracts."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from flows.config.contracts import FieldSpec

__all__ = ["ENGINE_EVENTS", "UPDATABLE", "CustomerField", "EventType", "engine_event_problems",
           "merged_event"]


#: the customer fields an event may update from its data (``updates:``), and their type
UPDATABLE = {"contract_start": "date", "contract_end": "date", "plan": "string",
             "region": "string"}
CustomerField = Literal["contract_start", "contract_end", "plan", "region"]


class EventType(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str
    example: dict[str, Any] = Field(default_factory=dict)
    fields: dict[str, FieldSpec] = Field(default_factory=dict,
                                         description="The data contract: each field's type, "
                                                     "whether it is required, what it means.")
    updates: dict[CustomerField, str] = Field(
        default_factory=dict,
        description="Customer fields the event sets from its data when it arrives, e.g. "
                    "{contract_end: new_contract_end}; a field the event leaves out is left "
                    "as it is. Waits relative to a changed date move with it.")

    @model_validator(mode="after")
    def _example_fits(self) -> EventType:
        from flows.config.contracts import check_data

        _, problems = check_data(self.fields, self.example)
        if problems:
            raise ValueError("the example does not satisfy the fields: " + "; ".join(
                f"{k}: {v}" for k, v in problems.items()))
        return self

    @model_validator(mode="after")
    def _updates_declared(self) -> EventType:
        for target, source in self.updates.items():
            spec = self.fields.get(source)
            if spec is None:
                raise ValueError(f"updates: {target} comes from {source!r}, which is not one "
                                 f"of the fields; declare it under fields: (type "
                                 f"{UPDATABLE[target]})")
            if spec.type != UPDATABLE[target]:
                raise ValueError(f"updates: {target} is a {UPDATABLE[target]}, but {source} "
                                 f"is declared as {spec.type}")
        return self


def _field(kind: str, description: str, *, required: bool = True) -> FieldSpec:
    return FieldSpec(type=kind, required=required, description=description)


#: events the engine itself emits (flows/actions.py), with their data contracts; always in the
#: catalogue, declared or not. A declaration under ``events:`` may describe them in its own
#: words and add optional fields, but must keep each built-in field's type and must not make
#: required a field the engine may leave out (:func:`engine_event_problems`).
ENGINE_EVENTS: dict[str, EventType] = {
    "survey.answered": EventType(
        description="Sent by Touchpoints when a customer answers a survey. The answer also "
                    "lands in the survey step's results (steps.<id>.score, .answered, "
                    ".comment), which is what to test.",
        fields={
            "survey_id": _field("string", "The survey answered."),
            "journey_id": _field("string", "The journey that asked.", required=False),
            "step_id": _field("string", "The survey step that asked.", required=False),
            "question": _field("string", "nps, csat or the question's name.", required=False),
            "score": _field("integer", "The score, for a scale question (none for a choice).",
                            required=False),
            "answer": _field("string", "The choice, for a choice question (none for a scale).",
                             required=False),
            "comment": _field("string", "What the customer wrote, if anything.",
                              required=False),
            "result": _field("object", "What lands in the survey step's results: answered, "
                                       "score, answer, comment.", required=False),
        },
        example={"survey_id": "7f3c2a9e51d04b6c", "journey_id": "j-sample", "step_id": "survey",
                 "question": "nps", "score": 9, "answer": None, "comment": "Very helpful.",
                 "result": {"answered": True, "score": 9, "answer": None,
                            "comment": "Very helpful."}}),
    "task.completed": EventType(
        description="Sent by Touchpoints when a handoff task is completed. `outcome` is what "
                    "the person wrote when closing it.",
        fields={
            "task_id": _field("string", "The task completed."),
            "completed_by": _field("string", "Who completed it (an email address)."),
            "outcome": _field("string", "What they wrote when closing it."),
            "journey_id": _field("string", "The journey of the task.", required=False),
            "step_id": _field("string", "The handoff step of the task.", required=False),
            "result": _field("object", "What lands in the handoff step's results: status, "
                                       "completed_by, completed_at, outcome.", required=False),
        },
        example={"task_id": "T-sample", "journey_id": "j-sample", "step_id": "handoff",
                 "outcome": "Done, customer called back.", "completed_by": "agent@example.com",
                 "result": {"status": "completed", "completed_by": "agent@example.com",
                            "completed_at": "2026-01-01T10:00:00+00:00",
                            "outcome": "Done, customer called back."}}),
    "task.acknowledged": EventType(
        description="Sent by Touchpoints when someone acknowledges a handoff task (the "
                    "\"I'm on it\" link).",
        fields={
            "task_id": _field("string", "The task acknowledged."),
            "acknowledged_by": _field("string", "Who took it on (an email address)."),
            "journey_id": _field("string", "The journey of the task.", required=False),
            "step_id": _field("string", "The handoff step of the task.", required=False),
            "outcome": _field("string", "Always empty until the task is completed.",
                              required=False),
            "result": _field("object", "What lands in the handoff step's results: status, "
                                       "acknowledged_by, acknowledged_at.", required=False),
        },
        example={"task_id": "T-sample", "journey_id": "j-sample", "step_id": "handoff",
                 "outcome": None, "acknowledged_by": "agent@example.com",
                 "result": {"status": "acknowledged", "acknowledged_by": "agent@example.com",
                            "acknowledged_at": "2026-01-01T10:00:00+00:00"}}),
}


def engine_event_problems(name: str, raw: Any) -> list[tuple[tuple, str, str]]:
    """(loc under ``events.<name>``, message, hint) for each way a declaration of the
    engine's own event ``name`` breaks its built-in contract: a built-in field with another
    type, a field the engine may leave out made required, a required field the engine never
    sends, or an example that does not satisfy the built-in fields."""
    from flows.config.contracts import check_data

    builtin = ENGINE_EVENTS.get(name)
    if builtin is None or not isinstance(raw, dict):
        return []
    problems = []
    example = raw.get("example")
    if isinstance(example, dict) and example:
        for key, why in check_data(builtin.fields, example)[1].items():
            message = f"the example breaks the built-in contract of {name}: {key}: {why}"
            hint = (f"give {key} as Touchpoints sends it ({builtin.fields[key].words}), or "
                    f"leave the example out to use the built-in one")
            problems.append((("example", key) if key in example else ("example",), message,
                             hint))
    fields = raw.get("fields")
    if not isinstance(fields, dict):
        return problems
    for key, spec in fields.items():
        if not isinstance(spec, dict):
            continue
        kind, required = spec.get("type"), spec.get("required", True)
        where = (key, "required") if "required" in spec else (key,)
        known = builtin.fields.get(str(key))
        if known is None:
            if required is True:
                message = (f"Touchpoints never sends {key!r} in {name}, so a required {key} "
                           f"would refuse every {name} it sends")
                hint = (f"make it required: false, or leave it out; the built-in fields are "
                        f"{', '.join(builtin.fields)}")
                problems.append((("fields", *where), message, hint))
            continue
        if isinstance(kind, str) and kind != known.type:
            message = (f"{key} is built in as {known.type}: declaring it as {kind} does not "
                       f"change what Touchpoints sends")
            hint = (f"write type: {known.type}, or leave the field out (the built-in contract "
                    f"applies anyway)")
            problems.append((("fields", key, "type"), message, hint))
        if required is True and not known.required:
            message = (f"{key} is optional in the built-in contract of {name}: Touchpoints may "
                       f"send it without {key}, and a required {key} would refuse that")
            hint = "write required: false (and guard it in templates), or leave the field out"
            problems.append((("fields", *where), message, hint))
    return problems


def merged_event(name: str, declared: EventType) -> EventType:
    """A declared event as the catalogue holds it: for one of the engine's own events, the
    built-in fields with the declaration's (compatible) ones laid over them, and the built-in
    example when the declaration gives none."""
    builtin = ENGINE_EVENTS.get(name)
    if builtin is None:
        return declared
    return declared.model_copy(update={"fields": {**builtin.fields, **declared.fields},
                                       "example": declared.example or dict(builtin.example)})
