"""bench/config_and_import.py runs end to end with a small N: every import it times created (or
found unchanged) every customer, the config load ran, and the JSON has the keys bench/README.md
documents. Timings are not checked: they belong to the machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.e2e  # five fresh processes: about 10 CPU-seconds
@pytest.mark.timeout(280)
def test_the_import_and_config_bench_measures_every_run_and_writes_the_documented_json(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, str(REPO / "bench" / "config_and_import.py"),
                           "--quick", "--customers", "30", "--json", str(out)],
                          check=False, cwd=tmp_path, capture_output=True, text=True, timeout=270)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "| import csv new" in done.stdout and "| config load" in done.stdout
    results = json.loads(out.read_text())
    assert {"customers", "repeats", "figures", "targets", "machine", "load_at_start",
            "load_at_end"} <= set(results)
    figures = results["figures"]
    assert set(figures) == {"import_csv_new", "import_csv_again", "import_json_new",
                            "import_json_again", "config_load"}
    for name, figure in figures.items():
        assert figure["check"] == "ok", (name, figure)
        assert figure["wall_s"] > 0 and figure["cpu_s"] > 0 and figure["peak_rss_mb"] > 10
        [run] = figure["runs"]
        assert run["load_before"] and run["load_after"]
    assert figures["import_csv_new"]["runs"][0]["report"]["created"] == 30
    assert figures["import_json_again"]["runs"][0]["report"]["unchanged"] == 30
    assert figures["config_load"]["load_s"] > 0 and figures["config_load"]["import_s"] > 0
