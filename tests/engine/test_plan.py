"""`touchpoints plan` shows what a touch point compiles to, as text or Mermaid."""

from __future__ import annotations

import pytest

from tests.engine.conftest import REPO


@pytest.fixture(scope="module")
def config():
    from flows.config import load_config

    return load_config(REPO / "touchpoints.yaml")


def test_the_text_plan_names_the_flow_the_trigger_the_audience_and_every_step(config):
    from flows.config import iter_steps
    from flows.engine.plan import plan_text

    text = plan_text(config.touchpoint("install"))

    assert "Prefect flow 'install'" in text
    assert "when install.scheduled arrives" in text
    assert "⏸ await_install: wait for install.completed" in text
    assert "⑂ detractor: branch" in text and "steps.install_nps.score <= 6" in text
    for step in iter_steps(config.touchpoint("install").steps):
        assert f"{step.id}:" in text


def test_triggers_of_every_form_read_as_words(config):
    from flows.engine.plan import describe_trigger

    assert describe_trigger(config.touchpoint("renewal").trigger).startswith("90d before contract_end")
    assert "without contact" in describe_trigger(config.touchpoint("check-in").trigger)
    assert describe_trigger(config.touchpoint("recurring-issue").trigger).startswith("on the 3rd ticket.opened")
    assert "cron" in describe_trigger(config.touchpoint("business-review").trigger)


def test_the_mermaid_plan_draws_every_step_branch_arms_as_labelled_edges_and_an_exit_as_a_dead_end(config):
    from flows.engine.plan import plan_mermaid

    diagram = plan_mermaid(config.touchpoint("sale"))

    assert diagram.startswith("flowchart TD")
    assert 'unhappy_joiner -->|"else"| joined_happily' in diagram
    assert "&lt;= 2" in diagram  # escaped for mermaid
    assert "joined_happily --> done" not in diagram
    assert "call_unhappy_joiner --> done" in diagram


def test_the_plan_command_suggests_the_name_it_did_not_find(capsys):
    from flows.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["plan", "salee", "-f", str(REPO / "touchpoints.yaml")])

    assert exit_info.value.code == 1
    assert "did you mean 'sale'" in capsys.readouterr().err
