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


# ---------------------------------------------------------------------- event data
@pytest.fixture(scope="module")
def shipped_schema() -> dict:
    from flows.config.schema import build_schema_for

    return build_schema_for(REPO / "touchpoints.yaml")


def test_the_committed_schema_file_is_what_the_code_and_the_catalogue_generate(shipped_schema):
    import json

    on_disk = json.loads((REPO / "touchpoints.schema.json").read_text(encoding="utf-8"))
    assert on_disk == shipped_schema, ("touchpoints.schema.json is stale: run "
                                       "`touchpoints schema -o touchpoints.schema.json`")


def test_each_catalogued_event_has_a_data_schema_from_its_fields(shipped_schema):
    outage = shipped_schema["$defs"]["EventData.outage.declared"]
    assert outage["required"] == ["regions"]
    assert outage["properties"]["regions"] == {
        "type": "array", "items": {"type": "string"},
        "description": "The regions affected: who gets the notice."}
    assert outage["properties"]["eta"]["format"] == "date-time"
    assert outage["properties"]["eta"]["type"] == ["string", "null"]  # optional: null is absent
    disputed = shipped_schema["$defs"]["EventData.billing.disputed"]
    assert set(disputed["required"]) == {"dispute_id", "invoice_number", "amount_disputed",
                                         "reason", "raised_via"}


def test_an_example_that_breaks_its_contract_fails_schema_validation(shipped_schema):
    data = load_yaml((REPO / "touchpoints.yaml").read_text(encoding="utf-8")).data
    assert list(Draft202012Validator(shipped_schema).iter_errors(data)) == []
    data["events"]["outage.declared"]["example"]["eta"] = 2
    errors = list(Draft202012Validator(shipped_schema).iter_errors(data))
    assert errors and list(errors[0].path)[:3] == ["events", "outage.declared", "example"]


def test_a_file_that_does_not_check_still_gets_the_plain_schema(tmp_path):
    from flows.config.schema import build_schema_for

    broken = tmp_path / "touchpoints.yaml"
    broken.write_text("version: 1\ndefaults: nope\n", encoding="utf-8")
    schema = build_schema_for(broken)
    assert schema == build_schema()
    assert not any(name.startswith("EventData.") for name in schema["$defs"])
