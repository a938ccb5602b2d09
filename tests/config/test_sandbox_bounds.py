"""`check` refuses templates and expressions that would build huge values, loop or recurse without
end, or reach into Python's internals: quickly, in little memory, at the line where they are."""

from __future__ import annotations

import resource
import time

import pytest

from flows.config import check
from tests.config.support import HEADER, write_config

_EMAIL = ('- {{id: welcome, kind: email, subject: "{subject}", template: {template}, '
          'category: service}}')


def _touchpoint(*, where: str = "event.data.plan != 'trial'", subject: str = "Hi",
                template: str = "welcome", title: str = "Call {{ customer.name }}") -> str:
    return f"""\
        sale:
          description: Welcome.
          trigger: {{event: contract.signed, where: "{where}"}}
          audience: customer
          steps:
            {_EMAIL.format(subject=subject, template=template)}
            - id: call
              kind: handoff
              team: install
              title: "{title}"
        """


@pytest.fixture(autouse=True, scope="module")
def _warm(tmp_path_factory):
    """One plain check first, so the timings measure the payload, not the first imports."""
    check(write_config(tmp_path_factory.mktemp("warm"), _touchpoint()))


def _timed_check(path):
    start, before = time.monotonic(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    diagnostics = check(path)
    elapsed = time.monotonic() - start
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    return diagnostics, elapsed, grown_mb


def _messages(diagnostics) -> list[str]:
    return [f"{d.path}: {d.message}" for d in diagnostics]


@pytest.mark.parametrize("payload, refusal", [
    ("{{ 'x' * 1000000000 }}", "would be 1,000,000,000 characters"),
    ("{{ 'x' ~ ('y' * 10**10) }}", "would be 10,000,000,000 characters"),
    ("{{ 10 ** 5000 }}", "10 ** 5000 is a number of more than"),
    ("{{ customer.name | center(1000000000) }}", "center() of width"),
    ("{{ customer.name.ljust(10**9) }}", "ljust() of width"),
    ("{{ '%0999999999d' % 1 }}", "field width of 999,999,999"),
    ("{{ range(10**9) | join(',') }}", "range() of 1,000,000,000 numbers"),
    ("{% for a in range(9999) %}{% for b in range(9999) %}{% endfor %}{% endfor %}",
     "more than 50,000 steps"),
])
def test_a_huge_payload_in_a_template_is_refused_within_a_second(tmp_path, payload, refusal):
    (tmp_path / "templates").mkdir()
    path = write_config(tmp_path, _touchpoint(template="big"))
    (tmp_path / "templates" / "big.txt").write_text(f"Hello\n{payload}\n", encoding="utf-8")
    (tmp_path / "templates" / "big.html").write_text("<p>fine</p>\n", encoding="utf-8")
    diagnostics, elapsed, grown_mb = _timed_check(path)
    assert elapsed < 1.0 and grown_mb < 100
    [problem] = [m for m in _messages(diagnostics) if "big.txt" in m]
    assert problem.startswith("touchpoints.sale.steps[0].template: templates/big.txt line 2: ")
    assert refusal in problem
    assert diagnostics[0].hint


def test_a_huge_payload_in_a_where_expression_is_refused_at_check_at_no_cost(tmp_path):
    path = write_config(tmp_path, _touchpoint(where="event.data.plan in ('x' * 10**10)"))
    diagnostics, elapsed, grown_mb = _timed_check(path)
    assert elapsed < 1.0 and grown_mb < 50
    [problem] = diagnostics
    assert problem.path == "touchpoints.sale.trigger.where"
    assert "10,000,000,000" in problem.message


def test_a_huge_inline_title_is_refused_at_its_field(tmp_path):
    path = write_config(tmp_path, _touchpoint(title="{{ 'x' * 10**9 }}"))
    diagnostics, elapsed, _ = _timed_check(path)
    assert elapsed < 1.0
    [problem] = _messages(diagnostics)
    assert problem.startswith("touchpoints.sale.steps[1].title: the repeated text or list "
                              "would be 1,000,000,000 characters")


@pytest.mark.parametrize("where", [
    "''.__class__.__mro__",
    "cycler.__init__.__globals__",
    "event.data.mro",
    "event['__class__']",
    "event.data._private",
    "(event | attr('__class__')) is defined",
    "event.data.regions | map(attribute='__class__.__mro__') | list",
])
def test_private_and_internal_names_in_a_where_are_check_errors(tmp_path, where):
    path = write_config(tmp_path, _touchpoint(where=where))
    [problem] = [d for d in check(path) if d.path == "touchpoints.sale.trigger.where"]
    assert "private or internal name" in problem.message
    lines = path.read_text().splitlines()
    assert "where:" in lines[problem.line - 1]


def test_every_internal_name_of_a_line_is_named_in_one_problem(tmp_path):
    path = write_config(tmp_path, _touchpoint(where="''.__class__.__mro__"))
    [problem] = check(path)
    assert problem.message == ("'__class__', '__mro__' are private or internal names, which "
                               "templates and expressions cannot use")


def test_a_data_field_named_with_one_underscore_may_be_subscripted(tmp_path):
    header = HEADER.replace('example: {plan: "Fibre 500", contract_id: CT-1}',
                            'example: {plan: "Fibre 500", contract_id: CT-1, _id: x1}')
    assert header != HEADER
    path = write_config(tmp_path, _touchpoint(where="event.data['_id'] != 'x'"), header=header)
    assert check(path) == []


def test_internal_names_in_an_included_template_are_reported_with_its_line(tmp_path):
    (tmp_path / "templates").mkdir()
    path = write_config(tmp_path, _touchpoint(template="outer"))
    (tmp_path / "templates" / "outer.txt").write_text("Hi\n{% include 'inner.txt' %}\n")
    (tmp_path / "templates" / "outer.html").write_text("<p>x</p>\n")
    (tmp_path / "templates" / "inner.txt").write_text("a\nb\n{{ customer.__init__.__globals__ }}\n")
    messages = _messages(check(path))
    assert ("touchpoints.sale.steps[0].template: templates/inner.txt line 3: '__globals__', "
            "'__init__' are private or internal names, which templates and expressions "
            "cannot use") in messages


def test_a_recursive_macro_is_a_readable_error_at_its_line(tmp_path):
    (tmp_path / "templates").mkdir()
    path = write_config(tmp_path, _touchpoint(template="loop"))
    (tmp_path / "templates" / "loop.txt").write_text(
        "Hi\n{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}\n\n{{ m(1) }}\n")
    (tmp_path / "templates" / "loop.html").write_text("<p>x</p>\n")
    [problem] = check(path)
    assert problem.message.startswith("templates/loop.txt line 2: macro 'm' calls macros more "
                                      "than 40 deep")
    assert "internal error" not in problem.message and "stops" in problem.hint


def test_a_template_that_includes_itself_is_a_readable_error_at_its_line(tmp_path):
    (tmp_path / "templates").mkdir()
    path = write_config(tmp_path, _touchpoint(template="again"))
    (tmp_path / "templates" / "again.txt").write_text("Hi\n\n{% include 'again.txt' %}\n")
    (tmp_path / "templates" / "again.html").write_text("<p>x</p>\n")
    [problem] = check(path)
    assert problem.message == ("templates/again.txt line 3: the template includes or calls "
                               "itself without end")
