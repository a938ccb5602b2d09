"""Parsing steps through the registry, and reading the field markers.

A step is parsed by its ``kind``: the registry gives the config model, the model validates the
mapping, and every field marked ``Marker("steps")`` (at any depth, e.g. a branch arm's
``steps``) is parsed the same way, recursively. Nothing here knows any particular kind.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from flows import steps as registry
from flows.config.diagnostics import DOCS_STEPS, Loc, Problem, did_you_mean, dotted, one_of
from flows.config.validation import problems_from_error
from flows.steps.base import Marker, StepConfig


# --------------------------------------------------------------------------- markers
def _marker_in(annotation: Any) -> str | None:
    if get_origin(annotation) is Annotated:
        for meta in annotation.__metadata__:
            if isinstance(meta, Marker):
                return meta.kind
        return _marker_in(annotation.__origin__)
    for arg in get_args(annotation):
        found = _marker_in(arg)
        if found:
            return found
    return None


def field_marker(info: FieldInfo) -> str | None:
    """The marker of a field: on the field itself, or inside ``X | None`` / ``list[X]``."""
    for meta in info.metadata:
        if isinstance(meta, Marker):
            return meta.kind
    return _marker_in(info.annotation)


def field_key(name: str, info: FieldInfo) -> str:
    """The key an ops lead writes for a field (its alias, e.g. ``for`` for ``for_``)."""
    return info.alias or name


def model_types(annotation: Any) -> list[type[BaseModel]]:
    """The model classes inside an annotation (through Annotated, unions, lists and dicts)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if get_origin(annotation) is Annotated:
        return model_types(annotation.__origin__)
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is dict and len(args) == 2:
        args = args[1:]
    if origin in (list, tuple, set, frozenset, dict, Union, types.UnionType):
        return [found for arg in args for found in model_types(arg)]
    return []


@lru_cache(maxsize=None)  # one entry per model class
def _fields(model: type[BaseModel]) -> tuple[tuple[str, str, str | None], ...]:
    """(attribute, key, marker) of every field of ``model``."""
    return tuple((name, field_key(name, info), field_marker(info))
                 for name, info in model.model_fields.items())


def iter_marked(model: BaseModel, loc: Loc) -> Iterator[tuple[Loc, str | None, str]]:
    """Every string value held by ``model``, with its location and marker (None if unmarked).

    Descends into nested models, lists and dicts, but not into nested step lists: those are
    steps of their own.
    """
    for name, key, marker in _fields(type(model)):
        if marker == "steps":
            continue
        yield from _strings(getattr(model, name, None), loc + (key,), marker)


def _strings(value: Any, loc: Loc, marker: str | None) -> Iterator[tuple[Loc, str | None, str]]:
    if isinstance(value, str):
        yield loc, marker, value
    elif isinstance(value, BaseModel):
        yield from iter_marked(value, loc)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _strings(item, loc + (index,), marker)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, loc + (key,), marker)


# --------------------------------------------------------------------------- steps
@dataclass
class Unparsed:
    """A step that failed to parse. The checker keeps it so that its id still counts (no
    cascade of "not an earlier step") and its nested steps are still checked."""

    id: str | None
    #: the nested step lists that did parse, by their location in the document
    nested: list[tuple[Loc, list[Any]]] = field(default_factory=list)
    #: the config built from the fields that did validate (unvalidated as a whole), if any
    partial: StepConfig | None = None

    def children(self) -> list[tuple[str, list[Any]]]:
        return [(dotted(loc[-1:]), steps) for loc, steps in self.nested]


def step_lists(step: Any, loc: Loc) -> list[tuple[Loc, list[Any]]]:
    """The nested step lists of a step with their locations, found through the markers."""
    if isinstance(step, Unparsed):
        return list(step.nested)
    found: list[tuple[Loc, list[Any]]] = []
    _collect_lists(step, loc, found)
    return found


def _collect_lists(model: BaseModel, loc: Loc, found: list[tuple[Loc, list[Any]]]) -> None:
    for name, key, marker in _fields(type(model)):
        value = getattr(model, name)
        here = loc + (key,)
        if marker == "steps":
            if isinstance(value, list):
                found.append((here, value))
        else:
            for sub, sub_loc in _submodels(value, here):
                _collect_lists(sub, sub_loc, found)


def parse_steps(raw: Any, *, loc: Loc, problems: list[Problem]) -> list[Any]:
    """Parse a list of step mappings. Problems are appended; a step that fails becomes
    :class:`Unparsed` in the result, so the result is only complete when no problem was added.
    """
    if isinstance(raw, list) and raw and all(isinstance(s, StepConfig) for s in raw):
        return list(raw)  # already parsed (a model built in code, or copied)
    if not isinstance(raw, list):
        problems.append(Problem(loc, "steps must be a list of steps (each starting with '- id:')",
                                docs=DOCS_STEPS))
        return []
    if not raw:
        problems.append(Problem(loc, "the steps list is empty; give at least one step",
                                docs=DOCS_STEPS))
        return []
    return [parse_step(item, loc=loc + (index,), problems=problems)
            for index, item in enumerate(raw)]


def parse_step(raw: Any, *, loc: Loc, problems: list[Problem]) -> Any:
    if isinstance(raw, StepConfig):
        return raw
    if not isinstance(raw, dict):
        problems.append(Problem(loc, "a step must be a mapping with at least 'id' and 'kind'",
                                docs=DOCS_STEPS))
        return Unparsed(None)
    step_id = raw.get("id") if isinstance(raw.get("id"), str) else None
    known = registry.load()
    kind_name = raw.get("kind")
    if kind_name is None:
        problems.append(Problem(loc, "missing required field 'kind'", docs=DOCS_STEPS,
                                hint="the kind of step, " + one_of(known)))
        return Unparsed(step_id, _nested_raw(None, raw, loc, problems))
    kind = known.get(kind_name) if isinstance(kind_name, str) else None
    if kind is None:
        problems.append(Problem(loc + ("kind",), f"unknown step kind {kind_name!r}",
                                docs=DOCS_STEPS,
                                hint=did_you_mean(kind_name, known, fallback=one_of(known))))
        return Unparsed(step_id, _nested_raw(None, raw, loc, problems))
    try:
        config = kind.config.model_validate(raw)
    except ValidationError as exc:
        problems.extend(problems_from_error(exc, root=kind.config, prefix=loc, docs=DOCS_STEPS))
        return Unparsed(step_id, _nested_raw(kind.config, raw, loc, problems),
                        partial=_partial(kind.config, raw))
    _attach(config, loc, problems)
    return config


def _partial(model: type[StepConfig], raw: dict) -> StepConfig:
    """The fields of ``raw`` that validate on their own, as an (unvalidated) config, so that the
    checker can still check their references when another field is wrong."""
    good: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        key = field_key(name, info)
        if key not in raw or field_marker(info) == "steps":
            continue
        annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata \
            else info.annotation
        try:
            good[name] = TypeAdapter(annotation).validate_python(raw[key])
        except (ValidationError, ValueError, TypeError):
            continue
    return model.model_construct(**good)


def _attach(model: BaseModel, loc: Loc, problems: list[Problem]) -> None:
    """Replace the raw nested step lists of a validated model with parsed steps."""
    for name, key, marker in _fields(type(model)):
        if name not in model.model_fields_set:
            continue
        value = getattr(model, name)
        here = loc + (key,)
        if marker == "steps":
            setattr(model, name, parse_steps(value, loc=here, problems=problems))
        else:
            for sub, sub_loc in _submodels(value, here):
                _attach(sub, sub_loc, problems)


def _submodels(value: Any, loc: Loc) -> Iterator[tuple[BaseModel, Loc]]:
    if isinstance(value, BaseModel):
        yield value, loc
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            if isinstance(item, BaseModel):
                yield item, loc + (index,)
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, BaseModel):
                yield item, loc + (key,)


def _nested_raw(model: type[BaseModel] | None, raw: dict, loc: Loc,
                problems: list[Problem]) -> list[tuple[Loc, list[Any]]]:
    """For a step that failed validation: still parse its nested step lists (found through
    the model's marked fields), so their problems are reported in the same pass."""
    if model is None:
        return []
    found: list[tuple[Loc, list[Any]]] = []
    for name, info in model.model_fields.items():
        key = field_key(name, info)
        if key not in raw and name not in raw:
            continue
        value = raw[key] if key in raw else raw[name]
        here = loc + (key,)
        if field_marker(info) == "steps":
            found.append((here, parse_steps(value, loc=here, problems=problems)))
            continue
        candidates = model_types(info.annotation)
        if not candidates:
            continue
        items = [(value, here)] if isinstance(value, dict) else \
            [(item, here + (i,)) for i, item in enumerate(value) if isinstance(item, dict)] \
            if isinstance(value, list) else []
        for item, item_loc in items:
            found += _nested_raw(candidates[0], item, item_loc, problems)
    return found


def steps_fields(model: type[BaseModel]) -> list[str]:
    """The keys of ``model`` that hold nested steps (for the JSON Schema)."""
    return [field_key(name, info) for name, info in model.model_fields.items()
            if field_marker(info) == "steps"]
