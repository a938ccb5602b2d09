"""Reading touchpoints.yaml safely.

* Only plain YAML: mappings, lists, strings, numbers, booleans, null and dates. Tags that build
  objects (``!!python/object``, ``!ENV`` …) are refused before anything is constructed.
* Aliases (``*name``) are refused outright, so an alias bomb ("billion laughs") costs nothing.
* Duplicate keys are an error naming both lines; nothing is silently overwritten.
* No environment-variable expansion: ``${HOME}`` is just text.
* Syntax errors become problems with a line and a column, never tracebacks.

The result is plain Python data plus the line/column of every key and value, by path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent, CollectionEndEvent, CollectionStartEvent, NodeEvent
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError

from flows.config.diagnostics import Loc, Positions, Problem

MAX_BYTES = 2 * 1024 * 1024
MAX_DEPTH = 64
MAX_PROBLEMS = 50
CORE = "tag:yaml.org,2002:"
#: explicit tags that only restate what plain YAML means
ALLOWED_TAGS = {CORE + name for name in ("str", "int", "float", "bool", "null", "map", "seq")}
#: tags the resolver gives plain scalars; anything else is refused
SCALAR_TAGS = ALLOWED_TAGS | {CORE + "timestamp"}


@dataclass
class YamlDocument:
    data: Any = None
    positions: Positions = field(default_factory=Positions)
    problems: list[Problem] = field(default_factory=list)


def _mark(mark) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1)


def _show_tag(tag: str) -> str:
    return "!!" + tag[len(CORE):] if tag.startswith(CORE) else tag


def load_yaml(text: str) -> YamlDocument:
    """Parse ``text``; problems (with positions) are collected in the result, never raised."""
    doc = YamlDocument()
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        doc.problems.append(Problem((), f"the file is larger than {MAX_BYTES // 1024 // 1024} MB",
                                    hint="touchpoints.yaml should be a hand-written file"))
        return doc
    try:
        if not _screen(text, doc):
            return doc
        root = YAML(typ="rt").compose(text)
    except MarkedYAMLError as exc:
        doc.problems.append(_syntax_problem(exc))
        return doc
    except ReaderError as exc:
        doc.problems.append(Problem(
            (), f"the file contains a character YAML does not allow ({exc.character!r})",
            hint="save the file as plain UTF-8 text", where=_offset(text, exc.position)))
        return doc
    except YAMLError as exc:
        doc.problems.append(Problem((), f"YAML error: {exc}"))
        return doc
    except RecursionError:
        doc.problems.append(Problem((), "the file is nested too deeply"))
        return doc
    if root is None:
        return doc
    builder = _Builder(doc)
    doc.data = builder.build(root, ())
    return doc


def _screen(text: str, doc: YamlDocument) -> bool:
    """Walk the event stream once, before building anything: refuse aliases, object tags and
    deep nesting. Stops at the first alias. Returns False when the document must not be built.
    """
    refused = False
    depth = 0
    for event in YAML(typ="rt").parse(text):
        if isinstance(event, AliasEvent):
            _note(doc, event, f"aliases (*{event.anchor}) are not allowed",
                  "write the value out in full; anchors and aliases can hide huge expansions")
            return False
        if isinstance(event, CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                _note(doc, event, f"nested more than {MAX_DEPTH} levels deep",
                      "touchpoints.yaml never needs this much nesting")
                return False
        elif isinstance(event, CollectionEndEvent):
            depth -= 1
        tag = getattr(event, "tag", None) if isinstance(event, NodeEvent) else None
        if tag is not None and str(tag) not in ALLOWED_TAGS:
            refused = True
            _note(doc, event, f"the tag {_show_tag(str(tag))!r} is not allowed",
                  "write plain YAML values: text, numbers, true/false, lists and mappings")
            if len(doc.problems) >= MAX_PROBLEMS:
                return False
    return not refused


def _note(doc: YamlDocument, event: NodeEvent, message: str, hint: str) -> None:
    doc.problems.append(Problem((), message, hint=hint, where=_mark(event.start_mark)))


def _offset(text: str, position: int) -> tuple[int, int]:
    line = text.count("\n", 0, position) + 1
    return (line, position - (text.rfind("\n", 0, position) + 1) + 1)


def _syntax_problem(exc: MarkedYAMLError) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    what = exc.problem or exc.context or "invalid YAML"
    if exc.context and exc.problem:
        what = f"{exc.problem} ({exc.context})"
    if mark is None:
        return Problem((), f"YAML syntax error: {what}")
    hint = "indent with spaces, not tabs" if "'\\t'" in what else \
        "check the indentation and quoting on this line and the one before"
    return Problem((), f"YAML syntax error: {what}", hint=hint, where=_mark(mark))


class _Builder:
    """Turns composed nodes into plain data, recording positions and refusing what the screen
    cannot see (merge keys, complex keys, duplicate keys, deep nesting)."""

    def __init__(self, doc: YamlDocument) -> None:
        self.doc = doc
        self.constructor = YAML(typ="safe", pure=True).constructor

    def build(self, node: Node, loc: Loc) -> Any:
        self.doc.positions.values.setdefault(loc, _mark(node.start_mark))
        if len(loc) > MAX_DEPTH:
            self.doc.problems.append(Problem(loc, f"nested more than {MAX_DEPTH} levels deep"))
            return None
        if isinstance(node, MappingNode):
            return self._mapping(node, loc)
        if isinstance(node, SequenceNode):
            return [self.build(item, loc + (i,)) for i, item in enumerate(node.value)]
        return self._scalar(node, loc)

    def _scalar(self, node: ScalarNode, loc: Loc) -> Any:
        if str(node.tag) not in SCALAR_TAGS:  # e.g. a merge key used as a value
            self.doc.problems.append(Problem(loc, f"unexpected {_show_tag(str(node.tag))!r} value"))
            return None
        try:
            value = self.constructor.construct_object(node, deep=True)
        except (YAMLError, ValueError, OverflowError) as exc:
            self.doc.problems.append(Problem(loc, f"cannot read this value: {exc}"))
            return None
        if node.style == ">" and isinstance(value, str):
            # the round-trip scanner marks each fold of a folded scalar with "\a" (a character
            # YAML text cannot hold): the text itself is without them
            value = value.replace("\a", "")
        return value

    def _mapping(self, node: MappingNode, loc: Loc) -> dict:
        out: dict[Any, Any] = {}
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            where = _mark(key_node.start_mark)
            if not isinstance(key_node, ScalarNode) or str(key_node.tag) not in SCALAR_TAGS:
                what = "merge keys (<<) are not allowed" if str(key_node.tag) == CORE + "merge" \
                    else "keys must be plain text"
                self.doc.problems.append(Problem(loc, what, where=where,
                                                 hint="write each key out in full"))
                continue
            key = self._scalar(key_node, loc + ("?",))
            try:
                hash(key)
            except TypeError:
                key = str(key)
            if key in out:
                self.doc.problems.append(Problem(
                    loc + (key,), f"duplicate key {key!r} on lines {first_line[key]} and {where[0]}",
                    hint="keep one of them; YAML would silently drop the other", where=where))
                continue
            first_line[key] = where[0]
            self.doc.positions.keys[loc + (key,)] = where
            out[key] = self.build(value_node, loc + (key,))
        return out
