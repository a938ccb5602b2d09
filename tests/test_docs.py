"""docs/reference.md is generated from the step registry and never goes stale, and the code
shown in docs/extending.md is the worked example's real code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "docs" / "reference.md"
GUIDE = REPO / "docs" / "extending.md"
EXAMPLE = REPO / "docs" / "examples" / "webhook_step"


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    from flows.cli import main

    try:
        main(list(argv))
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _section(reference: str, kind: str) -> str:
    return reference.split(f"\n### {kind}\n", 1)[1].split("\n### ", 1)[0]


def test_the_reference_on_disk_is_what_the_registry_generates(capsys):
    code, out, err = run_cli(capsys, "docs", "--check", "-o", str(REFERENCE))

    assert code == 0, f"{err}\nrun `touchpoints docs` and commit docs/reference.md"
    assert "is up to date" in out


def test_every_registered_step_kind_has_its_summary_fields_and_docstring_in_the_reference():
    import inspect

    from flows.docs_gen import render_reference
    from flows.steps import kinds

    reference = render_reference()
    for name, kind in kinds().items():
        assert f"* [`{name}`](#{name}): {kind.summary}" in reference
        section = _section(reference, name)
        assert inspect.getdoc(kind.config).splitlines()[0] in section
        for field_name, field in kind.config.model_fields.items():
            if field_name != "kind":
                assert f"| `{field.alias or field_name}` |" in section, (name, field_name)


def test_every_kinds_generated_example_parses_as_a_step_of_that_kind():
    from flows.config.parsing import parse_step
    from flows.docs_gen import example_step
    from flows.steps import kinds

    for name in kinds():
        problems: list = []
        step = parse_step(example_step(name), loc=(), problems=problems)
        assert problems == [], (name, [p.message for p in problems])
        assert step.kind == name


def test_the_reference_shows_what_each_kind_leaves_in_steps():
    import json

    from flows.config.models import ENGINE_EVENTS
    from flows.config.parsing import parse_step
    from flows.docs_gen import example_step, render_reference
    from flows.steps import kinds

    reference = render_reference()
    examples = {name: spec.example for name, spec in ENGINE_EVENTS.items()}
    for name in kinds():
        sample = parse_step(example_step(name), loc=(), problems=[]).sample_result(examples)
        shown = json.dumps(sample, ensure_ascii=False) if sample else "nothing"
        assert f"| `{name}` | `{shown.replace('|', chr(92) + '|')}` |" in reference


def test_marked_fields_say_what_they_are_checked_as():
    from flows.docs_gen import render_reference

    reference = render_reference()

    assert "| `template` | string | **required** | template name |" in _section(reference, "email")
    assert "| `if` | string | **required** | expression |" in _section(reference, "branch")
    assert "| `categories` | list of string | **required** | email category |" in \
        _section(reference, "hold")
    assert "| `for` | duration | optional |" in _section(reference, "wait")


def test_the_reference_covers_triggers_audience_entry_rules_context_events_and_categories():
    from flows.config.models import ENGINE_EVENTS
    from flows.docs_gen import render_reference

    reference = render_reference()

    for heading in ("## Triggers", "## Audience", "## Entry rules", "## Templates and expressions",
                    "## Events built in", "## Email categories"):
        assert f"\n{heading}\n" in reference
    for form in ("event", "date", "schedule", "inactivity", "count"):
        assert f"\n### {form} trigger\n" in reference
    for rule in ("once_per_cycle", "once", "after_end", "every_time"):
        assert f"| `{rule}` |" in reference
    for name in ("customer", "event", "trigger", "steps", "company", "journey", "links", "task", "now"):
        assert f"| `{name}` |" in reference
    for event in ENGINE_EVENTS:
        assert f"\n### {event}\n" in reference
    assert "List-Unsubscribe" in reference


def test_a_newly_registered_kind_appears_in_the_reference_with_no_other_edit(monkeypatch):
    from typing import Literal

    import flows.steps as registry
    from flows.docs_gen import render_reference
    from flows.steps.base import Next, StepConfig, StepKind, TeamRef

    class PingStep(StepConfig):
        """Ping a team's pager."""

        kind: Literal["ping"] = "ping"
        team: TeamRef

    registry.load()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    registry.register(StepKind(name="ping", config=PingStep, summary="Ping a pager.",
                               run=lambda *, config, ctx, members: {m.id: Next() for m in members}))

    section = _section(render_reference(), "ping")

    assert "Ping a pager." in section and "Ping a team's pager." in section
    assert "| `team` | string | **required** | team name |" in section
    assert "kind: ping" in section and "team: support" in section


def test_the_docs_command_check_fails_on_a_stale_file_and_leaves_it_alone(tmp_path, capsys):
    stale = tmp_path / "reference.md"
    stale.write_text("# old\n", encoding="utf-8")

    code, _, err = run_cli(capsys, "docs", "--check", "-o", str(stale))

    assert code == 1
    assert "out of date" in err and "touchpoints docs" in err
    assert stale.read_text(encoding="utf-8") == "# old\n"


def test_the_docs_command_check_fails_when_the_file_is_missing(tmp_path, capsys):
    code, _, err = run_cli(capsys, "docs", "--check", "-o", str(tmp_path / "nowhere.md"))

    assert code == 1
    assert "does not exist" in err


def test_the_docs_command_writes_a_file_that_then_passes_the_check(tmp_path, capsys):
    from flows.docs_gen import render_reference

    target = tmp_path / "out" / "reference.md"

    assert run_cli(capsys, "docs", "-o", str(target))[0] == 0
    assert target.read_text(encoding="utf-8") == render_reference()
    assert run_cli(capsys, "docs", "--check", "-o", str(target))[0] == 0


# --------------------------------------------------------------------------- the guide
def _blocks(markdown: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", markdown, re.MULTILINE | re.DOTALL)


def test_every_code_block_of_the_guide_is_the_examples_real_code():
    guide = GUIDE.read_text(encoding="utf-8")
    module = (EXAMPLE / "touchpoints_webhook.py").read_text(encoding="utf-8")
    pyproject = (EXAMPLE / "pyproject.toml").read_text(encoding="utf-8")

    python, toml = _blocks(guide, "python"), _blocks(guide, "toml")

    assert len(python) >= 3 and toml
    for block in python:
        assert block in module, f"docs/extending.md shows code that is not in the example:\n{block}"
    for block in toml:
        assert block in pyproject, block


@pytest.mark.parametrize("link", sorted(set(re.findall(r"\]\(([^)#]+)\)", GUIDE.read_text(
    encoding="utf-8")))))
def test_every_relative_link_of_the_guide_exists(link):
    if link.startswith("http"):
        return
    assert (GUIDE.parent / link).exists(), link
