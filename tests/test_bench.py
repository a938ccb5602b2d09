"""The fan-out benchmark (bench/run.py --quick) runs end to end as a smoke test: every arm
delivers every email, counted by the SMTP sink in its own process, and the JSON has the keys
bench/README.md documents. Timings are not checked: they belong to the machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
N = 20  # --quick's N

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(420)
def test_the_quick_bench_delivers_every_email_in_every_arm_and_writes_the_documented_json(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), "--quick", "--json", str(out)],
                          check=False, cwd=tmp_path, capture_output=True, text=True, timeout=400)

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
