"""A version's digest is its content: the same definition and templates give the same digest
whatever the key order, any edit to them (an included template too) gives another."""

from __future__ import annotations

import shutil
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from flows.engine.versions import build_version, digest_of, template_names

REPO = Path(__file__).resolve().parents[2]

plain = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=12)


@settings(max_examples=100, deadline=None)
@given(data=st.dictionaries(st.text(max_size=6), plain, max_size=5),
       templates=st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=20),
                                 max_size=4))
def test_the_digest_depends_on_the_content_not_the_order_of_keys(data, templates):
    reordered = dict(reversed(list(data.items())))
    assert digest_of(reordered, dict(reversed(list(templates.items())))) == digest_of(data, templates)
    assert digest_of(data, {**templates, "extra.txt": "x"}) != digest_of(data, templates) \
        or templates.get("extra.txt") == "x"


def _load(folder: Path):
    from flows.config import load_config_fast

    return load_config_fast(folder / "touchpoints.yaml")


def test_an_edit_to_an_included_template_makes_a_new_version_of_the_touch_points_using_it(tmp_path):
    shutil.copy(REPO / "touchpoints.yaml", tmp_path / "touchpoints.yaml")
    shutil.copytree(REPO / "templates", tmp_path / "templates")
    config = _load(tmp_path)
    before = {name: build_version(tp, tmp_path / "templates")
              for name, tp in config.touchpoints.items()}
    assert "renewal/options_60d" in template_names(config.touchpoints["renewal"])
    assert "_plans.txt" in before["renewal"].templates  # {% from "_plans.txt" import plans %}

    with (tmp_path / "templates" / "_plans.txt").open("a", encoding="utf-8") as handle:
        handle.write("\n")
    after = {name: build_version(tp, tmp_path / "templates")
             for name, tp in config.touchpoints.items()}

    assert after["renewal"].digest != before["renewal"].digest
    untouched = [n for n, v in before.items() if "_plans.txt" not in v.templates]
    assert untouched and all(after[n].digest == before[n].digest for n in untouched)
    assert build_version(_load(tmp_path).touchpoints["sale"], tmp_path / "templates").digest \
        == after["sale"].digest   # loading the same file again: the same version
