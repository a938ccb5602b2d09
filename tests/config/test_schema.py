"""The JSON Schema of touchpoints.yaml, generated from the models and the registry."""

from __future__ import annotations

from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from flows import steps as registry
from flows.config import build_schema
from flows.config.yamlload import load_yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def schema() -> dict:
    return build_schema()


def test_the_schema_is_itself_a_valid_json_schema(schema):
    Draft202012Validator.check_schema(schema)
    assert schema["title"] == "touchpoints.yaml"
    assert set(schema["properties"]) == {"version", "defaults", "categories", "teams", "events",
                                         "touchpoints"}


def test_a_step_is_one_of_every_registered_kind_told_apart_by_kind(schema):
    step = schema["$defs"]["Step"]
    kinds = registry.kinds()
    assert set(step["discriminator"]["mapping"]) == set(kinds)
    assert len(step["oneOf"]) == len(kinds)
    for name, kind in kinds.items():
        definition = schema["$defs"][kind.config.__name__]
        assert definition["properties"]["kind"]["const"] == name
        assert "kind" in definition["required"]


def test_touch_point_steps_and_nested_step_lists_are_steps(schema):
    step_list = {"type": "array", "items": {"$ref": "#/$defs/Step"}, "minItems": 1}
    touchpoint = schema["$defs"]["TouchPoint"]["properties"]["steps"]
    assert {k: touchpoint[k] for k in step_list} == step_list
    assert "StepConfig" not in schema["$defs"]
    assert "name" not in schema["$defs"]["TouchPoint"]["properties"]
    branch = schema["$defs"]["BranchStep"]["properties"]
    assert branch["else"]["items"] == {"$ref": "#/$defs/Step"}
    assert schema["$defs"]["Arm"]["properties"]["steps"]["items"] == {"$ref": "#/$defs/Step"}


def test_the_projects_file_validates_against_the_schema(schema):
    data = load_yaml((REPO / "touchpoints.yaml").read_text(encoding="utf-8")).data
    errors = list(Draft202012Validator(schema).iter_errors(data))
    assert errors == []


@pytest.mark.parametrize(("change", "where"), [
    (lambda s: s.__setitem__("timout", "3d"), "timout"),
    (lambda s: s.__setitem__("kind", "emial"), "emial"),
])
def test_a_misspelt_step_fails_schema_validation(schema, change, where):
    data = load_yaml((REPO / "touchpoints.yaml").read_text(encoding="utf-8")).data
    step = next(iter(data["touchpoints"].values()))["steps"][0]
    change(step)
    errors = list(Draft202012Validator(schema).iter_errors(data))
    assert errors and any(list(e.path)[:1] == ["touchpoints"] for e in errors)
