"""The bounded sandbox: at run time, huge values, endless loops and recursion are refused at once
with a readable error, and ordinary templates and expressions render as before."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.bounded import MAX_INT_BITS, MAX_TEXT
from flows.errors import ExpressionError, LimitError, TemplateError
from flows.templating import Renderer, evaluate, render_text

PAYLOADS = [
    ("{{ 'x' * 1000000000 }}", "1,000,000,000 characters"),
    ("{{ [0] * 10**9 }}", "1,000,000,000 characters or items"),
    ("{{ n ** n }}", "is a number of more than"),
    ("{{ 'ab'.replace('', 'x' * 100000) }}", "replace()"),
    ("{{ 'x' | indent(10**9, true) }}", "indent()"),
    ("{{ 'x' | wordwrap(1, wrapstring='y' * 150000) }}", "wordwrap()"),
    ("{{ [1] | batch(10**9, 'x') | list }}", "batch()"),
    ("{{ '{:>999999999}'.format(1) }}", "field width"),
    ("{{ '%*d' | format(10**9, 1) }}", "'%*' width"),
    ("{{ range(9000) | join('x' * 100000) }}", "join()"),
    ("{{ lipsum(10**6) }}", "lipsum()"),
    ("{{ {'a': 1} | tojson(indent=10**9) }}", "tojson()"),
    ("{% set s = 'x' * 150000 %}{% set s = s ~ s %}{{ s }}", "the joined text (~)"),
    ("{% for i in range(10000) %}{{ 'y' * 150000 }}{% endfor %}", "more than 1,000,000 characters"),
    ("{% for a in range(300) %}{% for b in range(300) %}{% endfor %}{% endfor %}", "50,000 steps"),
    ("{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}{{ m(1) }}", "more than 40 deep"),
]


@pytest.mark.parametrize("text, refusal", PAYLOADS)
def test_a_huge_value_in_an_inline_text_is_refused_quickly(text, refusal):
    start = time.monotonic()
    with pytest.raises(LimitError) as caught:
        render_text(text, {"n": 10**5})
    assert time.monotonic() - start < 1.0
    assert refusal in caught.value.message and caught.value.hint


@pytest.mark.parametrize("expression", ["event.data.n ** event.data.n", "'x' * 10**10",
                                        "event.data.s * event.data.n", "range(10**8) | list"])
def test_an_expression_over_api_data_is_refused_as_an_expression_error(expression):
    event = {"data": {"n": 10**6, "s": "abc"}}
    start = time.monotonic()
    with pytest.raises(ExpressionError) as caught:
        evaluate(expression, {"event": event})
    assert time.monotonic() - start < 1.0
    assert "refused" in caught.value.message and caught.value.hint


def test_private_attributes_are_still_stopped_at_run_time():
    with pytest.raises(ExpressionError, match="unsafe"):
        evaluate("''.__class__.__mro__", {})


def test_ordinary_templates_and_expressions_render_as_before():
    text = ("Hi {{ name }}, {{ 3 * 4 }} {% for i in range(3) %}{{ i ~ '-' }}{% endfor %} "
            "{{ 'ab' * 3 }} {{ '%05.1f' % 3.14159 }} {{ '{:>4}'.format('x') }} "
            "{{ items | join(', ') }} {{ 'a b' | center(7) }}| {{ 2 ** 10 }}")
    assert render_text(text, {"name": "Ann", "items": ["a", "b"]}) == (
        "Hi Ann, 12 0-1-2- ababab 003.1    x a, b   a b  | 1024")
    assert evaluate("event.data.n * 2 + 1 > 10 and 'north' in event.data.regions",
                    {"event": {"data": {"n": 5, "regions": ["north"]}}}) is True


def test_a_template_file_that_includes_itself_is_refused_at_its_line(tmp_path):
    (tmp_path / "again.txt").write_text("one\ntwo\n{% include 'again.txt' %}\n")
    with pytest.raises(LimitError) as caught:
        Renderer(tmp_path).render_file("again.txt", {})
    assert caught.value.message == ("templates/again.txt line 3: the template includes or calls "
                                    "itself without end")
    assert isinstance(caught.value, TemplateError)


def test_a_limit_broken_in_an_included_template_names_that_template(tmp_path):
    (tmp_path / "outer.txt").write_text("Hello\n{% include 'part.txt' %}\n")
    (tmp_path / "part.txt").write_text("a\n{{ name * 10**9 }}\n")
    with pytest.raises(LimitError, match=r"^templates/part.txt line 2: the repeated text"):
        Renderer(tmp_path).render_file("outer.txt", {"name": "x"})


_ops = st.sampled_from(["+", "-", "*", "**", "//", "%"])
_operand = st.one_of(st.integers(-10**6, 10**6), st.sampled_from(["'ab'", "[1, 2]", "n", "s"]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_ops, _operand), min_size=1, max_size=6), _operand)
def test_any_arithmetic_is_computed_or_refused_quickly_and_never_grows_past_the_limits(ops, first):
    expression = str(first)
    for op, operand in ops:
        expression = f"({expression} {op} {operand})"
    start = time.monotonic()
    try:
        value = evaluate(expression, {"n": 10**5, "s": "xyz"})
    except ExpressionError:
        value = None  # refused, or a plain TypeError / ZeroDivisionError, said in words
    assert time.monotonic() - start < 1.0, expression
    if isinstance(value, int):
        assert value.bit_length() <= MAX_INT_BITS
    elif isinstance(value, (str, list)):
        assert len(value) <= MAX_TEXT
