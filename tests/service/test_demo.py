"""`touchpoints demo` keeps its compressed clock in its own data folder, and `serve` never runs
demo time on a real store nor real time on the demo's store. The whole demo runs end to end
in a subprocess: URLs first, every story step reported, the clock kept for the next run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows import clock
from flows.errors import ServiceError
from flows.service.demo import CLOCK_FILE, demo_clock, guard_clock, read_demo_clock
from tests.fixtures.mail import free_port

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_clock(monkeypatch):
    monkeypatch.delenv(clock.ENV, raising=False)


def test_a_new_demo_writes_its_clock_into_its_own_folder_privately(tmp_path, no_clock):
    value = demo_clock(tmp_path / "demo", 4320)
    kept = read_demo_clock(tmp_path / "demo")
    assert value and value.endswith("*4320") and kept["clock"] == value
    assert (tmp_path / "demo" / CLOCK_FILE).stat().st_mode & 0o777 == 0o600


def test_a_second_demo_goes_on_with_the_clock_it_was_started_with(tmp_path, no_clock):
    first = demo_clock(tmp_path, 4320)
    assert demo_clock(tmp_path, 4320) == first


def test_a_demo_at_another_speed_is_refused_with_the_way_out(tmp_path, no_clock):
    demo_clock(tmp_path, 4320)
    with pytest.raises(ServiceError) as caught:
        demo_clock(tmp_path, 100)
    assert "4320" in caught.value.message and "--fresh" in caught.value.hint


def test_serve_refuses_the_demo_store_on_real_time(tmp_path, no_clock):
    demo_clock(tmp_path, 4320)
    with pytest.raises(ServiceError, match="demo's store"):
        guard_clock(tmp_path)


def test_serve_runs_the_demo_store_on_the_demo_clock(tmp_path, monkeypatch):
    monkeypatch.setenv(clock.ENV, demo_clock(tmp_path, 4320))
    guard_clock(tmp_path)


def test_serve_refuses_a_compressed_clock_on_a_real_store(tmp_path, monkeypatch):
    monkeypatch.setenv(clock.ENV, clock.dilate(4320))
    with pytest.raises(ServiceError, match="real customers would get mail early"):
        guard_clock(tmp_path)


def test_serve_on_a_real_store_in_real_time_is_fine(tmp_path, no_clock):
    guard_clock(tmp_path)


def test_the_story_says_what_the_intake_did_with_each_event():
    from flows.service.demo import describe_answer

    assert describe_answer({"started": ["sale"]}) == "started sale"
    assert describe_answer({"resumed": ["j-1"], "skipped": [
        {"touchpoint": "install", "reason": "entry rule after_end"}]}) == \
        "woke j-1; skipped install (entry rule after_end)"
    assert describe_answer({}) == "started nothing (no touch point waits for it)"


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_the_demo_prints_its_urls_first_plays_every_step_and_keeps_its_clock(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TOUCHPOINTS_", "PREFECT_API_URL", "PREFECT_HOME"))}
    env.update({"TOUCHPOINTS_DATA_DIR": str(tmp_path / "data"),
                "TOUCHPOINTS_PREFECT_PORT": str(free_port()),
                "TOUCHPOINTS_WEB_PORT": str(port := free_port()),
                "TOUCHPOINTS_BASE_URL": f"http://127.0.0.1:{port}",
                "TOUCHPOINTS_CATCHER_PORT": str(free_port()),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    done = subprocess.run([sys.executable, "-m", "flows", "demo",
                           "--exit-after-story"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=560)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert output.index("Touchpoints is running") < output.index("playing the story")
    assert "story: all" in output and "failed" not in output.split("playing the story")[1], output
    demo = tmp_path / "data" / "demo"
    assert json.loads((demo / CLOCK_FILE).read_text())["speed"] == 4320
    assert (demo / "touchpoints.db").exists() and not (tmp_path / "data" / "touchpoints.db").exists()

    refused = subprocess.run([sys.executable, "-m", "flows", "serve"], cwd=REPO,
                             env={**env, "TOUCHPOINTS_DATA_DIR": str(demo)},
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "holds the demo's store" in refused.stderr + refused.stdout
