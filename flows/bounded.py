"""Limits on what a template or expression may build, so no text from an ops lead or data from
an API can make a check or a run take minutes and gigabytes.

:class:`BoundedEnvironment` is the sandbox of :mod:`flows.templating`. Every operator that can
grow a value (``*``, ``**``, ``+``, ``%``, ``~``), every call (string methods, filters, macros)
and every ``for`` loop is measured against the limits below, and one render (or one expression)
has a budget: total loop iterations, characters written, characters built. Operators are
intercepted, so nothing is folded at compile time either: ``'x' * 1000000000`` in a file costs
nothing until it is run, and then it is refused at once.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import wraps
from typing import Any

from jinja2 import pass_context
from jinja2.compiler import CodeGenerator
from jinja2.environment import Template
from jinja2.nodes import Filter, For
from jinja2.runtime import Macro, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum
from markupsafe import Markup

from flows.errors import LimitError

#: characters in one string, or items in one list
MAX_TEXT = 200_000
#: characters one render writes
MAX_OUTPUT = 1_000_000
#: characters and items built in total by one render
MAX_WORK = 20_000_000
#: loop iterations in one render (all loops, nested ones included)
MAX_LOOPS = 50_000
#: numbers in one range()
MAX_RANGE = 10_000
#: bits of one whole number (about 1,200 digits)
MAX_INT_BITS = 4_096
LOOP_FILTER = "_touchpoints_loop"
#: macros calling macros (a macro that calls itself, in the end)
MAX_CALL_DEPTH = 40

_HINT = (f"templates and expressions may build texts up to {MAX_TEXT:,} characters, numbers up "
         f"to {MAX_INT_BITS * 3 // 10:,} digits and {MAX_LOOPS:,} loop steps per message; make "
         f"the value smaller, or compute it before it reaches the touch point")


_RECURSION_HINT = ("remove the include or macro call that leads back to the same template or "
                   "macro, or give the macro a condition on which it stops")


def refuse(message: str, hint: str = _HINT) -> LimitError:
    return LimitError(message, hint=hint)


@dataclass
class Budget:
    loops: int = 0
    work: int = 0
    output: int = 0
    depth: int = 0


_budget: ContextVar[Budget | None] = ContextVar("touchpoints_render_budget", default=None)


@contextmanager
def render_budget() -> Iterator[Budget]:
    """The budget of one render or evaluation; nested renders share the outer one."""
    current = _budget.get()
    if current is not None:
        yield current
        return
    token = _budget.set(Budget())
    try:
        yield _budget.get()
    finally:
        _budget.reset(token)


def _size(value: Any) -> int:
    if isinstance(value, (str, bytes, list, tuple, dict, set, frozenset)):
        return len(value)
    return 0


def checked(value: Any, what: str = "the value") -> Any:
    """``value`` if it is within the limits (and charged to the render's budget)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > MAX_INT_BITS:
            raise refuse(f"{what} is a number of more than {MAX_INT_BITS * 3 // 10:,} digits")
        return value
    size = _size(value)
    if size > MAX_TEXT:
        raise refuse(f"{what} would be {size:,} characters or items long "
                     f"(the limit is {MAX_TEXT:,})")
    _charge(size)
    return value


def _charge(size: int) -> None:
    budget = _budget.get()
    if budget is not None and size:
        budget.work += size
        if budget.work > MAX_WORK:
            raise refuse(f"the message builds more than {MAX_WORK:,} characters in all")


def _expect(size: int, what: str) -> None:
    """Refuse before building something of ``size``."""
    if size > MAX_TEXT:
        raise refuse(f"{what} would be {size:,} characters or items long "
                     f"(the limit is {MAX_TEXT:,})")


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return 0


# ---------------------------------------------------------------------- operators
def _power(base: Any, exponent: Any) -> None:
    if (isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1
            and (exponent * (abs(base).bit_length() - 1) > MAX_INT_BITS
                 or exponent > MAX_INT_BITS)):
        raise refuse(f"{base} ** {exponent} is a number of more than "
                         f"{MAX_INT_BITS * 3 // 10:,} digits")


def _repeat(left: Any, right: Any) -> None:
    for seq, times in ((left, right), (right, left)):
        if _size(seq) and isinstance(times, int):
            _expect(_size(seq) * max(times, 0), "the repeated text or list")


_WIDTH = re.compile(r"%(?:\([^)]*\))?[-+ #0]*(\*|\d+)?(?:\.(\*|\d+))?")


def _printf(fmt: str) -> None:
    """Refuse a %-format whose field widths would build a huge text."""
    for match in _WIDTH.finditer(fmt):
        for part in match.groups():
            if part == "*":
                raise refuse("a '%*' width taken from the data is not allowed")
            if part and int(part) > MAX_TEXT:
                raise refuse(f"a field width of {int(part):,} is more than {MAX_TEXT:,}")


def _str_format(fmt: str) -> None:
    """Refuse a str.format whose widths (or nested fields) would build a huge text."""
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # str.format reports it
    for _, _, spec, _ in fields:
        if spec and "{" in spec:
            raise refuse("a format width taken from the data is not allowed")
        for number in re.findall(r"\d+", spec or ""):
            if int(number) > MAX_TEXT:
                raise refuse(f"a field width of {int(number):,} is more than {MAX_TEXT:,}")


# ---------------------------------------------------------------------- methods and filters
def _text_method(obj: str, name: str, args: tuple, kwargs: dict) -> None:
    """Refuse a string method call that would build a huge text."""
    if name in ("ljust", "rjust", "center", "zfill") and args:
        _expect(_int(args[0]), f"{name}() of width {args[0]}")
    elif name == "expandtabs":
        size = obj.count("\t") * _int(args[0] if args else kwargs.get("tabsize", 8)) + len(obj)
        _expect(size, "expandtabs()")
    elif name == "replace" and len(args) >= 2:
        _expect(_replaced(obj, str(args[0]), str(args[1])), "replace()")
    elif name == "join" and args:
        args = (_join_items(args[0]),)
        _expect(_joined(obj, args[0]), "join()")
    elif name == "translate" and args and isinstance(args[0], dict):
        longest = max((_size(v) for v in args[0].values()), default=1)
        _expect(len(obj) * max(longest, 1), "translate()")
    elif name in ("format", "format_map"):
        _str_format(obj)


def _replaced(text: str, old: str, new: str) -> int:
    count = len(text) + 1 if not old else text.count(old)
    return len(text) + count * (len(new) - len(old))


def _join_items(items: Any) -> list:
    if isinstance(items, (str, list, tuple)):
        return items if not isinstance(items, str) else list(items)
    out = []
    for item in items:
        out.append(item)
        if len(out) > MAX_TEXT:
            raise refuse(f"join() of more than {MAX_TEXT:,} items")
    return out


def _joined(separator: Any, items: list) -> int:
    return len(str(separator)) * max(len(items) - 1, 0) + sum(
        len(x) if isinstance(x, str) else 8 for x in items)


def _pre_filter(name: str, value: Any, args: tuple, kwargs: dict) -> tuple[Any, tuple]:
    """Check a built-in filter's arguments; returns the (materialised) value and args."""
    def arg(index: int, key: str, default: Any = None) -> Any:
        return args[index] if len(args) > index else kwargs.get(key, default)

    if name == "center":
        _expect(_int(arg(0, "width", 80)), f"center() of width {arg(0, 'width', 80)}")
    elif name == "indent":
        width = arg(0, "width", 4)
        pad = len(width) if isinstance(width, str) else _int(width)
        _expect(len(str(value)) + (str(value).count("\n") + 1) * pad, "indent()")
    elif name == "wordwrap":
        width, wrap = max(_int(arg(0, "width", 79)), 1), arg(2, "wrapstring", None) or "\n"
        _expect(len(str(value)) + (len(str(value)) // width + 1) * len(str(wrap)), "wordwrap()")
    elif name == "join":
        value = _join_items(value)
        separator = arg(0, "d", "")
        if arg(1, "attribute", None) is None:
            _expect(_joined(separator, value), "join()")
    elif name == "replace":
        _expect(_replaced(str(value), str(arg(0, "old", "")), str(arg(1, "new", ""))), "replace()")
    elif name == "format":
        _printf(str(value))
    elif name == "slice" or (name == "batch" and arg(1, "fill_with", None) is not None):
        value = _join_items(value)  # slice() loops over its count, batch() pads to it
        _expect(max(_int(arg(0, "linecount" if name == "batch" else "slices", 1)), len(value)),
                f"{name}()")
    elif name == "tojson":
        _expect(_int(arg(0, "indent", 0)) * 64, "tojson() indent")
    elif name == "sum":
        value = _join_items(value)
        _expect(sum(_size(v) for v in value) + _size(arg(1, "start", 0)), "sum()")
    elif name == "truncate":
        _expect(len(str(arg(2, "end", ""))), "truncate() end")
    return value, args


def bounded_filter(name: str, func: Any) -> Any:
    """``func`` with its arguments and result measured against the limits."""
    passes = getattr(func, "jinja_pass_arg", None)

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        lead, rest = (args[:1], args[1:]) if passes is not None else ((), args)
        if rest:
            value, extra = _pre_filter(name, rest[0], rest[1:], kwargs)
            rest = (value, *extra)
        return checked(func(*lead, *rest, **kwargs), f"the {name} filter's result")

    return wrapper


def bounded_range(*args: Any) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise refuse(f"range() of {len(numbers):,} numbers (the limit is {MAX_RANGE:,})")
    return numbers


def bounded_lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    if n > 50 or min > 1000 or max > 1000:
        raise refuse("lipsum() of more than 50 paragraphs of 1,000 words")
    return generate_lorem_ipsum(n=n, html=html, min=min, max=max)


@pass_context
def _count_loop(context: Any, iterable: Any) -> Iterator[Any]:
    """The items of a ``for`` loop, each one charged to the render's loop budget."""
    budget = _budget.get()
    for item in iterable:
        if budget is not None:
            budget.loops += 1
            if budget.loops > MAX_LOOPS:
                raise refuse(f"the loops of one message take more than {MAX_LOOPS:,} steps")
        yield item


def count_loops(tree: Any) -> Any:
    """Every ``for`` loop of ``tree`` takes its items through the loop budget."""
    for node in tree.find_all(For):
        if not (isinstance(node.iter, Filter) and node.iter.name == LOOP_FILTER):
            node.iter = Filter(node.iter, LOOP_FILTER, [], [], None, None,
                               lineno=node.iter.lineno)
    return tree


class _BoundedCodeGenerator(CodeGenerator):
    """Every ``~`` measures what it joins."""

    def visit_Concat(self, node, frame):  # jinja's visitor name
        self.write("environment.bounded_join(context.eval_ctx, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class BoundedTemplate(Template):
    def render(self, *args: Any, **kwargs: Any) -> str:
        with render_budget():
            try:
                return super().render(*args, **kwargs)
            except RecursionError as exc:
                raise located(self.environment, exc, refuse(
                    "the template includes or calls itself without end", _RECURSION_HINT)) from None
            except LimitError as exc:
                raise located(self.environment, exc, exc) from None


def located(env: Any, exc: BaseException, error: LimitError) -> LimitError:
    """``error`` with the template and line where ``exc`` was raised, from the template frames
    of its (rewritten) traceback."""
    if getattr(error, "located", False):
        return error
    where = None
    tb = exc.__traceback__
    while tb is not None:
        if "__jinja_exception__" in tb.tb_frame.f_globals:
            where = (tb.tb_frame.f_code.co_filename, tb.tb_lineno)
        tb = tb.tb_next
    if where is None:
        return error
    filename, line = where
    roots = getattr(env.loader, "searchpath", None) or []
    name = "the text"
    for root in roots:
        if filename.startswith(str(root)):
            name = "templates/" + os.path.relpath(filename, root).replace(os.sep, "/")
    if name == "the text":  # an inline text: its line only when it has several
        where = f"line {line}: " if line > 1 else ""
    else:
        where = f"{name} line {line}: "
    result = LimitError(f"{where}{error.message}", hint=error.hint)
    result.located = True
    return result


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox with limits on sizes, numbers, loops and recursion (see the module)."""

    intercepted_binops = frozenset({"*", "**", "+", "%", "//", "-", "/"})
    intercepted_unops = frozenset({"-", "+"})
    code_generator_class = _BoundedCodeGenerator
    template_class = BoundedTemplate

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, finalize=self._written, **kwargs)
        self.globals["range"] = bounded_range
        self.globals["lipsum"] = bounded_lipsum
        self.filters = {name: bounded_filter(name, f) for name, f in self.filters.items()}
        self.filters[LOOP_FILTER] = _count_loop

    def _parse(self, source: str, name: str | None, filename: str | None) -> Any:
        return count_loops(super()._parse(source, name, filename))

    def add_filter(self, name: str, func: Any) -> None:
        self.filters[name] = bounded_filter(name, func)

    @staticmethod
    def _written(value: Any) -> Any:
        budget = _budget.get()
        if budget is not None:
            budget.output += len(value) if isinstance(value, str) else 16
            if budget.output > MAX_OUTPUT:
                raise refuse(f"the message would be more than {MAX_OUTPUT:,} characters long")
        return value

    def concat(self, chunks: Iterable[str]) -> str:  # type: ignore[override]
        parts, total = [], 0
        for chunk in chunks:
            total += len(chunk)
            if total > MAX_OUTPUT:
                raise refuse(f"the message would be more than {MAX_OUTPUT:,} characters long")
            parts.append(chunk)
        return "".join(parts)

    def bounded_join(self, eval_ctx: Any, items: tuple) -> str:
        _expect(sum(len(x) if isinstance(x, str) else 8 for x in items), "the joined text (~)")
        joined = markup_join(items) if eval_ctx.autoescape else str_join(items)
        return checked(joined, "the joined text (~)")

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            _power(left, right)
        elif operator == "*":
            _repeat(left, right)
        elif operator == "+":
            _expect(_size(left) + _size(right), "the added text or list")
        elif operator == "%" and isinstance(left, str):
            _printf(left)
        return checked(self.binop_table[operator](left, right), f"the result of {operator!r}")

    def call_unop(self, context: Any, operator: str, arg: Any) -> Any:
        return self.unop_table[operator](arg)

    def wrap_str_format(self, value: Any) -> Any:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        _str_format(value.__self__)
        return wrapped

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        if isinstance(obj, Macro):
            budget = _budget.get()
            if budget is not None:
                budget.depth += 1
                try:
                    if budget.depth > MAX_CALL_DEPTH:
                        raise refuse(f"macro {obj.name!r} calls macros more than "
                                     f"{MAX_CALL_DEPTH} deep (does it call itself?)",
                                     _RECURSION_HINT)
                    return checked(super().call(context, obj, *args, **kwargs),
                                   f"macro {obj.name!r}")
                finally:
                    budget.depth -= 1
        owner = getattr(obj, "__self__", None)
        if isinstance(owner, str) and not isinstance(owner, type):
            _text_method(owner, getattr(obj, "__name__", ""), args, kwargs)
            if getattr(obj, "__name__", "") == "join" and args:
                args = (_join_items(args[0]), *args[1:])
        return checked(super().call(context, obj, *args, **kwargs), "the call's result")


__all__ = ["MAX_TEXT", "BoundedEnvironment", "LimitError", "Markup", "render_budget"]
