"""Turning pydantic's validation errors into problems an ops lead can act on.

Pydantic reports a location such as ``("trigger", "count", "within")``, where ``count`` is the
tag of a union member rather than a key of the file. :func:`resolve` walks the location along
the model types to get the path in the YAML document (tags dropped), the model that owns the
last key (for "did you mean" on unknown keys) and the field's description (for hints).
"""

from __future__ import annotations

import re
import types
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, Discriminator, Tag, ValidationError
from pydantic.fields import FieldInfo

from flows.config.diagnostics import Loc, Problem, did_you_mean

_UNIONS = (Union, types.UnionType)


@dataclass
class Resolved:
    path: Loc
    at_key: bool = False
    owner: type[BaseModel] | None = None   # the model the last key belongs to
    field: FieldInfo | None = None         # the field the last key names
    description: str | None = None


def _strip(tp: Any) -> tuple[Any, list[Any]]:
    meta: list[Any] = []
    while get_origin(tp) is Annotated:
        meta.extend(tp.__metadata__)
        tp = tp.__origin__
    return tp, meta


def _tag(tp: Any) -> str | None:
    _, meta = _strip(tp)
    return next((m.tag for m in meta if isinstance(m, Tag)), None)


def _lookup(model: type[BaseModel], key: Any) -> tuple[str, FieldInfo] | None:
    for name, info in model.model_fields.items():
        if key == (info.alias or name) or key == name:
            return name, info
    return None


def _description(meta: list[Any], info: FieldInfo | None) -> str | None:
    if info is not None and info.description:
        return info.description
    return next((m.description for m in meta if isinstance(m, FieldInfo) and m.description), None)


def resolve(root: Any, loc: Loc) -> Resolved:
    """Walk ``loc`` (a pydantic error location) along the types under ``root``."""
    out = Resolved(path=())
    path: list[Any] = []
    tp: Any = root
    key_type: Any = None
    for element in loc:
        tp, meta = _strip(tp) if tp is not None else (None, [])
        if get_origin(tp) in _UNIONS:
            members = [a for a in get_args(tp) if a is not type(None)]
            tags = {_tag(m): m for m in members if _tag(m) is not None}
            if len(members) == 1:
                tp, more = _strip(members[0])
                meta += more
            elif element in tags:
                tp = tags[element]
                continue  # a union tag, not a key of the file
            else:
                tp = None
        if element == "[key]":
            out.at_key = True
            _, key_meta = _strip(key_type)
            out.description = _description(key_meta, None)
            continue
        path.append(element)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            out.owner = tp
            found = _lookup(tp, element)
            out.field = found[1] if found else None
            out.description = _description([], out.field)
            tp = _field_type(found[1]) if found else None
        elif get_origin(tp) in (list, tuple, set, frozenset):
            args = get_args(tp)
            tp = args[0] if args else None
            out.owner, out.field = None, None
        elif get_origin(tp) is dict:
            key_type, tp = get_args(tp) or (None, None)
            out.owner, out.field = None, None
        else:
            tp, out.owner, out.field = None, None, None
    out.path = tuple(path)
    return out


def _field_type(info: FieldInfo) -> Any:
    meta = list(info.metadata)
    if info.discriminator is not None:
        meta.append(info.discriminator if isinstance(info.discriminator, Discriminator)
                    else Discriminator(info.discriminator))
    return Annotated[(info.annotation, *meta)] if meta else info.annotation


_EXPECTED = re.compile(r"'([^']*)'")


def problems_from_error(exc: ValidationError, *, root: Any, prefix: Loc = (),
                        docs: str | None = None) -> list[Problem]:
    """One problem per pydantic error, located in the YAML document under ``prefix``."""
    problems = [_problem(error, root=root, prefix=prefix, docs=docs)
                for error in exc.errors(include_url=False)]
    # a misspelt key also leaves its field missing: say it once, at the misspelling
    misspelt = {(p.loc[:-1], p.hint) for p in problems if p.message.startswith("unknown field")}
    return [p for p in problems
            if not (p.message.startswith("missing required field")
                    and (p.loc, f"did you mean {p.message.rsplit(' ', 1)[-1]}?") in misspelt)]


def _problem(error: dict[str, Any], *, root: Any, prefix: Loc, docs: str | None) -> Problem:
    kind = error["type"]
    where = resolve(root, tuple(error["loc"]))
    loc = prefix + where.path
    message = str(error["msg"])
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind == "extra_forbidden":
        name = where.path[-1] if where.path else "?"
        choices = [info.alias or n for n, info in where.owner.model_fields.items()] \
            if where.owner else []
        return Problem(loc, f"unknown field {name!r}", at="key", docs=docs,
                       hint=did_you_mean(name, choices,
                                         fallback=f"known fields: {', '.join(choices)}"
                                         if choices else None))
    if kind == "missing":
        name = where.path[-1] if where.path else "?"
        return Problem(loc[:-1], f"missing required field {name!r}", docs=docs,
                       hint=where.description, at="key")
    if kind in ("value_error", "assertion_error"):
        message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
        return Problem(loc, message, docs=docs, at="key" if where.at_key else "value")
    if kind == "literal_error":
        expected = _EXPECTED.findall(str(ctx.get("expected", "")))
        return Problem(loc, f"{value!r} is not allowed here; use {ctx.get('expected')}",
                       docs=docs, hint=did_you_mean(value, expected) if expected else None)
    if kind == "string_pattern_mismatch":
        what = "name" if where.at_key else "value"
        return Problem(loc, f"{value!r} is not a valid {what} (it must match {ctx.get('pattern')})",
                       at="key" if where.at_key else "value", docs=docs, hint=where.description)
    if kind in ("custom_error", "trigger_form", "audience_form") or "message" in ctx:
        return Problem(loc, str(ctx.get("message", message)), docs=docs, hint=ctx.get("hint"))
    if isinstance(value, (str, int, float, bool)) or value is None:
        message = f"{message} (got {value!r})"
    return Problem(loc, message, docs=docs, hint=where.description,
                   at="key" if where.at_key else "value")
