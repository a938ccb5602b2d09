"""Private data at rest: private folders are 0700 and private files 0600 from the moment they
exist, whatever the umask; existing too-open ones are narrowed."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from flows.private import make_private, private_dir, write_private


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask():
    """A umask that would leave new files world-writable: modes must not depend on it."""
    old = os.umask(0)
    yield
    os.umask(old)


def test_a_private_folder_is_made_0700_and_an_existing_open_one_is_narrowed(tmp_path, open_umask):
    made = private_dir(tmp_path / "a" / "data")
    assert mode(made) == 0o700
    existing = tmp_path / "old"
    existing.mkdir(mode=0o755)
    private_dir(existing)
    assert mode(existing) == 0o700


def test_a_private_file_is_written_0600_atomically_and_replaces_an_open_one(tmp_path, open_umask):
    path = tmp_path / "secret"
    path.write_text("old")
    os.chmod(path, 0o644)
    write_private(path, "new")
    assert (path.read_text(), mode(path)) == ("new", 0o600)
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]  # no temporary file left


def test_an_exclusive_write_keeps_the_file_that_was_there_first(tmp_path):
    path = write_private(tmp_path / "key", "first", exclusive=True)
    write_private(path, "second", exclusive=True)
    assert path.read_text() == "first" and mode(path) == 0o600


def test_make_private_narrows_a_file_and_ignores_a_missing_one(tmp_path):
    path = tmp_path / "f"
    path.write_text("x")
    os.chmod(path, 0o666)
    make_private(path)
    make_private(tmp_path / "missing")
    assert mode(path) == 0o600


def test_the_first_command_makes_the_data_folder_0700(tmp_path, open_umask):
    from flows.prefect_env import configure
    from flows.settings import Settings

    data = tmp_path / "data"
    before = os.environ.get("PREFECT_HOME")
    try:
        configure(Settings(data_dir=data, config_file=tmp_path / "touchpoints.yaml"))
    finally:
        if before is None:
            os.environ.pop("PREFECT_HOME", None)
        else:
            os.environ["PREFECT_HOME"] = before
    assert mode(data) == 0o700


def test_serve_json_is_0600_even_over_an_open_one(tmp_path, open_umask):
    from flows.cli import remote
    from flows.settings import Settings

    settings = Settings(data_dir=tmp_path / "data", config_file=tmp_path / "touchpoints.yaml")
    (tmp_path / "data").mkdir(mode=0o755)
    old = tmp_path / "data" / "serve.json"
    old.write_text("{}")
    os.chmod(old, 0o644)
    path = remote.write_service_info(settings, remote.ServiceInfo(
        pid=os.getpid(), web_url="http://127.0.0.1:8000", api_key="tp_x_y"))
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    assert json.loads(path.read_text())["api_key"] == "tp_x_y"
