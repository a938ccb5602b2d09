"""The fast config load for runs: parsed once per process and per version of the file."""

import os
import shutil
from pathlib import Path

import pytest

from flows.config import forget_loaded, load_config_fast
from flows.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path):
    forget_loaded()
    shutil.copy(REPO / "touchpoints.yaml", tmp_path / "touchpoints.yaml")
    shutil.copytree(REPO / "templates", tmp_path / "templates")
    yield tmp_path / "touchpoints.yaml"
    forget_loaded()


def test_a_second_load_of_the_same_file_version_returns_the_cached_config(project):
    assert load_config_fast(project) is load_config_fast(project)


def test_an_edited_file_is_parsed_again(project):
    first = load_config_fast(project)
    project.write_text(project.read_text() + "\n# edited\n")
    os.utime(project, ns=(1, 1))
    assert load_config_fast(project) is not first


def test_a_changed_templates_folder_is_parsed_again(project):
    first = load_config_fast(project)
    (project.parent / "templates" / "new.txt.j2").write_text("hello")
    assert load_config_fast(project) is not first


def test_a_file_that_does_not_parse_raises_a_config_error(project):
    project.write_text("version: 1\ntouchpoints: [\n")
    with pytest.raises(ConfigError):
        load_config_fast(project)


def test_the_fast_load_gives_the_same_touch_points_as_the_careful_checked_load(project):
    from flows.config.checker import check_document
    from flows.config.definitions import definition
    from flows.config.yamlload import load_yaml

    fast = load_config_fast(project)
    checked = check_document(load_yaml(project.read_text()), file=str(project),
                             templates_dir=project.parent / "templates").config  # ruamel
    assert fast is not checked
    assert fast == checked
    assert list(fast.touchpoints) == list(checked.touchpoints)
    for name, touchpoint in checked.touchpoints.items():
        assert fast.touchpoints[name] == touchpoint
        assert fast.touchpoints[name].steps == touchpoint.steps
        assert definition(fast.touchpoints[name]) == definition(touchpoint)


CORPUS = sorted((REPO / "tests/config/invalid").glob("*.yaml"))


@pytest.mark.parametrize("source", CORPUS, ids=lambda p: p.stem)
def test_on_the_corpus_the_fast_load_agrees_with_the_careful_parse(source, tmp_path):
    """Each invalid file either fails the fast load with the diagnostics of the careful
    structure parse (positions included), or only has errors the fast load leaves to
    `touchpoints check` (references, templates) and then gives the careful parse's models."""
    from flows.config.checker import check_document
    from flows.config.yamlload import load_yaml
    from tests.config.support import write_templates

    forget_loaded()
    write_templates(tmp_path)
    target = tmp_path / "touchpoints.yaml"
    shutil.copy(source, target)
    careful = check_document(load_yaml(target.read_text(encoding="utf-8-sig")),
                             file=str(target), templates_dir=tmp_path / "templates", full=False)
    if careful.diagnostics:
        with pytest.raises(ConfigError) as raised:
            load_config_fast(target)
        assert raised.value.diagnostics == careful.diagnostics
    else:
        assert load_config_fast(target) == careful.config
    forget_loaded()


def test_a_file_the_fast_reader_is_unsure_of_still_loads_the_careful_way(project):
    text = project.read_text()
    project.write_text(text.replace("version: 1", "version: !!int 1", 1))
    assert "!!int" in project.read_text()
    assert load_config_fast(project).touchpoints.keys() == \
        load_config_fast(REPO / "touchpoints.yaml").touchpoints.keys()
