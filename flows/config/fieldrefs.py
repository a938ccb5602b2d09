"""Which event data fields a template or expression uses, found in its Jinja2 syntax tree.

``event.data.eta``, ``trigger.data['eta']`` and ``steps.await_fix.event.data.eta`` are
references; :func:`data_references` lists them with the line they are on, and
:func:`comparisons` lists the constants a field is compared with (``event.data.first ==
'yes'``), so `touchpoints check` can hold both against the event's contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import nodes

from flows.templating import syntax_tree

#: the Python types a constant may have to be compared with a field of each type
_COMPARABLE: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
}


@dataclass(frozen=True)
class DataRef:
    """``<root>.data.<field>``; ``root`` is ``event``, ``trigger`` or ``steps.<id>.event``."""

    root: str
    field: str
    line: int


_parse = syntax_tree  # a template is parsed once, whatever uses it


def _key(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Getattr):
        return node.attr
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) \
            and isinstance(node.arg.value, str):
        return node.arg.value
    return None


def _ref(node: nodes.Node) -> DataRef | None:
    """The reference ``node`` is, when it is ``<root>.data.<field>``."""
    field = _key(node)
    data = node.node if field is not None else None
    if data is None or _key(data) != "data":
        return None
    root = data.node
    if isinstance(root, nodes.Name) and root.name in ("event", "trigger"):
        return DataRef(root.name, field, node.lineno)
    if _key(root) == "event" and isinstance(root.node, nodes.Getattr | nodes.Getitem):
        step = _key(root.node)
        if step is not None and isinstance(root.node.node, nodes.Name) \
                and root.node.node.name == "steps":
            return DataRef(f"steps.{step}.event", field, node.lineno)
    return None


def data_references(source: str, *, expression: bool = True) -> list[DataRef]:
    """Every ``<root>.data.<field>`` in an expression (or, ``expression=False``, a template)."""
    return list(_data_references(source, expression))


@lru_cache(maxsize=4096)  # a text shared by many touch points is walked once
def _data_references(source: str, expression: bool) -> tuple[DataRef, ...]:
    tree = _parse(source, expression)
    if tree is None:
        return ()
    found = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        ref = _ref(node)
        if ref is not None:
            found.append(ref)
    return tuple(found)


def comparisons(source: str, *, expression: bool = True) -> list[tuple[DataRef, Any]]:
    """(field, constant) for every ``field == constant`` / ``!=`` (either side)."""
    return list(_comparisons(source, expression))


@lru_cache(maxsize=4096)
def _comparisons(source: str, expression: bool) -> tuple[tuple[DataRef, Any], ...]:
    tree = _parse(source, expression)
    if tree is None:
        return ()
    found = []
    for node in tree.find_all(nodes.Compare):
        if len(node.ops) != 1 or node.ops[0].op not in ("eq", "ne"):
            continue
        left, right = node.expr, node.ops[0].expr
        for a, b in ((left, right), (right, left)):
            ref = _ref(a)
            if ref is not None and isinstance(b, nodes.Const) and b.value is not None:
                found.append((ref, b.value))
    return tuple(found)


def comparable(kind: str, value: Any) -> bool:
    """Whether a constant can ever equal a value of a field of type ``kind``. Dates and
    datetimes arrive typed, so a string never equals them; a list or object is left alone."""
    if kind in ("date", "datetime"):
        return not isinstance(value, str | int | float | bool)
    types = _COMPARABLE.get(kind)
    if types is None:
        return True
    if isinstance(value, bool) and bool not in types:
        return False
    return isinstance(value, types)
