"""The definition of a touch point is what the ops lead wrote, kept so a journey can finish on
it: every shipped touch point rebuilds from it to the very model the loader built."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.config.definitions import canonical_json, definition, rebuild

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shipped():
    from flows.config import load_config_fast

    return load_config_fast(REPO / "touchpoints.yaml")


def test_every_shipped_touch_point_rebuilds_from_its_definition_to_the_same_model(shipped):
    for name, touchpoint in shipped.touchpoints.items():
        data = definition(touchpoint)
        stored = json.loads(canonical_json(data))   # as the store gives it back
        assert rebuild(name, stored) == touchpoint, name


def test_the_definition_is_the_mapping_the_ops_lead_wrote(shipped):
    data = definition(shipped.touchpoints["renewal"])

    assert data["trigger"] == {"date": "90d before contract_end", "at": "09:00"}
    assert [s["id"] for s in data["steps"]][:3] == ["renewal_90d", "account_review", "until_60d"]


def test_a_model_built_in_code_has_no_definition(shipped):
    copy = shipped.touchpoints["sale"].model_copy()

    assert definition(copy) is None


def test_a_renamed_step_names_its_old_id_and_a_bad_one_is_refused():
    from pydantic import ValidationError

    from flows.steps.wait import WaitStep

    step = WaitStep.model_validate({"id": "wait_60d", "renamed_from": "until_60d", "for": "3d"})
    assert step.renamed_from == "until_60d"
    with pytest.raises(ValidationError):
        WaitStep.model_validate({"id": "wait_60d", "renamed_from": "Until 60d", "for": "3d"})
