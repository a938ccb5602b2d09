"""Warm flow runs: the launcher the runner starts per flow run, and the fork server it asks
(flows/service/warmruns.py). Real processes throughout; a small module stands in for
``prefect.engine`` so each forked run does something we can watch (the served flows themselves
run this way in tests/service/test_serve.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUNNER = """
import os, sys
from flows.service import warmruns
print(warmruns.fork_server(module="tests.service.warm_child"), flush=True)
print(os.environ["TOUCHPOINTS_RUN_SOCKET"], flush=True)
sys.stdin.read()
"""


@pytest.fixture
def runner():
    """A process standing in for the runner: it forks the fork server, then waits."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", RUNNER], cwd=REPO, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    server_pid = int(proc.stdout.readline())
    proc.address = proc.stdout.readline().strip()
    proc.server_pid = server_pid
    yield proc
    proc.kill()
    proc.wait(10)
    gone(server_pid, within=5)


def launcher(runner, tmp_path: Path, action: str, *args: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TOUCHPOINTS_RUN_SOCKET": runner.address,
           "WARM_ACTION": action, "WARM_VALUE": "from-the-launcher"}
    return subprocess.Popen([sys.executable, "-m", "flows.service.runlauncher", *args], env=env,
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **popen)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone before, or while, /proc was read
        return False


def gone(pid: int, *, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.02)
    return False


def run_pid(line: str) -> int:
    assert line.startswith("run pid="), line
    return int(line.split()[1].removeprefix("pid="))


def test_a_warm_run_has_the_launchers_environment_folder_arguments_and_streams_and_exit_code(
        runner, tmp_path):
    proc = launcher(runner, tmp_path, "exit:3", "--flag", "value")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 3
    assert f"cwd={tmp_path} args=['--flag', 'value'] value=from-the-launcher" in out
    assert run_pid(out) not in (proc.pid, runner.pid, runner.server_pid)  # a forked child ran it


def test_a_signal_to_the_launcher_reaches_the_run_once(runner, tmp_path):
    proc = launcher(runner, tmp_path, "trap-term")
    run_pid(proc.stdout.readline())
    assert proc.stdout.readline().strip() == "trapping"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert out.count("got signal 15") == 1
    assert proc.returncode == 7


def test_a_run_killed_by_a_signal_ends_its_launcher_by_the_same_signal(runner, tmp_path):
    proc = launcher(runner, tmp_path, "kill-self")
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL  # what Prefect reads from a crashed run process


def test_a_killed_launcher_takes_its_run_with_it(runner, tmp_path):
    proc = launcher(runner, tmp_path, "sleep")
    pid = run_pid(proc.stdout.readline())
    proc.kill()
    proc.wait(10)
    assert gone(pid, within=2)
    assert alive(runner.server_pid)  # the fork server serves the next run


def test_when_the_runner_dies_the_fork_server_and_every_run_die_at_once(runner, tmp_path):
    procs = [launcher(runner, tmp_path, "sleep") for _ in range(2)]
    pids = [run_pid(proc.stdout.readline()) for proc in procs]
    runner.kill()
    assert gone(runner.server_pid, within=2)
    assert all(gone(pid, within=2) for pid in pids)
    for proc in procs:  # the launchers end as their runs did: killed
        proc.wait(10)
        assert proc.returncode == -signal.SIGKILL


def test_without_a_fork_server_the_launcher_runs_prefect_engine_itself(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT__FLOW_RUN_ID": "not-a-flow-run-id",
           "TOUCHPOINTS_RUN_SOCKET": "@touchpoints-runs-nobody-listens-here"}
    done = subprocess.run([sys.executable, "-m", "flows.service.runlauncher"], env=env, check=False,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "Invalid flow run id" in done.stdout + done.stderr
    assert "starts cold (the fork server does not answer)" in done.stderr
