"""`touchpoints report` prints every section as text, JSON or CSV, run as a real command."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from tests.reports.test_outages import DECLARED
from tests.reports.test_outages import _fill as fill_outages

ROOT = Path(__file__).resolve().parents[2]
TOUCHPOINTS = Path(sys.executable).parent / "touchpoints"


def _report(store, tmp_path, *args: str, config: Path = ROOT / "touchpoints.yaml"):
    env = {**os.environ, "TOUCHPOINTS_DATABASE_URL": store.url,
           "TOUCHPOINTS_DATA_DIR": str(tmp_path / "data"), "TOUCHPOINTS_CONFIG_FILE": str(config)}
    return subprocess.run([str(TOUCHPOINTS), "report", *args], env=env, cwd=tmp_path, check=False,
                          capture_output=True, text=True, timeout=120)


def test_json_has_the_outage_section_and_weekly_trends(store, tmp_path):
    with store.session() as session:
        fill_outages(session)
    done = _report(store, tmp_path, "--format", "json", "--since", "2026-11-01")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    out1 = next(e for e in data["outages"]["outage"]["incidents"] if e["id"] == "OUT-1")
    assert out1["notice"]["p50_minutes"] == 2.0 and out1["updates_per_customer"] == 1.0
    assert data["trends"]["weeks"][0] == "2026-W44"
    assert data["outages"]["outage"]["weekly_notice"]["2026-W48"]["n"] == 4


def test_text_and_csv_carry_the_same_figures(sqlite_store, tmp_path):
    with sqlite_store.session() as session:
        fill_outages(session)
    text = _report(sqlite_store, tmp_path, "--since", "2026-11-01")
    assert text.returncode == 0, text.stderr
    assert "Outages: 2, 4 customers told" in text.stdout
    assert "notice after declaring: p50 2.0 min, p95 10.0 min (n=4)" in text.stdout
    assert "updates: 4 sent, 1.0 per customer" in text.stdout
    rows = list(csv.reader(io.StringIO(_report(sqlite_store, tmp_path, "-f", "csv").stdout)))
    assert ["outage", "OUT-1", "", "resolution p95_minutes", "7.0"] in rows
    assert ["outage", "all", "", "updates_sent", "4"] in rows


def test_a_touchpoint_filter_and_a_broken_config_keep_the_report_going(sqlite_store, tmp_path):
    with sqlite_store.session() as session:
        fill_outages(session)
    since = (DECLARED + timedelta(days=1)).date().isoformat()
    narrowed = json.loads(_report(sqlite_store, tmp_path, "-f", "json", "--since", since,
                                  "--touchpoint", "outage").stdout)
    assert [e["id"] for e in narrowed["outages"]["outage"]["incidents"]] == ["OUT-2"]
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\ntouchpoints: [\n")
    done = _report(sqlite_store, tmp_path, "-f", "json", config=broken)
    assert done.returncode == 0 and json.loads(done.stdout)["outages"] == {}
    assert "no outage figures" in done.stderr


def test_a_bad_date_or_format_says_what_to_do(sqlite_store, tmp_path):
    done = _report(sqlite_store, tmp_path, "--since", "last tuesday")
    assert done.returncode != 0 and "YYYY-MM-DD" in done.stderr
    assert "Traceback" not in done.stderr
    done = _report(sqlite_store, tmp_path, "--format", "xml")
    assert done.returncode != 0 and "text, json or csv" in done.stderr
