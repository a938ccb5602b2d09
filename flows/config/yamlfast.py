"""The fast read of touchpoints.yaml for runs: libyaml (PyYAML's C parser), YAML 1.2 rules.

It gives exactly the data :func:`flows.config.yamlload.load_yaml` gives, without positions, or
:data:`UNSURE` when the text holds anything the careful reader would refuse or report: a tag,
an alias, a duplicate, merge or complex key, deep nesting, a directive, several documents, a
syntax error. The caller then reads the text the careful way, which says what is wrong and
where. So this path never accepts what `touchpoints check` refuses, and never explains.

* Scalars resolve by ruamel's YAML 1.2 rules (``yes``/``on`` stay text, no sexagesimals),
  the rules :mod:`flows.config.yamlload` reads by; values other than text are built by
  ruamel's own safe constructor, so dates and numbers come out the same.
* libyaml stops at 1,000 levels of nesting by itself; aliases are caught as a node met twice,
  before anything is expanded.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.nodes import ScalarNode as RuamelScalar
from ruamel.yaml.resolver import implicit_resolvers

from flows.config.diagnostics import Loc, Positions
from flows.config.yamlload import CORE, MAX_BYTES, MAX_DEPTH, YamlDocument, load_yaml

UNSURE = object()
_STR = CORE + "str"
_MAP = CORE + "map"
_SEQ = CORE + "seq"
#: what a plain scalar may resolve to and still be read here
_PLAIN = {CORE + name for name in ("bool", "float", "int", "null", "timestamp")}
_VERSION = (1, 2)
_RESOLVERS: dict[str, list[tuple[str, re.Pattern]]] = {}
for _versions, _tag, _regexp, _first in implicit_resolvers:
    if _VERSION in _versions:
        for _ch in _first:
            _RESOLVERS.setdefault(_ch, []).append((_tag, re.compile(_regexp.pattern,
                                                                     _regexp.flags)))
#: a tag (``!x``, ``!!x``) or a directive (``%YAML``) can only start where a token starts;
#: text that may hold one is left to the careful reader
_TAG_OR_DIRECTIVE = re.compile(r"(?:^|[\s\[\]{},:?-])!|^%", re.MULTILINE)


class _Loader(yaml.CSafeLoader):
    def resolve(self, kind, value, implicit):  # noqa: ANN001 - PyYAML's signature
        if kind is yaml.ScalarNode and implicit[0]:
            for tag, regexp in _RESOLVERS.get(value[:1], ()):
                if regexp.match(value):
                    return tag
            return _STR
        if kind is yaml.ScalarNode:
            return _STR
        return _SEQ if kind is yaml.SequenceNode else _MAP


class _Unsure(Exception):
    pass


def read_yaml(text: str) -> YamlDocument:
    """What :func:`flows.config.yamlload.load_yaml` gives (data, positions, problems), read by
    libyaml when it is sure, the careful way otherwise."""
    positions = Positions()
    data = load_yaml_fast(text, positions=positions)
    if data is UNSURE:
        return load_yaml(text)
    return YamlDocument(data=data, positions=positions)


def load_yaml_fast(text: str, *, positions: Positions | None = None) -> Any:
    """The data of ``text``, or :data:`UNSURE` (read it with ``load_yaml`` instead).
    ``positions`` (if given) receives the line and column of every key and value."""
    if len(text) > MAX_BYTES or _TAG_OR_DIRECTIVE.search(text):
        return UNSURE
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        return UNSURE
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
    except (yaml.YAMLError, ValueError, RecursionError):
        return UNSURE
    finally:
        loader.dispose()
    if root is None:
        return UNSURE  # an empty file: the careful reader says so
    try:
        return _Builder(positions).build(root, ())
    except (_Unsure, RecursionError):
        return UNSURE


class _Builder:
    def __init__(self, positions: Positions | None) -> None:
        self.seen: set[int] = set()
        self.constructor = None
        self.positions = positions

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        if len(loc) > MAX_DEPTH or id(node) in self.seen:  # too deep, or an alias
            raise _Unsure
        if self.positions is not None:
            mark = node.start_mark
            self.positions.values.setdefault(loc, (mark.line + 1, mark.column + 1))
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node)
        self.seen.add(id(node))
        if isinstance(node, yaml.SequenceNode) and node.tag == _SEQ:
            return [self.build(item, loc + (i,)) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode) and node.tag == _MAP:
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise _Unsure  # a complex key
                key = self._scalar(key_node)
                try:
                    known = key in out
                except TypeError:
                    raise _Unsure from None
                if known:
                    raise _Unsure  # a duplicate key
                if self.positions is not None:
                    mark = key_node.start_mark
                    self.positions.keys[loc + (key,)] = (mark.line + 1, mark.column + 1)
                out[key] = self.build(value_node, loc + (key,))
            return out
        raise _Unsure

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        if id(node) in self.seen:
            raise _Unsure  # an alias of a scalar
        self.seen.add(id(node))
        if node.tag == _STR:
            return node.value
        if node.tag not in _PLAIN or node.style:  # plain is None or "" (libyaml)
            raise _Unsure  # a merge key, a value key, or a quoted scalar with a tag
        if self.constructor is None:
            self.constructor = YAML(typ="safe", pure=True).constructor
        try:
            return self.constructor.construct_object(RuamelScalar(node.tag, node.value),
                                                     deep=True)
        except Exception:  # noqa: BLE001 - the careful reader reports it
            raise _Unsure from None
