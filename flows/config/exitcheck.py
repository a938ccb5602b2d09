"""`touchpoints check` of a touch point's ``exit_when:``: each event is in the catalogue, each
``match`` compiles, uses only declared fields of the event and of the trigger, holds on the
sample data, reaches for no private name, and (in a segment journey, which ends for everyone
at once) does not read ``customer``."""

from __future__ import annotations

from typing import Any

from jinja2 import TemplateError, nodes
from pydantic import ValidationError

from flows.config.diagnostics import DOCS_GUIDE, Problem
from flows.config.sandbox_check import _report, unsafe_names
from flows.templating import make_environment

_env = make_environment()


def _names(source: str) -> set[str]:
    try:
        tree = _env.parse("{{ " + source + " }}")
    except TemplateError:
        return set()  # the syntax error is reported by the expression check
    return {node.name for node in tree.find_all(nodes.Name)}


def check_exit_when(checker, raw: dict[Any, Any], audience: Any) -> None:
    """Add the problems of ``raw['exit_when']`` (its shape is checked with the models)."""
    from flows.config.models import ExitWhen

    items = raw.get("exit_when")
    if not isinstance(items, list):
        return
    for index, item in enumerate(items):
        try:
            rule = ExitWhen.model_validate(item)
        except (ValidationError, ValueError, TypeError):
            continue  # reported where the touch point's structure is checked
        loc = ("touchpoints", checker.name, "exit_when", index)
        checker.check_beside(rule, loc)
        if rule.match is None:
            continue
        _report(checker.problems, loc + ("match",), unsafe_names(rule.match, expression=True),
                multiline=False)
        if audience is not None and audience != "customer" and "customer" in _names(rule.match):
            checker.problems.append(Problem(
                loc + ("match",),
                "a segment journey ends for all its members at once, so this match cannot "
                "use customer",
                hint="compare the event with the trigger (e.g. event.data.outage_id == "
                     "trigger.data.outage_id), or leave match out to take out only the "
                     "customer the event is about", docs=DOCS_GUIDE))
