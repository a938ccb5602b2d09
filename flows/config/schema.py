"""The JSON Schema of touchpoints.yaml, generated from the models and the step registry.

Each ``steps`` list (a touch point's, and every nested one marked ``Marker("steps")``) is a
``oneOf`` over the config schemas of every registered kind, discriminated by ``kind``: a new
step kind appears in the schema, and in editors using it, with no edit here.

Given a parsed file, the schema also holds the data schema of each event of its catalogue
(``$defs["EventData.<type>"]``, from its ``fields:``), which that event's ``example`` must
satisfy; :func:`event_data_schemas` gives them on their own (the OpenAPI document uses them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from flows import steps as registry
from flows.config.contracts import data_schema
from flows.config.models import ConfigFile
from flows.config.parsing import model_types, steps_fields
from flows.steps.base import StepConfig

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
STEP_DEF = "Step"


def _reachable(roots: list[type[BaseModel]]) -> list[type[BaseModel]]:
    """The models in ``roots`` and every model their fields hold, in a stable order."""
    seen: list[type[BaseModel]] = []
    todo = list(roots)
    while todo:
        model = todo.pop(0)
        if model in seen:
            continue
        seen.append(model)
        for info in model.model_fields.values():
            todo.extend(m for m in model_types(info.annotation) if m is not StepConfig)
    return seen


def event_data_schemas(config: Any) -> dict[str, dict[str, Any]]:
    """The JSON Schema of each catalogued event's data, by event type (events with no
    ``fields:`` have no contract and are left out)."""
    return {name: data_schema(spec.fields, title=f"{name} data", description=spec.description)
            for name, spec in sorted(config.event_types().items()) if spec.fields}


def build_schema_for(path: str | Path | None) -> dict[str, Any]:
    """The schema with the event data of the file at ``path``; without them when the file
    does not check clean (the schema must still come out to help fix it)."""
    from flows.config.checker import check_file

    config = check_file(path).config if path is not None and Path(path).is_file() else None
    return build_schema(config)


def build_schema(config: Any = None) -> dict[str, Any]:
    """The schema; with ``config`` (a parsed file), its events' data schemas too."""
    kinds = registry.kinds()
    configs = [kind.config for kind in kinds.values()]
    models = _reachable([ConfigFile, *configs])
    key_map, schema = models_json_schema([(m, "validation") for m in models],
                                         ref_template="#/$defs/{model}")
    defs: dict[str, Any] = schema.get("$defs", {})

    def name_of(model: type[BaseModel]) -> str:
        return key_map[(model, "validation")]["$ref"].rsplit("/", 1)[-1]

    step_ref = {"$ref": f"#/$defs/{STEP_DEF}"}
    defs[STEP_DEF] = {
        "description": "A step. Its kind decides its other fields (see docs/reference.md).",
        "oneOf": [{"$ref": f"#/$defs/{name_of(c)}"} for c in configs],
        "discriminator": {"propertyName": "kind",
                          "mapping": {n: f"#/$defs/{name_of(k.config)}" for n, k in kinds.items()}},
    }
    for step_config in configs:
        required = defs[name_of(step_config)].setdefault("required", [])
        if "kind" not in required:
            required.insert(0, "kind")
    for model in models:
        properties = defs.get(name_of(model), {}).get("properties", {})
        for key in steps_fields(model):
            if key in properties:
                described = {k: v for k, v in properties[key].items() if k in ("description", "title")}
                properties[key] = {**described, "type": "array", "items": step_ref, "minItems": 1}
    defs.pop("StepConfig", None)
    root = defs.pop(name_of(ConfigFile))
    root["title"] = "touchpoints.yaml"
    if config is not None:
        _event_data(root, defs, config)
    return {"$schema": SCHEMA_DIALECT, **root, "$defs": dict(sorted(defs.items()))}


def _event_data(root: dict[str, Any], defs: dict[str, Any], config: Any) -> None:
    """Each declared event's example must satisfy its data schema."""
    events = root["properties"]["events"].setdefault("properties", {})
    for name, schema in event_data_schemas(config).items():
        key = f"EventData.{name}"
        defs[key] = schema
        if name in config.events:
            events[name] = {"allOf": [{"$ref": "#/$defs/EventType"}],
                            "properties": {"example": {"$ref": f"#/$defs/{key}"}}}
