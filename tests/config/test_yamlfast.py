"""The fast YAML read for runs gives exactly the careful read's data, or says it is unsure."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.config.yamlfast import UNSURE, load_yaml_fast
from flows.config.yamlload import load_yaml

REPO = Path(__file__).resolve().parents[2]
FILES = [REPO / "touchpoints.yaml", REPO / "tests/service/project/touchpoints.yaml",
         *sorted((REPO / "tests/config/invalid").glob("*.yaml"))]


def _same(text: str) -> None:
    fast = load_yaml_fast(text)
    careful = load_yaml(text)
    if fast is UNSURE:
        return
    assert careful.problems == []
    assert fast == careful.data
    assert repr(fast) == repr(careful.data)  # same types too (1 is not 1.0 nor True)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.parent.name + "/" + p.name)
def test_every_shipped_and_corpus_file_reads_the_same_both_ways(path):
    _same(path.read_text(encoding="utf-8-sig"))


def test_the_shipped_file_is_read_by_the_fast_path():
    assert load_yaml_fast((REPO / "touchpoints.yaml").read_text()) is not UNSURE


@pytest.mark.parametrize("scalar", [
    "yes", "no", "on", "off", "y", "n", "9:30", "08:00", "010", "0o17", "0x1f", "0b101",
    "1_000", "+1", "-0", "1e3", "1.5e3", ".5", ".inf", "-.inf", ".nan", "~", "null", "Null",
    "", "true", "False", "TRUE", "2026-01-01", "2026-01-01 10:00:00", "2026-01-01T10:00:00Z",
    "2026-01-01 10:00:00 +02:00", "2026-13-45", "<<", "=", "1.2.3", "- x", "NaN",
])
def test_plain_scalars_resolve_by_the_same_yaml_1_2_rules(scalar):
    _same(f"a: {scalar}\nb: [{scalar}]\n" if scalar not in ("- x",) else f"a: {scalar}\n")


def test_folded_text_has_no_fold_marks_and_matches_the_careful_read():
    text = "d: >\n  one\n  two\n\n  three\n    indented\n  four\n"
    assert load_yaml_fast(text) == {"d": "one two\nthree\n  indented\nfour\n"}
    assert load_yaml(text).data == load_yaml_fast(text)


@pytest.mark.parametrize("text", [
    "a: &x 1\nb: *x\n",                                   # an alias
    "a: &x [1]\nb: *x\n",
    "a: !!python/object/apply:os.system [ls]\n",          # a tag
    "a: !ENV ${HOME}\n",
    "a: !!str 1\n",
    "%YAML 1.1\n---\na: yes\n",                           # a directive
    "a: 1\na: 2\n",                                       # a duplicate key
    "a: {<<: {b: 1}}\n",                                  # a merge key
    "? [a, b]\n: 1\n",                                    # a complex key
    "a: [1\n",                                            # a syntax error
    "a: 1\n---\nb: 2\n",                                  # two documents
    "",                                                   # empty
    "[" * 70 + "]" * 70,                                  # too deep
])
def test_whatever_the_careful_read_would_refuse_or_report_is_left_to_it(text):
    assert load_yaml_fast(text) is UNSURE


_words = st.text(alphabet="abnoyTFtrue0123456789:._-+e ~xX", min_size=0, max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.from_regex(r"[a-z][a-z_]{0,6}", fullmatch=True),
                       st.one_of(_words, st.lists(_words, max_size=3)), max_size=5))
def test_any_mapping_of_plain_scalars_reads_the_same_both_ways(data):
    lines = []
    for key, value in data.items():
        if isinstance(value, list):
            lines.append(f"{key}: [{', '.join(v.strip() or 'x' for v in value)}]")
        else:
            lines.append(f"{key}: {value}")
    _same("\n".join(lines) + "\n")


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.parent.name + "/" + p.name)
def test_every_key_and_value_is_placed_where_the_careful_read_places_it(path):
    from flows.config.yamlfast import read_yaml

    text = path.read_text(encoding="utf-8-sig")
    fast, careful = read_yaml(text), load_yaml(text)
    assert fast.data == careful.data
    assert fast.problems == careful.problems
    assert fast.positions.keys == careful.positions.keys
    assert fast.positions.values == careful.positions.values


def test_columns_count_characters_not_bytes_both_ways():
    from flows.config.yamlfast import read_yaml

    text = "a: {é: «x», b: [ü, 1]}\nc: >\n  ñ\n  o\nd: 'ç' \n"
    fast, careful = read_yaml(text), load_yaml(text)
    assert fast.positions.values == careful.positions.values
    assert fast.positions.keys == careful.positions.keys
    assert fast.positions.values[("a", "b", 1)] == (1, 20)  # characters
