"""The benchmarks' own parts: the SMTP sink process counts what really arrived, the CPU meter
counts a process tree, percentiles are nearest-rank; and the fan-out benchmark
(bench/run.py --quick) runs end to end as a smoke test: every arm delivers every email,
counted by the sink, and the JSON has the keys bench/README.md documents. Timings are not
checked: they belong to the machine."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import smtplib
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
N = 20  # --quick's N
sys.path.insert(0, str(REPO))


def _message(to: str) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@example.com", to, "hello"
    message.set_content("hello")
    return message


def test_the_sink_counts_messages_connections_and_recipients_until_reset():
    from bench.sink import Sink

    with Sink() as sink:
        before = time.time()
        with smtplib.SMTP("127.0.0.1", sink.port) as smtp:
            smtp.send_message(_message("one@example.com"))
            smtp.send_message(_message("two@example.com"))
        with smtplib.SMTP("127.0.0.1", sink.port) as smtp:
            smtp.send_message(_message("One@example.com"))
        stats = sink.wait_for(3, timeout=10)
        sink.reset()
        after_reset = sink.stats()

    assert (stats["messages"], stats["connections"], stats["distinct_recipients"]) == (3, 2, 2)
    assert before <= stats["first_at"] <= stats["last_at"] <= time.time()
    assert after_reset == {"messages": 0, "connections": 0, "distinct_recipients": 0,
                           "first_at": None, "last_at": None}


def test_the_cpu_meter_counts_the_work_of_a_child_process():
    import os

    from bench.measure import CpuMeter

    spin = ("import sys, time\nsys.stdin.readline()\nt = time.process_time()\n"
            "while time.process_time() - t < 0.5: pass\nprint('done', flush=True)\n"
            "sys.stdin.read()")
    busy = subprocess.Popen([sys.executable, "-c", spin], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    meter = CpuMeter({"child": busy.pid, "me": os.getpid()}, alone=("me",))
    meter.start()
    busy.stdin.write("go\n")
    busy.stdin.flush()
    assert busy.stdout.readline().strip() == "done"
    used = meter.stop()
    busy.communicate("")

    assert used["child"] >= 0.5  # it spun for 0.5 CPU-s after start()
    assert used["me"] < 0.3  # the meter's own process, without its child


def test_percentiles_are_nearest_rank():
    from bench.intake import percentile

    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile([7.0], 99) == 7.0


def run_in_own_group(argv: list[str], *, cwd, timeout: float) -> subprocess.CompletedProcess:
    """Run the bench in a process group of its own; if it overruns, kill that group (its arms
    and sink) and the Prefect server's, which it starts in a group of its own and names on
    stdout (killing only bench/run.py left them all running)."""
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        for pid in re.findall(r"Prefect server up \(pid (\d+)\)", out):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(pid), signal.SIGKILL)
        pytest.fail(f"the quick bench took over {timeout} s:\n{out[-3000:]}\n{err[-3000:]}")
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


@pytest.mark.e2e
@pytest.mark.timeout(420)
def test_the_quick_bench_delivers_every_email_in_every_arm_and_writes_the_documented_json(tmp_path):
    out = tmp_path / "bench.json"
    done = run_in_own_group([sys.executable, str(REPO / "bench" / "run.py"), "--quick", "--json",
                             str(out)], cwd=tmp_path, timeout=400)

    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.read_text())
    assert {"arms", "ratios", "first_email_s", "peak_rss_mb", "machine", "customers"} <= set(results)
    assert results["customers"] == N
    assert set(results["arms"]) == {"floor", "naive", "engine"}
    for name, arm in results["arms"].items():
        assert arm["runs"], name
        for run in arm["runs"]:
            assert run["emails_delivered"] == N, (name, run)  # counted by the sink
            assert run["distinct_recipients"] == N, (name, run)
            assert run["cpu_s"]["prefect_server"] >= 0 and run["cpu_s"]["total"] > 0
            assert run["load_before"] and run["load_after"]
        assert arm["peak_rss_mb"] > 0 and arm["first_email_s"] is not None
    assert results["arms"]["floor"]["smtp_connections"] == 1
    assert results["arms"]["naive"]["smtp_connections"] == N  # a new connection per email
    engine = results["arms"]["engine"]["runs"][0]["check"]
    assert engine["ledger_sent"] == N and engine["members"] == {"waiting": N}  # on to await_fix
    for key in ("engine_vs_floor", "engine_vs_naive"):
        assert set(results["ratios"][key]) == {"emails_per_s", "emails_per_cpu_s", "cpu_s"}
        assert all(isinstance(v, float) for v in results["ratios"][key].values())
    assert set(results["first_email_s"]) == set(results["peak_rss_mb"]) == {"floor", "naive", "engine"}
    assert "| engine " in done.stdout and "engine vs floor" in done.stdout
