"""The check that no template or expression reaches into Python's internals.

``''.__class__.__mro__`` or ``cycler.__init__.__globals__`` are stopped by the sandbox when they
run; this walks the Jinja2 syntax tree of every expression, inline text and template file of a
touch point (the templates they include too) so that `touchpoints check` reports them first,
with their line: an attribute or a constant subscript that is private (``_x``, ``__class__``) or
one of Python's internal names (``mro``, ``func_globals``, ``gi_frame`` …).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import nodes
from pydantic import BaseModel

from flows.config.diagnostics import DOCS_GUIDE, Loc, Problem
from flows.config.parsing import Unparsed, iter_marked, step_lists
from flows.templating import HTML_SUFFIX, TEXT_SUFFIX, syntax_tree

#: names of Python internals that do not start with an underscore
INTERNAL_NAMES = frozenset({
    "mro", "func_globals", "func_code", "func_closure", "func_defaults", "func_dict",
    "im_func", "im_self", "im_class", "gi_frame", "gi_code", "gi_yieldfrom", "gi_running",
    "cr_frame", "cr_code", "cr_await", "ag_frame", "ag_code", "ag_await", "f_globals",
    "f_locals", "f_builtins", "f_back", "f_code", "tb_frame", "tb_next", "co_code",
    "co_consts",
})

_HINT = ("templates and expressions may use the names in docs/getting-started.md and their "
         "fields; private and internal Python names are not available (a data field whose "
         "name starts with one underscore is read as event.data['_id'])")

def forbidden(name: Any, *, subscript: bool = False) -> bool:
    """A private or internal name; a subscript may name a data field ``_id`` (not ``__x``)."""
    if not isinstance(name, str):
        return False
    return name in INTERNAL_NAMES or name.startswith("__" if subscript else "_")


def unsafe_names(source: str, *, expression: bool) -> list[tuple[int, str]]:
    """(line, name) of every private or internal attribute ``source`` reaches for, in order;
    nothing if it does not parse (the syntax error is reported elsewhere)."""
    return list(_unsafe_names(source, expression))


@lru_cache(maxsize=2048)  # a template shared by many touch points is walked once
def _unsafe_names(source: str, expression: bool) -> tuple[tuple[int, str], ...]:
    tree = syntax_tree(source, expression)
    if tree is None:
        return ()
    found = [(node.lineno, name) for node, name in _attribute_filters(tree)
             if any(forbidden(part) for part in name.split("."))]
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Getattr):
            name, subscript = node.attr, False
        elif isinstance(node.arg, nodes.Const):
            name, subscript = node.arg.value, True
        else:
            continue
        if forbidden(name, subscript=subscript):
            found.append((node.lineno, name))
    return tuple(sorted(set(found)))


def _attribute_filters(tree: nodes.Template) -> Iterator[tuple[nodes.Node, str]]:
    """Attribute names given to filters as constants: ``attr('x')``, ``selectattr('x')``,
    ``rejectattr('x')`` and any ``attribute='a.b'``."""
    for node in tree.find_all(nodes.Filter):
        first = node.args[0] if node.args else None
        if (node.name in ("attr", "selectattr", "rejectattr") and isinstance(first, nodes.Const)
                and isinstance(first.value, str)):
            yield node, first.value
        for pair in node.kwargs:
            if pair.key == "attribute" and isinstance(pair.value, nodes.Const) \
                    and isinstance(pair.value.value, str):
                yield node, pair.value.value


def includes(source: str) -> list[str]:
    """The template names ``source`` includes, imports or extends by a constant name."""
    return list(_includes(source))


@lru_cache(maxsize=2048)
def _includes(source: str) -> tuple[str, ...]:
    tree = syntax_tree(source, False)
    if tree is None:
        return ()
    names = []
    for node in tree.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
        target = node.template
        if isinstance(target, nodes.Const) and isinstance(target.value, str):
            names.append(target.value)
    return tuple(names)


def check_sandbox(*, name: Any, trigger: Any, audience: Any, entry: Any, steps: list[Any],
                  templates_dir: Path, problems: list[Problem]) -> None:
    """Append a problem for every private or internal name used by touch point ``name``."""
    loc: Loc = ("touchpoints", name)
    for where, marker, value in _marked(loc, trigger, audience, entry, steps):
        if marker == "expression":
            _report(problems, where, unsafe_names(value, expression=True), multiline=False)
        elif marker in ("text", "header"):
            _report(problems, where, unsafe_names(value, expression=False),
                    multiline="\n" in value.strip())
        elif marker == "template":
            _template(problems, where, value, Path(templates_dir))


def _marked(loc: Loc, trigger: Any, audience: Any, entry: Any,
            steps: list[Any]) -> Iterator[tuple[Loc, str | None, str]]:
    for part, model in (("trigger", trigger), ("audience", audience), ("entry", entry)):
        if isinstance(model, BaseModel):
            yield from iter_marked(model, loc + (part,))
    for step, here in _steps(steps, loc + ("steps",)):
        model = step.partial if isinstance(step, Unparsed) else step
        if isinstance(model, BaseModel):
            yield from iter_marked(model, here)


def _steps(steps: list[Any], loc: Loc) -> Iterator[tuple[Any, Loc]]:
    for index, step in enumerate(steps):
        here = loc + (index,)
        yield step, here
        for child_loc, child in step_lists(step, here):
            yield from _steps(child, child_loc)


def _report(problems: list[Problem], loc: Loc, found: list[tuple[int, str]], *,
            multiline: bool, label: str = "") -> None:
    by_line: dict[int, list[str]] = {}
    for line, attr in found:
        by_line.setdefault(line, []).append(repr(attr))
    for line, names in sorted(by_line.items()):
        where = f"{label} line {line}: " if label else (f"line {line}: " if multiline else "")
        what = (f"{names[0]} is a private or internal name" if len(names) == 1 else
                f"{', '.join(names)} are private or internal names")
        problems.append(Problem(loc, f"{where}{what}, which templates and expressions cannot "
                                     f"use", hint=_HINT, docs=DOCS_GUIDE))


#: (templates folder, template name) -> (what was read, and its unsafe names per part)
_found: dict[tuple[str, str], tuple[tuple, list[tuple[str, tuple[tuple[int, str], ...]]]]] = {}


def _template(problems: list[Problem], loc: Loc, name: str, root: Path) -> None:
    key = (str(root), name)
    held = _found.get(key)
    if held is None or _stamps(root, held[0]) != held[0]:
        held = _walk_template(name, root)
        _found[key] = held
    for part, found in held[1]:
        _report(problems, loc, list(found), multiline=True, label=f"templates/{part}")


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


def _stamps(root: Path, read: tuple) -> tuple:
    """``read`` as it is on disk now (each part's stamp taken again)."""
    return tuple((part, _stamp(root / part)) for part, _ in read)


def _walk_template(name: str, root: Path) -> tuple[tuple, list]:
    """A template's parts and the templates they include: the stamp of every file looked at
    (a missing one too, so that creating it counts as a change), and the unsafe names of each
    part read."""
    todo = [f"{name}{suffix}" for suffix in (TEXT_SUFFIX, HTML_SUFFIX)]
    seen: set[str] = set()
    read: list[tuple[str, Any]] = []
    found: list[tuple[str, tuple[tuple[int, str], ...]]] = []
    resolved_root = root.resolve()
    while todo:
        part = todo.pop(0)
        path = root / part
        if part in seen:
            continue
        seen.add(part)
        read.append((part, _stamp(path)))
        if not path.is_file() or resolved_root not in path.resolve().parents:
            continue
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue  # reported by the template check
        found.append((part, _unsafe_names(source, False)))
        todo += includes(source)
    return tuple(read), found
