"""Segment filters that SQL can express, pushed into the customer query.

``audience: {segment: "customer.region in event.data.regions"}`` used to be evaluated in
Python over every customer. :func:`sql_filter` reads the expression's syntax tree and turns the
parts SQL can say exactly (``customer.<column> in <list>``, ``customer.<column> == <string>``,
joined by ``and``) into WHERE clauses, with values taken from the event. The clauses only ever
narrow the query to a superset of the segment: the sandboxed expression still decides for every
row the query returns, so the result is the same with or without the push-down, which is the
fallback for anything else (``or``, ``not``, filters, attributes, computed values).
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, nodes
from jinja2.exceptions import TemplateSyntaxError

from flows.store.tables import Customer

#: Customer columns a segment may be narrowed on (plain strings in the store)
COLUMNS = {"id", "region", "plan", "timezone", "email", "account_owner", "account_owner_name"}
_UNKNOWN = object()
_parser = Environment()


def sql_filter(expression: str, event: dict[str, Any]) -> list:
    """WHERE clauses implied by ``expression`` for this event; [] when none can be pushed."""
    try:
        template = _parser.parse("{{ (" + expression + ") }}")
    except TemplateSyntaxError:
        return []
    output = template.body[0] if template.body else None
    if not isinstance(output, nodes.Output) or len(output.nodes) != 1:
        return []
    return _clauses(output.nodes[0], event)


def _clauses(node: nodes.Node, event: dict) -> list:
    if isinstance(node, nodes.And):  # both sides must hold: either side alone narrows safely
        return _clauses(node.left, event) + _clauses(node.right, event)
    if not (isinstance(node, nodes.Compare) and len(node.ops) == 1):
        return []
    column = _column(node.expr)
    if column is None:
        return []
    operand = node.ops[0]
    value = _value(operand.expr, event)
    if operand.op == "in" and isinstance(value, (list, tuple)) and value and all(
            isinstance(v, str) for v in value):
        return [column.in_(sorted(set(value)))]
    if operand.op == "eq" and isinstance(value, str):
        return [column == value]
    return []


def _column(node: nodes.Node):
    if (isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name)
            and node.node.name == "customer" and node.attr in COLUMNS):
        return getattr(Customer, node.attr)
    return None


def _value(node: nodes.Node, event: dict) -> Any:
    if isinstance(node, nodes.Const):
        return node.value
    if isinstance(node, (nodes.List, nodes.Tuple)):
        items = [_value(item, event) for item in node.items]
        return _UNKNOWN if any(item is _UNKNOWN for item in items) else items
    path: list[str] = []
    while isinstance(node, (nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Getattr):
            path.append(node.attr)
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            path.append(node.arg.value)
        else:
            return _UNKNOWN
        node = node.node
    if not (isinstance(node, nodes.Name) and node.name in ("event", "trigger")):
        return _UNKNOWN
    value: Any = event
    for key in reversed(path):
        if not isinstance(value, dict) or key not in value:
            return _UNKNOWN
        value = value[key]
    return value
