"""Two fixed costs: importing a large customer file, and loading touchpoints.yaml for a run.

    python bench/config_and_import.py                  # N = 100,000, 3 repeats
    python bench/config_and_import.py --customers 20000 --repeats 1
    python bench/config_and_import.py --quick          # N = 200, 1 repeat (the smoke test)
    python bench/config_and_import.py --json out.json  # also write the figures as JSON
    git worktree add --detach /tmp/before <commit>
    python bench/config_and_import.py --code /tmp/before   # the same measures, older code

* **import**: N customers written as a .csv and a .json file (unsubscribes, attributes and
  contract dates included), each imported by ``touchpoints customers import FILE`` in a fresh
  process into a fresh SQLite store, with the shipped touchpoints.yaml (so the categories are
  checked and waits follow dates, as in real use): ``new`` (every row created), then the same
  file ``again`` (every row unchanged). Wall time, CPU seconds and peak RSS of that process
  (``os.wait4``: the child's own rusage), and the report it printed, checked.
* **config**: ``flows.config.load_config_fast`` of the shipped touchpoints.yaml in a fresh
  process (what a runner child pays at the start of a flow run): the call itself, the imports
  before it, and the whole process.

Each figure is the median over ``--repeats``, with the load average around it. Targets
(issue 10): import of 100,000 rows ≤ 250 MB peak and ≤ 10 s; config load ≤ 0.3 s.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from bench.measure import load, machine, markdown

DEFAULT_CUSTOMERS = 100_000
QUICK_CUSTOMERS = 200
DEFAULT_REPEATS = 3
CODE = REPO  # the checkout measured (--code)
TARGETS = {"import_peak_rss_mb_max": 250.0, "import_wall_s_max": 10.0, "config_load_s_max": 0.3}
ZONES = ("Europe/London", "Europe/Oslo", "America/New_York", "Asia/Tokyo", "UTC")
HEADER = ("id", "name", "email", "timezone", "region", "plan", "contract_start", "contract_end",
          "account_owner", "unsubscribed", "tier")
CONFIG_PROBE = """
import json, sys, time
started = time.perf_counter()
from flows.config import load_config_fast
imported, cpu = time.perf_counter(), time.process_time()
config = load_config_fast(sys.argv[1])
done = time.perf_counter()
print(json.dumps({"import_s": imported - started, "load_s": done - imported,
                  "load_cpu_s": time.process_time() - cpu, "touchpoints": len(config.touchpoints)}))
"""


def customer(i: int) -> dict:
    return {"id": f"C-{i:07d}", "name": f"Customer {i}", "email": f"c{i}@example.com",
            "timezone": ZONES[i % len(ZONES)], "region": f"r{i % 7}", "plan": "Fibre 500",
            "contract_start": "2025-01-01", "contract_end": "2026-12-31",
            "account_owner": "sam@northwind.example",
            "unsubscribed": ["surveys"] if i % 10 == 0 else [], "tier": "gold"}


def write_files(folder: Path, count: int) -> dict[str, Path]:
    """The same ``count`` customers as customers.csv and customers.json."""
    paths = {"csv": folder / "customers.csv", "json": folder / "customers.json"}
    with paths["csv"].open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for i in range(count):
            row = customer(i)
            writer.writerow([";".join(row[name]) if name == "unsubscribed" else row[name]
                             for name in HEADER])
    with paths["json"].open("w", encoding="utf-8") as handle:
        handle.write("[\n")
        for i in range(count):
            row = customer(i)
            row["attributes"] = {"tier": row.pop("tier")}
            handle.write(("," if i else "") + json.dumps(row) + "\n")
        handle.write("]\n")
    return paths


def measured(argv: list[str], *, env: dict[str, str], cwd: Path) -> dict:
    """Run one process to its end: wall time, CPU seconds and peak RSS (its own rusage, read
    by ``os.wait4``; its output goes to files, so nothing else waits for it)."""
    loads = load()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    return {"wall_s": round(wall, 3), "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "exit": proc.returncode,
            "stdout": stdout.decode(errors="replace"), "stderr": stderr.decode(errors="replace"),
            "load_before": loads, "load_after": load()}


def code_env() -> dict[str, str]:
    """The environment without TOUCHPOINTS_ settings, importing ``flows`` from ``CODE``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOUCHPOINTS_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CODE), env.get("PYTHONPATH")]))
    return env


def import_env(data: Path) -> dict[str, str]:
    env = code_env()
    env.update({"TOUCHPOINTS_CONFIG_FILE": str(CODE / "touchpoints.yaml"),
                "TOUCHPOINTS_DATA_DIR": str(data),
                "TOUCHPOINTS_DATABASE_URL": f"sqlite:///{data / 'touchpoints.db'}"})
    return env


def touchpoints() -> list[str]:
    return [sys.executable, "-c", "import sys; from flows.cli import main; sys.exit(main())"]


def import_once(path: Path, data: Path, *, expect: dict[str, int], work: Path) -> dict:
    run = measured([*touchpoints(), "customers", "import", str(path), "--json"],
                   env=import_env(data), cwd=work)
    report = {}
    try:
        report = json.loads(run["stdout"])
    except ValueError:
        pass
    got = {key: report.get(key) for key in expect}
    run["check"] = "ok" if run["exit"] == 0 and got == expect else (
        f"exit {run['exit']}, expected {expect}, got {got}: {run['stderr'][-500:]}")
    run["report"] = {key: report.get(key) for key in ("created", "updated", "unchanged",
                                                       "rejected")}
    del run["stdout"]
    run["stderr"] = run["stderr"][-2000:]
    return run


def config_once(work: Path) -> dict:
    run = measured([sys.executable, "-c", CONFIG_PROBE, str(CODE / "touchpoints.yaml")],
                   env=code_env(), cwd=work)
    try:
        run.update(json.loads(run["stdout"].strip().splitlines()[-1]))
        run["check"] = "ok" if run["exit"] == 0 else f"exit {run['exit']}"
    except (ValueError, IndexError):
        run["check"] = f"exit {run['exit']}: {run['stderr'][-500:]}"
    del run["stdout"]
    run["stderr"] = run["stderr"][-2000:]
    return run


def median(runs: list[dict], key: str) -> float | None:
    values = [run[key] for run in runs if run.get(key) is not None]
    return round(statistics.median(values), 3) if values else None


def summarise(runs: list[dict]) -> dict:
    keys = ("wall_s", "cpu_s", "peak_rss_mb", "import_s", "load_s", "load_cpu_s")
    summary = {key: median(runs, key) for key in keys if any(key in run for run in runs)}
    summary["check"] = "ok" if all(run["check"] == "ok" for run in runs) else next(
        run["check"] for run in runs if run["check"] != "ok")
    summary["runs"] = runs
    return summary


def run_all(customers: int, repeats: int, work: Path) -> dict:
    files = write_files(work, customers)
    results: dict[str, dict] = {}
    runs: dict[str, list[dict]] = {}
    for repeat in range(repeats):
        for fmt, path in files.items():
            data = work / f"data-{fmt}-{repeat}"
            new = import_once(path, data, expect={"created": customers, "rejected": 0},
                              work=work)
            again = import_once(path, data, expect={"unchanged": customers, "rejected": 0},
                                work=work)
            runs.setdefault(f"import_{fmt}_new", []).append(new)
            runs.setdefault(f"import_{fmt}_again", []).append(again)
            shutil.rmtree(data, ignore_errors=True)
        runs.setdefault("config_load", []).append(config_once(work))
    for name, measured_runs in runs.items():
        results[name] = summarise(measured_runs)
    return results


def commit(code: Path) -> str | None:
    done = subprocess.run(["git", "-C", str(code), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=False)
    return done.stdout.strip() or None


def verdict(value: float | None, limit: float) -> str:
    if value is None:
        return "-"
    return "yes" if value <= limit else "no"


def report(results: dict) -> str:
    rows = [("measure", "wall s", "CPU s", "peak RSS MB", "targets met", "load (1 min)",
             "check")]
    for name, figure in results["figures"].items():
        loads = statistics.median(run["load_before"][0] for run in figure["runs"])
        if name == "config_load":
            rows.append(("config load (load_config_fast)", f"{figure['wall_s']:.2f} (process)",
                         f"{figure['cpu_s']:.2f}", f"{figure['peak_rss_mb']:.0f}",
                         (f"call {figure['load_s']:.3f} s ≤ {TARGETS['config_load_s_max']} s: "
                         f"{verdict(figure['load_s'], TARGETS['config_load_s_max'])} "
                         f"({figure['load_cpu_s']:.3f} CPU-s; imports before it "
                         f"{figure['import_s']:.2f} s)"), f"{loads:.2f}", figure["check"]))
            continue
        rss, wall = TARGETS["import_peak_rss_mb_max"], TARGETS["import_wall_s_max"]
        rows.append((name.replace("_", " "), f"{figure['wall_s']:.2f}", f"{figure['cpu_s']:.2f}",
                     f"{figure['peak_rss_mb']:.0f}",
                     (f"RSS ≤ {rss:.0f} MB: {verdict(figure['peak_rss_mb'], rss)}, "
                     f"wall ≤ {wall:.0f} s: {verdict(figure['wall_s'], wall)}"),
                     f"{loads:.2f}", figure["check"]))
    return (f"code: {results['code']} ({results['commit']}), "
            f"customers: {results['customers']:,}, repeats: {results['repeats']}, "
            f"load at start {results['load_at_start']}, at end {results['load_at_end']}\n\n"
            + markdown(rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=None,
                        help=f"rows in the files (default {DEFAULT_CUSTOMERS:,})")
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"runs of each measure (default {DEFAULT_REPEATS})")
    parser.add_argument("--quick", action="store_true",
                        help=f"N = {QUICK_CUSTOMERS}, 1 repeat: a smoke run")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--code", type=Path, default=REPO,
                        help="the checkout to measure (default: this one)")
    args = parser.parse_args(argv)
    global CODE
    CODE = args.code.resolve()
    customers = args.customers or (QUICK_CUSTOMERS if args.quick else DEFAULT_CUSTOMERS)
    repeats = args.repeats or (1 if args.quick else DEFAULT_REPEATS)
    if customers < 1 or repeats < 1:
        parser.error("--customers and --repeats must be at least 1")
    work = Path(tempfile.mkdtemp(prefix="tp-bench-import-"))
    try:
        results = {"customers": customers, "repeats": repeats, "code": str(CODE),
                   "commit": commit(CODE), "load_at_start": load(), "machine": machine(),
                   "targets": TARGETS}
        results["figures"] = run_all(customers, repeats, work)
        results["load_at_end"] = load()
    finally:
        if args.keep:
            print(f"work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    ok = all(figure["check"] == "ok" for figure in results["figures"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
