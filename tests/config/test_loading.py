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
