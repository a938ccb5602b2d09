"""`touchpoints report` prints every section as text, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from tests.reports.test_outages import DECLARED
from tests.reports.test_outages import _fill as fill_outages

ROOT = Path(__file__).resolve().parents[2]
TOUCHPOINTS = Path(sys.executable).parent / "touchpoints"


@pytest.fixture
def report(store_settings, monkeypatch, capsys):
    """Run `touchpoints report ARGS` in this process: (exit code, stdout, stderr)."""
    from flows.cli import main
    from flows.settings import reset_settings

    def run(*args: str, config: Path = ROOT / "touchpoints.yaml"):
        monkeypatch.setenv("TOUCHPOINTS_CONFIG_FILE", str(config))
        reset_settings()
        code = 0
        try:
            main(["report", *args])
        except SystemExit as exc:
            code = exc.code
        done = capsys.readouterr()
        return code, done.out, done.err

    return run


def test_the_command_prints_the_outage_section_and_weekly_trends_as_json(sqlite_store, tmp_path):
    with sqlite_store.session() as session:
        fill_outages(session)
    env = {**os.environ, "TOUCHPOINTS_DATABASE_URL": sqlite_store.url,
           "TOUCHPOINTS_DATA_DIR": str(tmp_path / "data"),
           "TOUCHPOINTS_CONFIG_FILE": str(ROOT / "touchpoints.yaml")}
    done = subprocess.run([str(TOUCHPOINTS), "report", "--format", "json", "--since",
                           "2026-11-01"], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    out1 = next(e for e in data["outages"]["outage"]["incidents"] if e["id"] == "OUT-1")
    assert out1["notice"]["p50_minutes"] == 2.0 and out1["updates_per_customer"] == 1.0
    assert data["trends"]["weeks"][0] == "2026-W44"
    assert data["outages"]["outage"]["weekly_notice"]["2026-W48"]["n"] == 4


def test_text_json_and_csv_carry_the_same_figures(store, report):
    with store.session() as session:
        fill_outages(session)
    code, text, _ = report("--since", "2026-11-01")
    assert code == 0
    assert "Outages: 2, 4 customers told" in text
    assert "notice after declaring: p50 2.0 min, p95 10.0 min (n=4)" in text
    assert "updates: 4 sent, 1.0 per customer" in text
    data = json.loads(report("-f", "json")[1])  # plain numbers on PostgreSQL too
    assert data["outages"]["outage"]["total"]["updates_sent"] == 4
    rows = list(csv.reader(io.StringIO(report("-f", "csv")[1])))
    assert ["outage", "OUT-1", "", "resolution p95_minutes", "7.0"] in rows
    assert ["outage", "all", "", "updates_sent", "4"] in rows


def test_a_touchpoint_filter_and_a_broken_config_keep_the_report_going(store, report, tmp_path):
    with store.session() as session:
        fill_outages(session)
    since = (DECLARED + timedelta(days=1)).date().isoformat()
    narrowed = json.loads(report("-f", "json", "--since", since, "--touchpoint", "outage")[1])
    assert [e["id"] for e in narrowed["outages"]["outage"]["incidents"]] == ["OUT-2"]
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\ntouchpoints: [\n")
    code, out, err = report("-f", "json", config=broken)
    assert code == 0 and json.loads(out)["outages"] == {}
    assert "no outage figures" in err


def test_a_bad_date_or_format_says_what_to_do(report):
    code, _, err = report("--since", "last tuesday")
    assert code != 0 and "YYYY-MM-DD" in err and "Traceback" not in err
    code, _, err = report("--format", "xml")
    assert code != 0 and "text, json or csv" in err
