"""The checks of one touch point that need more than its shape: references to teams,
categories, events and earlier steps, expressions, and templates rendered with sample data.

Every check is driven by the field markers of the models (``Marker("team")`` …), never by the
kind of a step, so a new step kind is checked with no edit here.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from jinja2 import TemplateError, TemplateNotFound, TemplateSyntaxError, UndefinedError
from pydantic import BaseModel

from flows.config.contractcheck import (
    Contexts,
    Contracts,
    contexts_at,
    evaluate_strictly,
    example_hint,
    field_problems,
    optional_problem,
)
from flows.config.diagnostics import (
    DOCS_GUIDE,
    DOCS_STEPS,
    Loc,
    Problem,
    did_you_mean,
    dotted,
    one_of,
)
from flows.config.parsing import Unparsed, iter_marked, step_lists
from flows.config.samples import sample_trigger
from flows.config.sandbox_check import unsafe_names
from flows.errors import ExpressionError, TouchpointsError
from flows.steps.base import StepConfig
from flows.templating import (
    HTML_SUFFIX,
    TEXT_SUFFIX,
    Renderer,
    compile_expression,
    step_references,
)

_TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*$")
_NAMES_HINT = ("the names you can use are in docs/getting-started.md (section 3); trigger.data "
               "comes from the event's example under events:")


@dataclass
class Catalogue:
    """What a touch point may refer to."""

    teams: set[Any]
    categories: set[Any]
    examples: dict[str, dict[str, Any]]   # event type → example data
    company: dict[str, Any]
    renderer: Renderer                    # the templates/ folder (compiled templates cached)
    contracts: Contracts = field(default_factory=Contracts)  # the events' fields: (typed examples)
    inline: dict[str, Any] = field(default_factory=dict)  # inline texts compiled, by source
    sources: dict[str, str | None] = field(default_factory=dict)  # template files read, by part

    def source(self, part: str) -> str | None:
        """The text of ``templates/<part>``, read once per check; None if it is not a file.
        Raises OSError or UnicodeDecodeError when it cannot be read."""
        if part not in self.sources:
            path = self.renderer.templates_dir / part
            self.sources[part] = path.read_text(encoding="utf-8") if path.is_file() else None
        return self.sources[part]


@dataclass
class _Place:
    """A step and what is known where it sits."""

    step: Any
    loc: Loc
    earlier: list[tuple[str, Any]]        # (id, step) of the steps that ran before it


class TouchPointChecker:
    def __init__(self, *, name: Any, catalogue: Catalogue, problems: list[Problem]) -> None:
        self.name = name
        self.loc: Loc = ("touchpoints", name)
        self.catalogue = catalogue
        self.problems = problems
        self.renderer = catalogue.renderer
        self.templates_dir = catalogue.renderer.templates_dir
        self.env = catalogue.renderer.env
        self.trigger_event: dict[str, Any] | None = None
        self.trigger_required: dict[str, Any] | None = None  # with only its required fields
        self.trigger_type: str | None = None   # the event type of trigger (None: synthetic)
        self.all_ids: set[str] = set()
        self.current: str | None = None   # the id of the step being checked

    def _add(self, loc: Loc, message: str, hint: str | None = None) -> None:
        docs = DOCS_STEPS if "steps" in loc[2:] else DOCS_GUIDE
        self.problems.append(Problem(loc, message, hint=hint, docs=docs))

    # ------------------------------------------------------------------ entry point
    def run(self, *, trigger: Any, audience: Any, entry: Any, steps: list[Any]) -> None:
        places = list(_walk(steps, self.loc + ("steps",), []))
        self.all_ids = {p.step.id for p in places if isinstance(p.step.id, str)}
        if trigger is not None and trigger.kind == "schedule" and audience == "customer":
            self._add(self.loc + ("audience",),
                      "a schedule trigger is about no one customer, so it needs a segment",
                      hint="write e.g. audience: {segment: \"customer.plan == 'Business'\"}")
        event = getattr(trigger, "event", None)
        contracts = self.catalogue.contracts
        if trigger is not None and (event is None or event in self.catalogue.examples):
            self.trigger_event = sample_trigger(trigger, touchpoint=str(self.name),
                                                examples=contracts.typed or self.catalogue.examples)
            self.trigger_required = sample_trigger(trigger, touchpoint=str(self.name),
                                                   examples=contracts.required or
                                                   self.catalogue.examples)
            self.trigger_type = event if trigger.kind == "event" else None
        top = None if self.trigger_event is None else _Place(None, self.loc, [])
        for part, model in (("trigger", trigger), ("audience", audience), ("entry", entry)):
            if isinstance(model, BaseModel):
                self._fields(model, self.loc + (part,), earlier=[],
                             context=top and self._context(top))
        self._duplicates(places)
        for place in places:
            model = place.step.partial if isinstance(place.step, Unparsed) else place.step
            self.current = place.step.id
            if isinstance(model, BaseModel):
                self._fields(model, place.loc, earlier=place.earlier,
                             context=self._context(place))

    def check_beside(self, model: BaseModel, loc: Loc) -> None:
        """A model that sits beside the trigger (an ``exit_when``), checked as the trigger is,
        its own ``event`` being the event it names. Call after :meth:`run`."""
        top = None if self.trigger_event is None else _Place(None, self.loc, [])
        self._fields(model, loc, earlier=[], context=top and self._context(top))

    def _duplicates(self, places: list[_Place]) -> None:
        first: dict[str, Loc] = {}
        for place in places:
            step_id = place.step.id
            if not isinstance(step_id, str):
                continue
            if step_id in first:
                self._add(place.loc + ("id",),
                          f"duplicate step id {step_id!r} (also {dotted(first[step_id])})",
                          hint="step ids must be unique in a touch point, nested steps included")
            else:
                first[step_id] = place.loc
        for place in places:
            model = place.step.partial if isinstance(place.step, Unparsed) else place.step
            old = getattr(model, "renamed_from", None)
            if isinstance(old, str) and old in self.all_ids:
                self.problems.append(Problem(
                    place.loc + ("renamed_from",),
                    f"{old!r} is still a step of this touch point, so renamed_from: {old} "
                    f"would move nothing",
                    hint=f"renamed_from names the id a step had before it was renamed: remove "
                         f"it, or rename the step that is still {old!r} (journeys waiting at "
                         f"a step that still exists stay there)", docs=DOCS_GUIDE))

    def _context(self, place: _Place) -> Contexts | None:
        """The sample contexts at a step (the examples in full, and with only their required
        fields), or None when something it depends on did not parse (rendering then would
        only repeat that error)."""
        if self.trigger_event is None or any(isinstance(s, Unparsed) for _, s in place.earlier):
            return None
        return contexts_at(self.catalogue.contracts, examples=self.catalogue.examples,
                           company=self.catalogue.company, touchpoint=str(self.name),
                           triggers=(self.trigger_event, self.trigger_required),
                           trigger_type=self.trigger_type, earlier=place.earlier)

    def _own_event(self, model: BaseModel, loc: Loc,
                   context: Contexts | None) -> Contexts | None:
        """In a model naming an event (a wait_for's ``match``), ``event`` is that event."""
        own = next((v for _, m, v in iter_marked(model, loc) if m == "event"), None)
        if context is None or own is None or own == self.trigger_type:
            return context
        return context.seeing(own, self.catalogue.contracts, self.catalogue.examples)

    def _contract(self, loc: Loc, source: str, context: Contexts | None, *,
                  expression: bool, label: str = "") -> bool:
        """Only declared fields, compared with constants of their type; False if not."""
        if context is None:
            return True
        found = field_problems(loc, source, expression=expression, scope=context.scope,
                               contracts=self.catalogue.contracts, label=label)
        self.problems.extend(found)
        return not found

    # ------------------------------------------------------------------ fields
    def _fields(self, model: BaseModel, loc: Loc, *, earlier: list[tuple[str, Any]],
                context: Contexts | None) -> None:
        ids = [step_id for step_id, _ in earlier]
        own = self._own_event(model, loc, context)
        for where, marker, value in iter_marked(model, loc):
            if marker == "expression":
                if unsafe_names(value, expression=True):
                    self._expression(where, value)  # the sandbox check says the rest
                elif self._expression(where, value) and \
                        self._references(where, _step_refs(value, True), ids) and \
                        self._contract(where, value, own, expression=True):
                    self._evaluate(where, value, own)
            elif marker in ("text", "header"):
                if self._references(where, _step_refs(value, False), ids) \
                        and self._contract(where, value, context, expression=False):
                    self._inline(where, value, context)
            elif marker == "template":
                self._template(where, value, model, ids, context)
            elif marker == "team" or (marker is None and value.startswith("team:")):
                self._known(where, value.removeprefix("team:"), self.catalogue.teams, "team",
                            "teams")
            elif marker == "category":
                self._known(where, value, self.catalogue.categories, "category", "categories")
            elif marker == "event":
                self._known(where, value, self.catalogue.examples, "event type", "events")
            elif marker == "step" and value not in ids:
                self._not_earlier(where, value, ids, f"{value!r} is not an earlier step")

    def _known(self, loc: Loc, value: str, known: Any, what: str, section: str) -> None:
        if value not in known:
            self._add(loc, f"unknown {what} {value!r}",
                      hint=did_you_mean(value, known, fallback=f"declare it under {section}: "
                                        f"({one_of(known)})"))

    def _expression(self, loc: Loc, value: str) -> bool:
        try:
            compile_expression(value)
        except ExpressionError as exc:
            cause = exc.__cause__
            self._add(loc, f"invalid expression: {getattr(cause, 'message', None) or cause}",
                      hint="an expression is written without {{ }}, e.g. "
                           "steps.install_nps.score <= 6")
            return False
        return True

    def _references(self, loc: Loc, refs: list[str], ids: list[str], where: str = "") -> bool:
        ok = True
        for ref in dict.fromkeys(refs):
            if ref not in ids:
                ok = False
                self._not_earlier(loc, ref, ids, f"'steps.{ref}' is not an earlier step{where}")
        return ok

    def _not_earlier(self, loc: Loc, ref: str, ids: list[str], message: str) -> None:
        if ref == self.current:
            hint = "a step cannot use its own result; refer to a step before it"
        elif ref in self.all_ids:
            hint = (f"{ref!r} runs later, or inside a branch arm that is not on the way here, "
                    f"so its result is not there yet")
        else:
            hint = did_you_mean(ref, ids, fallback=f"no step in this touch point has the id "
                                                   f"{ref!r}")
        self._add(loc, message, hint=hint)

    # ------------------------------------------------------------------ rendering
    def _evaluate(self, loc: Loc, value: str, context: Contexts | None) -> None:
        """Evaluate an expression on the sample data, as the engine will, when the event it
        sees is in the catalogue (its fields declared, or else shown by its example)."""
        if context is not None and context.scope.get("event") in self.catalogue.examples:
            self._both(loc, context, lambda ctx: evaluate_strictly(value, ctx), label="",
                       source=value, expression=True)

    def _inline(self, loc: Loc, value: str, context: Contexts | None) -> None:
        try:
            template = self.catalogue.inline.get(value) or self.env.from_string(value)
        except TemplateSyntaxError as exc:
            line = f" (line {exc.lineno})" if "\n" in value.strip() else ""
            self._add(loc, f"template syntax error{line}: {exc.message}")
            return
        self.catalogue.inline[value] = template
        if context is not None:
            self._both(loc, context, template.render, label="", source=value)

    def _both(self, loc: Loc, context: Contexts, render, *, label: str, source: str,
              expression: bool = False) -> None:
        """Render with the full examples, then (if that worked) with only the required
        fields: what fails only then uses an optional field without a guard."""
        if not self._render(loc, lambda: render(context.full), label=label, context=context):
            return
        try:
            same = context.required == context.full
        except Exception:  # noqa: BLE001 - a value that cannot be compared: render both
            same = False
        if same:  # no optional field here: the second render would be the first again
            return
        try:
            render(context.required)
        except Exception as exc:  # noqa: BLE001 - reported as a diagnostic, never raised
            optional = self.catalogue.contracts.optional_names(
                {t for t in context.scope.values() if t})
            problem = optional_problem(loc, exc, where=_where(label, exc), optional=optional,
                                       source=source, expression=expression,
                                       line=_line(label, exc))
            if problem is None:
                problem = Problem(loc, f"{_where(label, exc)}fails when the optional fields are "
                                       f"left out: {type(exc).__name__}: {exc}",
                                  hint="guard each optional field with `is defined` or "
                                       "| default(...)")
            self.problems.append(problem)

    def _template(self, loc: Loc, name: str, model: BaseModel, ids: list[str],
                  context: dict[str, Any] | None) -> None:
        if not _TEMPLATE_NAME.match(name):
            self._add(loc, f"{name!r} is not a template name",
                      hint="write the path under templates/ without extension, e.g. sale/welcome")
            return
        parts = [f"{name}{suffix}" for suffix in (TEXT_SUFFIX, HTML_SUFFIX)]
        present = [p for p in parts if self._is_file(p)]
        for part in parts:
            if part not in present:
                self._add(loc, f"template {part} does not exist",
                          hint=f"create templates/{part}: every email has a .txt and an .html "
                               f"part")
        try:
            refs = [ref for part in present
                    for ref in _step_refs(self.catalogue.source(part) or "", False)]
        except (OSError, UnicodeDecodeError):
            refs = []
        if not self._references(loc, refs, ids, where=f" (used in template {name})"):
            return
        extra = _message_extra(model, name)
        for part in present:
            try:
                source = self.catalogue.source(part) or ""
            except (OSError, UnicodeDecodeError):
                source = ""
            if self._contract(loc, source, context, expression=False, label=f"templates/{part}"):
                self._file(loc, part, context, extra, source)

    def _is_file(self, part: str) -> bool:
        try:
            return self.catalogue.source(part) is not None
        except (OSError, UnicodeDecodeError):
            return (self.templates_dir / part).is_file()

    def _file(self, loc: Loc, part: str, context: Contexts | None,
              extra: dict[str, Any], source: str = "") -> None:
        try:
            template = self.env.get_template(part)
        except TemplateSyntaxError as exc:
            self._add(loc, f"templates/{exc.name or part} line {exc.lineno}: template syntax "
                           f"error: {exc.message}")
            return
        except UnicodeDecodeError:
            self._add(loc, f"templates/{part} is not a UTF-8 text file")
            return
        except (TemplateNotFound, OSError) as exc:
            self._add(loc, f"templates/{part} cannot be read: {exc}")
            return
        if context is None:
            return

        def render(ctx: dict[str, Any]) -> str:
            return template.render({**ctx, **extra,
                                    "links": {**ctx["links"], **extra.get("links", {})}})

        self._both(loc, context, render, label=f"templates/{part}", source=source)

    def _render(self, loc: Loc, render, *, label: str, context: Contexts | None = None) -> bool:
        """Run ``render``; False (and the problem added) when it fails."""
        try:
            render()
            return True
        except TemplateSyntaxError as exc:  # in an included or extended template
            self._add(loc, f"templates/{exc.name} line {exc.lineno}: template syntax error: "
                           f"{exc.message}")
        except TemplateNotFound as exc:
            self._add(loc, f"{label or 'the text'} includes {exc.name}, which does not exist")
        except UndefinedError as exc:
            hint = context and example_hint(exc, context.scope, self.catalogue.contracts)
            self._add(loc, f"{_where(label, exc)}{exc.message}", hint=hint or _NAMES_HINT)
        except TouchpointsError as exc:  # a sandbox limit, located by the sandbox itself
            self._add(loc, exc.message, hint=exc.hint)
        except (TemplateError, TypeError, ValueError, ArithmeticError, LookupError,
                AttributeError, OverflowError) as exc:  # filters fail on sample data in many ways
            self._add(loc, f"{_where(label, exc)}fails with the sample data: "
                           f"{type(exc).__name__}: {exc}", hint=_NAMES_HINT)
        return False


@lru_cache(maxsize=4096)  # a text or template shared by many touch points is parsed once
def _step_refs(source: str, expression: bool) -> tuple[str, ...]:
    return tuple(step_references(source, expression=expression))


def _where(label: str, exc: BaseException) -> str:
    """``templates/x.txt line 4: `` from the traceback of a render error (or just the label)."""
    if not label:
        return ""
    line = _line(label, exc)
    return f"{label} line {line}: " if line else f"{label}: "


def _line(label: str, exc: BaseException) -> int | None:
    """The line of template ``label`` a render error was raised on (None for inline text)."""
    line = None
    if not label:
        return None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        filename = frame.f_code.co_filename
        if filename.replace("\\", "/").endswith(label.removeprefix("templates/")):
            line = lineno
    return line


def _message_extra(model: BaseModel, name: str) -> dict[str, Any]:
    """The names a step adds for the email built from template ``name`` (e.g. ``survey``)."""
    extra: dict[str, Any] = {}
    try:
        specs = model.messages() if isinstance(model, StepConfig) else []
    except Exception:  # noqa: BLE001 - a plugin's messages() (or a partial config) may fail
        specs = []
    for spec in specs:
        if spec.template == name:
            extra.update(spec.extra)
    return extra


def _walk(steps: list[Any], loc: Loc, earlier: list[tuple[str, Any]]) -> Iterator[_Place]:
    """Every step in document order, with the steps that ran before it on its path: the
    siblings before it and, for a nested step, the enclosing step and what ran before that.
    Steps inside an earlier sibling's arms are not on the path."""
    before = list(earlier)
    for index, step in enumerate(steps):
        here = loc + (index,)
        yield _Place(step, here, list(before))
        step_id = step.id if isinstance(step.id, str) else None
        inside = before + ([(step_id, step)] if step_id else [])
        for child_loc, child in step_lists(step, here):
            yield from _walk(child, child_loc, inside)
        if step_id:
            before.append((step_id, step))
