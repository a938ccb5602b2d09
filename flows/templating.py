"""Sandboxed Jinja2 for templates, inline texts and expressions.

One environment kind for everything an ops lead writes: the bounded sandbox of
:mod:`flows.bounded` (an ``ImmutableSandboxedEnvironment`` with limits on sizes, numbers, loops
and recursion) with ``StrictUndefined`` (a missing variable is an error, never an empty string),
autoescape for ``.html`` parts, and header renders that can never contain CR or LF.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import FileSystemLoader, StrictUndefined, Undefined, nodes
from jinja2 import TemplateError as JinjaTemplateError

from flows.bounded import BoundedEnvironment, render_budget
from flows.errors import ExpressionError, LimitError, TemplateError

TEXT_SUFFIX = ".txt"
HTML_SUFFIX = ".html"


def _date(value: Any, fmt: str = "%d %B %Y") -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, (date, datetime)):
        return value.strftime(fmt)
    raise TypeError(f"date filter needs a date, got {type(value).__name__}")


def _localtime(value: Any, tz: str = "UTC", fmt: str = "%H:%M on %A %d %B") -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if not isinstance(value, datetime):
        raise TypeError("localtime filter needs a datetime")
    return value.astimezone(ZoneInfo(tz)).strftime(fmt)


def one_line(text: str) -> str:
    """Fold CR, LF and other line breaks to spaces so a value can never start a new header."""
    return " ".join(str(text).splitlines()).replace("\r", " ").replace("\n", " ").strip()


def make_environment(templates_dir: Path | None = None) -> BoundedEnvironment:
    env = BoundedEnvironment(
        loader=FileSystemLoader(str(templates_dir)) if templates_dir else None,
        undefined=StrictUndefined,
        autoescape=lambda name: bool(name) and name.endswith(HTML_SUFFIX),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.add_filter("date", _date)
    env.add_filter("localtime", _localtime)
    env.add_filter("one_line", one_line)
    return env


_inline_env = make_environment()


@dataclass
class RenderedEmail:
    subject: str
    text: str
    html: str


class Renderer:
    """Renders templates under ``templates_dir`` and inline strings."""

    def __init__(self, templates_dir: Path) -> None:
        self.templates_dir = Path(templates_dir)
        self.env = make_environment(self.templates_dir)

    def template_paths(self, name: str) -> tuple[Path, Path]:
        return (self.templates_dir / f"{name}{TEXT_SUFFIX}", self.templates_dir / f"{name}{HTML_SUFFIX}")

    def render_file(self, relative: str, context: dict[str, Any]) -> str:
        try:
            return self.env.get_template(relative).render(context)
        except JinjaTemplateError as exc:
            raise TemplateError(f"templates/{relative}: {exc}",
                                hint="check the variable names against docs/reference.md") from exc

    def render_email(self, name: str, subject: str, context: dict[str, Any]) -> RenderedEmail:
        return RenderedEmail(
            subject=render_text(subject, context, header=True),
            text=self.render_file(f"{name}{TEXT_SUFFIX}", context),
            html=self.render_file(f"{name}{HTML_SUFFIX}", context),
        )


@lru_cache(maxsize=2048)  # compiled once per text: a fan-out renders the same subject N times
def compile_text(text: str):
    """The compiled inline template of ``text`` (a compiled template keeps no render state)."""
    return _inline_env.from_string(text)


def render_text(text: str, context: dict[str, Any], *, header: bool = False) -> str:
    """Render an inline template string (titles, subjects, bodies)."""
    try:
        out = compile_text(text).render(context)
    except JinjaTemplateError as exc:
        raise TemplateError(f"{exc} in {text!r}") from exc
    except LimitError as exc:
        raise LimitError(f"{exc.message} in {text[:80]!r}", hint=exc.hint) from exc
    return one_line(out) if header else out


@lru_cache(maxsize=2048)  # compiled once per text: checks and runs evaluate the same ones often
def compile_expression(expression: str):
    try:
        return _inline_env.compile_expression(expression, undefined_to_none=False)
    except JinjaTemplateError as exc:
        raise ExpressionError(f"invalid expression {expression!r}: {exc}") from exc


def evaluate(expression: str, context: dict[str, Any]) -> Any:
    """Evaluate a sandboxed expression; a missing name is an error, not None."""
    try:
        with render_budget():
            value = compile_expression(expression)(**context)
        if isinstance(value, Undefined):  # a bare missing name: fail now, not when used
            value._fail_with_undefined_error()
        return value
    except ExpressionError:
        raise
    except LimitError as exc:
        raise ExpressionError(f"{expression!r} refused: {exc.message}", hint=exc.hint) from exc
    except RecursionError as exc:
        raise ExpressionError(f"{expression!r} refused: it calls itself without end",
                              hint="write the expression without recursion") from exc
    except Exception as exc:  # jinja raises UndefinedError, TypeError, SecurityError...
        raise ExpressionError(f"{expression!r} failed: {exc}") from exc


@lru_cache(maxsize=4096)  # one parse per text, for every check that reads its tree
def syntax_tree(source: str, expression: bool) -> nodes.Template | None:
    """The Jinja2 tree of a template (or, ``expression=True``, an expression), shared: read
    it, never change it. None if it does not parse (the syntax error is reported elsewhere)."""
    try:
        return _inline_env.parse("{{ " + source + " }}" if expression else source)
    except JinjaTemplateError:
        return None


def step_references(source: str, *, expression: bool = True) -> list[str]:
    """The step ids an expression or template refers to as ``steps.<id>`` / ``steps['<id>']``."""
    tree = syntax_tree(source, expression)
    if tree is None:
        return []
    found: list[str] = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        target = node.node
        if isinstance(target, nodes.Name) and target.name == "steps":
            if isinstance(node, nodes.Getattr):
                found.append(node.attr)
            elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                found.append(node.arg.value)
    return found


def template_source_references(renderer: Renderer, name: str) -> list[str]:
    refs: list[str] = []
    for path in renderer.template_paths(name):
        if path.exists():
            refs += step_references(path.read_text(encoding="utf-8"), expression=False)
    return refs
