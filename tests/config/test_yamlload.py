"""Reading YAML safely: positions, refusals, and no surprises."""

from __future__ import annotations

import time
from datetime import date

from flows.config.yamlload import MAX_DEPTH, load_yaml


def test_every_key_and_value_has_a_one_based_line_and_column():
    doc = load_yaml("a: 1\nb:\n  - x\n  - {y: 2}\n")
    assert doc.problems == []
    assert doc.data == {"a": 1, "b": ["x", {"y": 2}]}
    assert doc.positions.keys[("b", 1, "y")] == (4, 6)
    assert doc.positions.values[("b", 1, "y")] == (4, 9)
    assert doc.positions.values[("b", 0)] == (3, 5)


def test_plain_scalars_keep_their_yaml_types_and_times_of_day_stay_text():
    doc = load_yaml("n: 1_000\nf: 2.5\nb: true\nz: ~\nd: 2027-01-09\nt: 08:00\nyes_word: yes\n")
    assert doc.data == {"n": 1000, "f": 2.5, "b": True, "z": None, "d": date(2027, 1, 9),
                        "t": "08:00", "yes_word": "yes"}


def test_environment_variables_are_never_expanded(monkeypatch):
    monkeypatch.setenv("SECRET_TOKEN", "s3cret")
    doc = load_yaml("a: ${SECRET_TOKEN}\nb: $SECRET_TOKEN\n")
    assert doc.data == {"a": "${SECRET_TOKEN}", "b": "$SECRET_TOKEN"}


def test_a_duplicate_key_names_both_lines_and_keeps_the_first_value():
    doc = load_yaml("a: 1\nb: 2\na: 3\n")
    assert doc.data == {"a": 1, "b": 2}
    [problem] = doc.problems
    assert problem.message == "duplicate key 'a' on lines 1 and 3"
    assert problem.where == (3, 1)


def test_any_alias_is_refused_and_nothing_is_built():
    doc = load_yaml("a: &x {k: 1}\nb: *x\n")
    assert doc.data is None
    assert [p.message for p in doc.problems] == ["aliases (*x) are not allowed"]
    assert doc.problems[0].where == (2, 4)


def test_a_wide_alias_bomb_is_refused_fast():
    lines = ["a: &a [" + ",".join(['"x"'] * 50) + "]"]
    for i in range(1, 20):
        lines.append(f"l{i}: &l{i} [" + ",".join([f"*{'a' if i == 1 else f'l{i - 1}'}"] * 50) + "]")
    started = time.perf_counter()
    doc = load_yaml("\n".join(lines))
    assert time.perf_counter() - started < 0.5
    assert doc.data is None and len(doc.problems) == 1


def test_tags_other_than_the_plain_core_ones_are_refused():
    doc = load_yaml("a: !!str 12\nb: !ENV ${HOME}\nc: !!binary aGk=\nd: !custom x\n")
    assert doc.data is None
    assert [p.message for p in doc.problems] == [
        "the tag '!ENV' is not allowed", "the tag '!!binary' is not allowed",
        "the tag '!custom' is not allowed"]


def test_an_explicit_core_tag_is_allowed():
    assert load_yaml("a: !!str 12\n").data == {"a": "12"}


def test_merge_keys_are_refused():
    doc = load_yaml("a: 1\n<<: {b: 2}\n")
    assert [p.message for p in doc.problems] == ["merge keys (<<) are not allowed"]


def test_a_syntax_error_becomes_a_problem_with_its_line_and_column():
    doc = load_yaml("a: 1\n b: 2\n")
    [problem] = doc.problems
    assert problem.message == "YAML syntax error: mapping values are not allowed here"
    assert problem.where == (2, 3)


def test_a_tab_indent_gets_a_hint_about_spaces():
    [problem] = load_yaml("a:\n\t- 1\n").problems
    assert problem.where == (2, 1) and problem.hint == "indent with spaces, not tabs"


def test_a_second_document_is_a_syntax_error():
    [problem] = load_yaml("a: 1\n---\nb: 2\n").problems
    assert "expected a single document" in problem.message


def test_deep_nesting_is_refused_without_recursing():
    depth = 5000
    doc = load_yaml("a: " + "[" * depth + "]" * depth)
    assert doc.data is None
    assert [p.message for p in doc.problems] == [f"nested more than {MAX_DEPTH} levels deep"]


def test_a_control_character_is_reported_where_it_is():
    [problem] = load_yaml("a: 1\nb: x\x00y\n").problems
    assert problem.where == (2, 5)
    assert "does not allow" in problem.message
