"""The fan-out benchmark: one outage email to each of N customers, three ways, side by side.

    python bench/run.py                    # N = 10,000, arms interleaved, 2 repeats
    python bench/run.py --customers 2000 --repeats 3
    python bench/run.py --quick            # N = 20, 1 repeat: the CI smoke run
    python bench/run.py --json out.json    # also write the figures as JSON

Arms (bench/plain.py, bench/arms.py), each in a process of its own, all sending to the same
SMTP sink (bench/sink.py, its own process) and, where Prefect is used, the same Prefect server
(``prefect server start`` in a subprocess with a temporary PREFECT_HOME):

* ``floor``   plain Python: the shipped outage templates rendered with Jinja2, an EmailMessage
  each, one SMTP connection, one hash-chained SQLite audit row per email;
* ``naive``   the same work as one Prefect @task per email, a new SMTP connection each;
* ``engine``  the shipped outage touch point (touchpoints.yaml) through the real dispatcher:
  N customers imported into a fresh store, one ``outage.declared`` emitted in-process.

Reported per arm: emails/s, CPU seconds of every process involved (the arm, the Prefect
server, the sink, this process), time from the start (for the engine: the emit call) to the
first message at the sink, peak RSS of the arm's process, and the load average around it.
See bench/README.md for how to read the figures and the results on the reference machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from bench.measure import CpuMeter, PrefectServer, idle_rate, load, machine, markdown, settle
from bench.sink import Sink

DEFAULT_CUSTOMERS = 10_000
QUICK_CUSTOMERS = 20
DEFAULT_REPEATS = 2
ARMS = ("floor", "naive", "engine")
REGION, WARMUP_REGION, WARMUP_CUSTOMERS = "north", "warmup", 3
SECRET = "bench-secret-key-not-for-production"
TARGETS = {"engine_vs_floor_min": 0.75, "first_email_max_s": 5.0}


def write_customers(path: Path, count: int) -> None:
    """``count`` customers in the outage region, and a few in a warm-up region."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "name", "email", "timezone", "region", "plan",
                         "contract_start", "contract_end"])
        for n in range(1, count + 1):
            writer.writerow([f"B-{n:06d}", f"Customer{n} Bench", f"customer{n:06d}@example.com",
                             "Europe/London", REGION, "Fibre 500", "2025-01-10", "2027-01-09"])
        for n in range(1, WARMUP_CUSTOMERS + 1):
            writer.writerow([f"W-{n:06d}", f"Warm{n} Bench", f"warm{n}@example.com",
                             "Europe/London", WARMUP_REGION, "Fibre 500", "2025-01-10", "2027-01-09"])


class Worker:
    """One arm's process (bench/arms.py), spoken to over stdin/stdout."""

    def __init__(self, arm: str, *, env: dict, args: list[str], log: Path) -> None:
        self.arm = arm
        with open(log, "ab") as handle:  # the child keeps its own copy
            self.proc = subprocess.Popen([sys.executable, str(HERE / "arms.py"), arm, *args],
                                         env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=handle, text=True, bufsize=1, cwd=REPO)
        self.log = log
        self.ready: dict = {}
        self._lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.startswith("@@bench "):
                self._lines.put(json.loads(line[len("@@bench "):]))
        self._lines.put(None)

    def expect(self, kind: str, timeout: float) -> dict:
        try:
            message = self._lines.get(timeout=timeout)
        except queue.Empty:
            message = {"kind": "timeout"}
        if message is None or message.get("kind") != kind:
            tail = self.log.read_text(errors="replace")[-3000:]
            self.stop()
            raise RuntimeError(f"{self.arm}: expected {kind!r}, got {message!r}; its log:\n{tail}")
        return message

    def send(self, command: str) -> None:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("exit")
                self.proc.wait(30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(10)


def arm_env(arm: str, folder: Path, server: PrefectServer, sink: Sink) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOUCHPOINTS_", "PREFECT_"))}
    env.update({"PREFECT_HOME": str(folder / "prefect-client"), "PREFECT_LOGGING_LEVEL": "WARNING",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": str(REPO)})  # this copy of flows/, whatever is installed
    if arm != "floor":
        env["PREFECT_API_URL"] = server.api_url
    if arm == "engine":
        env.update({"TOUCHPOINTS_DATA_DIR": str(folder / "data"),
                    "TOUCHPOINTS_CONFIG_FILE": str(REPO / "touchpoints.yaml"),
                    "TOUCHPOINTS_SMTP_URL": sink.url, "TOUCHPOINTS_SECRET_KEY": SECRET})
    return env


def start_worker(arm: str, repeat: int, *, csv_path: Path, workdir: Path,
                 server: PrefectServer, sink: Sink) -> Worker:
    """Start an arm's process; it prepares (imports, store, warm-up) until it says ready."""
    folder = workdir / f"{arm}-{repeat}"
    folder.mkdir(parents=True)
    return Worker(arm, env=arm_env(arm, folder, server, sink), log=folder / "worker.log",
                  args=["--customers-csv", str(csv_path), "--smtp-port", str(sink.port),
                        "--workdir", str(folder), "--tag", f"OUT-{arm}-{repeat}"])


def run_arm(worker: Worker, repeat: int, *, customers: int, server: PrefectServer, sink: Sink,
            say) -> dict:
    """Measure one prepared arm. Nothing else is measured at the same time: the arms of a
    round prepare together, then run one after the other."""
    arm = worker.arm
    try:
        sink.reset()
        meter = CpuMeter({"arm": worker.proc.pid, "prefect_server": server.pid,
                          "sink": sink.pid, "bench": os.getpid()}, alone=("bench",))
        idle = idle_rate(server.pid)  # the server's own polling, before the arm asks anything
        load_before = load()
        meter.start()
        worker.send("go")
        done = worker.expect("done", timeout=3600)
        stats = sink.wait_for(customers, timeout=60)
        # the Prefect server records task runs from events after the fact: its catch-up work
        # is part of the arm's cost, so wait until it and the arm are idle before counting
        catch_up = settle(server.pid, idle=idle)
        settle(worker.proc.pid, timeout=30)
        cpu = meter.stop()
        load_after = load()
        worker.send("check")
        checked = worker.expect("checked", timeout=600)
    finally:
        worker.stop()
    wall = done["t_end"] - done["t0"]
    total_cpu = round(sum(cpu.values()), 2)
    result = {
        "arm": arm, "repeat": repeat, "customers": customers,
        "emails_delivered": stats["messages"],
        "distinct_recipients": stats["distinct_recipients"],
        "smtp_connections": stats["connections"],
        "wall_s": round(wall, 3),
        "emails_per_s": round(stats["messages"] / wall, 1) if wall > 0 else None,
        "first_email_s": round(stats["first_at"] - done["t0"], 3) if stats["first_at"] else None,
        "last_email_s": round(stats["last_at"] - done["t0"], 3) if stats["last_at"] else None,
        "cpu_s": {**cpu, "total": total_cpu},
        "prefect_server_idle_cpu_per_s": round(idle, 3),
        "emails_per_cpu_s": round(stats["messages"] / total_cpu, 1) if total_cpu else None,
        "peak_rss_mb": done["peak_rss_mb"], "server_catch_up_s": round(catch_up, 1),
        "prepare_s": worker.ready["prepare_s"], "load_before": load_before, "load_after": load_after,
        "check": {k: v for k, v in checked.items() if k != "kind"},
    }
    say(f"[{repeat}] {arm}: {result['emails_delivered']} emails in {wall:.1f}s "
        f"({result['emails_per_s']}/s), {total_cpu:.1f} CPU-s, first after "
        f"{result['first_email_s']}s, load {load_before[0]} → {load_after[0]}")
    return result


def summarise(runs: list[dict]) -> dict:
    """Per arm: the median of its repeats, and every run."""
    def median(key, sub=None):
        values = [(r[key][sub] if sub else r[key]) for r in runs]
        values = [v for v in values if v is not None]
        return round(statistics.median(values), 3) if values else None

    return {"emails_per_s": median("emails_per_s"), "wall_s": median("wall_s"),
            "cpu_s": median("cpu_s", "total"),
            "cpu_s_by_process": {name: median("cpu_s", name) for name in runs[0]["cpu_s"]},
            "emails_per_cpu_s": median("emails_per_cpu_s"),
            "first_email_s": median("first_email_s"), "peak_rss_mb": median("peak_rss_mb"),
            "emails_delivered": min(r["emails_delivered"] for r in runs),
            "smtp_connections": median("smtp_connections"), "runs": runs}


def ratio(a, b) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def ratios(arms: dict) -> dict:
    engine = arms["engine"]
    out = {}
    for other in ("floor", "naive"):
        ref = arms[other]
        out[f"engine_vs_{other}"] = {
            "emails_per_s": ratio(engine["emails_per_s"], ref["emails_per_s"]),
            "emails_per_cpu_s": ratio(engine["emails_per_cpu_s"], ref["emails_per_cpu_s"]),
            "cpu_s": ratio(engine["cpu_s"], ref["cpu_s"])}
    return out


def report(results: dict) -> str:
    arms, n = results["arms"], results["customers"]
    rows = [("arm", "emails/s", "wall (s)", "CPU-s total", "… arm", "… Prefect server", "… sink",
             "emails per CPU-s", "first email (s)", "peak RSS (MB)", "SMTP connections")]
    for name, a in arms.items():
        by = a["cpu_s_by_process"]
        rows.append((name, f"{a['emails_per_s']:.1f}", f"{a['wall_s']:.1f}", f"{a['cpu_s']:.1f}",
                     f"{by['arm']:.1f}", f"{by['prefect_server']:.1f}", f"{by['sink']:.1f}",
                     f"{a['emails_per_cpu_s']:.1f}", f"{a['first_email_s']:.2f}",
                     f"{a['peak_rss_mb']:.0f}", f"{a['smtp_connections']:.0f}"))
    runs = [("run", "arm", "emails", "emails/s", "CPU-s", "first email (s)", "load before",
             "load after")]
    for a in arms.values():
        for r in a["runs"]:
            runs.append((str(r["repeat"]), r["arm"], str(r["emails_delivered"]),
                         f"{r['emails_per_s']:.1f}", f"{r['cpu_s']['total']:.1f}",
                         f"{r['first_email_s']:.2f}", " ".join(map(str, r["load_before"])),
                         " ".join(map(str, r["load_after"]))))
    runs[1:] = sorted(runs[1:], key=lambda row: (int(row[0]), ARMS.index(row[1])))
    lines = [f"N = {n} customers, {results['repeats']} repeat(s), arms interleaved; medians:", "",
             markdown(rows), "", markdown(runs), ""]
    if "engine" in arms:
        for r in arms["engine"]["runs"]:
            steps = r["check"].get("task_runs") or {}
            lines.append(f"engine run {r['repeat']}, Prefect task runs: " + ", ".join(
                f"{name} {v['runs']}× {v['seconds']:.1f}s" for name, v in steps.items()))
    for key, value in results["ratios"].items():
        lines.append(f"{key.replace('_', ' ')}: emails/s ×{value['emails_per_s']}, "
                     f"emails per CPU-s ×{value['emails_per_cpu_s']} "
                     f"(CPU-s ×{value['cpu_s']})")
    lines.append("machine: " + ", ".join(f"{k} {v}" for k, v in results["machine"].items()))
    return "\n".join(lines)


def collect(results: dict, runs: dict[str, list[dict]], started: float, *, complete: bool) -> None:
    """The summary of the runs so far, in ``results``."""
    done = {arm: summarise(r) for arm, r in runs.items() if r}
    empty = {"emails_per_s": None, "emails_per_cpu_s": None, "cpu_s": None}
    results["arms"] = done
    results["ratios"] = ratios({**{a: empty for a in ARMS}, **done})
    results["first_email_s"] = {a: v["first_email_s"] for a, v in done.items()}
    results["peak_rss_mb"] = {a: v["peak_rss_mb"] for a, v in done.items()}
    results["targets"] = TARGETS
    results["load_at_end"] = load()
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    results["complete"] = complete


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, help=f"N (default {DEFAULT_CUSTOMERS}, "
                                                     f"{QUICK_CUSTOMERS} with --quick)")
    parser.add_argument("--repeats", type=int, help=f"rounds of A B C (default {DEFAULT_REPEATS}, "
                                                   "1 with --quick)")
    parser.add_argument("--arms", default=",".join(ARMS), help="which arms, in order")
    parser.add_argument("--quick", action="store_true", help="a smoke run for CI")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    customers = args.customers or (QUICK_CUSTOMERS if args.quick else DEFAULT_CUSTOMERS)
    repeats = args.repeats or (1 if args.quick else DEFAULT_REPEATS)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    if customers < 1 or repeats < 1 or not set(arms) <= set(ARMS) or "engine" not in arms:
        parser.error("--customers and --repeats must be at least 1; --arms names floor, naive, "
                     "engine and includes engine")

    def say(text: str) -> None:
        print(text, flush=True)

    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="touchpoints-bench-"))
    results: dict = {"customers": customers, "repeats": repeats, "machine": machine(),
                     "load_at_start": load()}
    try:
        csv_path = workdir / "customers.csv"
        write_customers(csv_path, customers)
        server = PrefectServer(workdir / "prefect-server", log=workdir / "prefect-server.log")
        say("starting the Prefect server (a subprocess; its first start migrates its database)…")
        with Sink() as sink, server:
            say(f"Prefect server up (pid {server.pid}), SMTP sink on port {sink.port} "
                f"(pid {sink.pid})")
            runs: dict[str, list[dict]] = {arm: [] for arm in arms}
            for repeat in range(1, repeats + 1):
                say(f"[{repeat}] preparing {', '.join(arms)} (N={customers})…")
                workers = [start_worker(arm, repeat, csv_path=csv_path, workdir=workdir,
                                        server=server, sink=sink) for arm in arms]
                try:
                    for worker in workers:  # all prepared before any is measured
                        worker.ready = worker.expect("ready", timeout=1800)
                    for worker in workers:
                        runs[worker.arm].append(run_arm(worker, repeat, customers=customers,
                                                        server=server, sink=sink, say=say))
                        collect(results, runs, started, complete=False)
                        if args.json:  # so far: a run cut short still leaves its figures
                            args.json.write_text(json.dumps(results, indent=2))
                finally:
                    for worker in workers:
                        worker.stop()
        collect(results, runs, started, complete=True)
        say("")
        say(report(results))
        say(f"whole benchmark: {results['elapsed_s']:.0f}s")
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
        short = [(r["arm"], r["repeat"], r["emails_delivered"]) for rs in runs.values() for r in rs
                 if r["emails_delivered"] != customers or r["distinct_recipients"] != customers]
        if short:
            say(f"NOT every email arrived at the sink: {short}")
            return 1
        return 0
    finally:
        if args.keep:
            say(f"work folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
