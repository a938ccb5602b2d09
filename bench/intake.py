"""The intake benchmark: contract.signed events for distinct customers posted by concurrent
clients to a real `touchpoints serve`, until every welcome email is out.

    python bench/intake.py                       # 2,000 events, 16 clients
    python bench/intake.py --events 500 --clients 8
    python bench/intake.py --quick               # 40 events, 4 clients: a smoke run
    python bench/intake.py --json intake.json

`touchpoints serve` runs in a subprocess on embedded defaults (SQLite store, the mail catcher,
its own Prefect server and runner) in a temporary data folder, with the shipped
touchpoints.yaml; the customers are imported first with `touchpoints customers import`.
Reported: events/s stored (202s over the posting time), p50/p99 of the 202 latency, and the
time from the first post until the last welcome email is in the catcher's mailbox, plus the
CPU seconds of serve's whole process tree and the load around the run.

Side by side: ``--baseline DIR`` measures another checkout of the project too (e.g.
``git worktree add /tmp/intake-before COMMIT``), with the same venv, the same events and a
fresh data folder, one arm after the other (baseline first) in the same invocation:

    python bench/intake.py --baseline /tmp/intake-before
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
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

from bench.measure import CpuMeter, free_port, load, machine, markdown

WELCOME = "Welcome to Northwind Fibre"
TARGETS = {"events_per_s_min": 300, "p99_ms_max": 100, "all_welcomes_max_s": 300}


def write_customers(path: Path, count: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "name", "email", "timezone", "region", "plan", "contract_start",
                         "contract_end"])
        for n in range(1, count + 1):
            writer.writerow([f"S-{n:06d}", f"Signer{n} Bench", f"signer{n:06d}@example.com",
                             "Europe/London", "south", "Fibre 500", "2026-12-01", "2028-11-30"])


class Serve:
    """`touchpoints serve` in a subprocess (the way tests/service/conftest.py starts it)."""

    def __init__(self, root: Path, code: Path = REPO) -> None:
        self.root, self.data, self.code = root, root / "data", code
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("TOUCHPOINTS_", "PREFECT_"))}
        web = free_port()
        self.env.update({"TOUCHPOINTS_DATA_DIR": str(self.data),
                         "TOUCHPOINTS_CONFIG_FILE": str(code / "touchpoints.yaml"),
                         "TOUCHPOINTS_PREFECT_PORT": str(free_port()),
                         "TOUCHPOINTS_WEB_PORT": str(web),
                         "TOUCHPOINTS_CATCHER_PORT": str(free_port()),
                         "TOUCHPOINTS_BASE_URL": f"http://127.0.0.1:{web}",
                         "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                         "PYTHONPATH": str(code)})  # serve and its runs import this copy
        self.proc: subprocess.Popen | None = None
        self.info: dict = {}

    def cli(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "flows", *args], env=self.env, cwd=self.root,
                              capture_output=True, text=True, timeout=900, check=False)
        if done.returncode:
            raise RuntimeError(f"touchpoints {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def start(self, timeout: float = 300) -> float:
        started = time.monotonic()
        with open(self.root / "serve.log", "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "flows", "serve"], env=self.env,
                                         cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        state = self.data / "serve.json"
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                info = json.loads(state.read_text())
            except (OSError, ValueError):
                info = {}
            if info.get("pid") == self.proc.pid:
                self.info = info
                return time.monotonic() - started
            time.sleep(0.5)
        raise RuntimeError(f"serve did not start in {timeout:.0f}s:\n{self.log()}")

    def log(self) -> str:
        path = self.root / "serve.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def post_all(url: str, key: str, events: list[dict], clients: int) -> list[tuple[float, float, int]]:
    """Each client thread posts its share of the events one after the other, on its own
    keep-alive connection. Returns (sent at, answered at, status) per event."""
    import httpx

    results: list[tuple[float, float, int]] = []
    lock = threading.Lock()
    shares = [events[i::clients] for i in range(clients)]

    def client(share: list[dict]) -> None:
        mine = []
        with httpx.Client(base_url=url, timeout=60,
                          headers={"Authorization": f"Bearer {key}"}) as http:
            gate.wait()
            for event in share:
                sent = time.perf_counter()
                try:
                    status = http.post("/api/events", json=event).status_code
                except httpx.HTTPError:
                    status = 0
                mine.append((sent, time.perf_counter(), status))
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=client, args=(share,)) for share in shares if share]
    gate = threading.Barrier(len(threads))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def welcomes(mailbox: Path, seen: dict[str, float]) -> int:
    """Count the welcome emails in the catcher's mailbox (each summary read once)."""
    if mailbox.is_dir():
        for path in mailbox.glob("*.json"):
            if path.stem in seen:
                continue
            try:
                summary = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # being written: read it next time
            seen[path.stem] = summary.get("subject", "").startswith(WELCOME)
    return sum(1 for v in seen.values() if v)


def stored_events(data: Path, prefix: str) -> int:
    import sqlite3

    with sqlite3.connect(data / "touchpoints.db") as db:
        return db.execute("SELECT count(*) FROM events WHERE id LIKE ?", (f"{prefix}%",)).fetchone()[0]


def percentile(values: list[float], p: float) -> float:
    """Nearest rank: the smallest value with at least p% of the values at or below it."""
    import math

    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def measure(events_n: int, clients: int, drain_timeout: float, root: Path, say,
            code: Path = REPO) -> dict:
    from flows.config import load_config_fast

    root.mkdir(parents=True, exist_ok=True)
    serve = Serve(root, code)
    csv_path = root / "customers.csv"
    write_customers(csv_path, events_n)
    say(f"importing {events_n} customers…")
    serve.cli("customers", "import", str(csv_path))
    example = dict(load_config_fast(code / "touchpoints.yaml").event_types()["contract.signed"].example)
    events = [{"id": f"bench-signed-{n:06d}", "type": "contract.signed", "customer_id": f"S-{n:06d}",
               "data": {**example, "contract_id": f"CT-B{n:06d}"}} for n in range(1, events_n + 1)]
    say("starting touchpoints serve (Prefect server, runner, web app, mail catcher)…")
    try:
        up = serve.start()
        say(f"serve up in {up:.0f}s at {serve.info['web_url']}")
        meter = CpuMeter({"serve": serve.proc.pid, "bench": os.getpid()}, alone=("bench",))
        load_before = load()
        meter.start()
        t0 = time.perf_counter()
        answers = post_all(serve.info["web_url"], serve.info["api_key"], events, clients)
        posted = max(a for _, a, _ in answers) - t0
        accepted = sum(1 for _, _, status in answers if status == 202)
        latencies = [(a - s) * 1000 for s, a, status in answers if status == 202]
        stored = stored_events(serve.data, "bench-signed-")
        say(f"{accepted} of {events_n} events accepted in {posted:.1f}s; waiting for the welcomes…")
        seen: dict[str, float] = {}
        count, at_target = 0, None
        all_out_s = None
        while time.perf_counter() - t0 < drain_timeout:
            count = welcomes(serve.data / "mailbox", seen)
            elapsed = time.perf_counter() - t0
            if at_target is None and elapsed >= TARGETS["all_welcomes_max_s"]:
                at_target = count
            if count >= events_n:
                all_out_s = elapsed
                break
            time.sleep(2)
        waited = time.perf_counter() - t0
        cpu = meter.stop()
        load_after = load()
    finally:
        serve.stop()
    return {
        "events": events_n, "clients": clients, "accepted": accepted, "stored": stored,
        "statuses": sorted({status for _, _, status in answers}),
        "posting_s": round(posted, 2), "events_per_s_stored": round(stored / posted, 1),
        "latency_ms": {"p50": round(statistics.median(latencies), 1),
                       "p99": round(percentile(latencies, 99), 1),
                       "max": round(max(latencies), 1)} if latencies else {},
        "welcomes_out": count, "all_welcomes_s": round(all_out_s, 1) if all_out_s else None,
        "welcomes_at_5_min": at_target if at_target is not None else count,
        "welcomes_per_s": round(count / waited, 2) if waited else None,
        "waited_s": round(waited, 1), "serve_start_s": round(up, 1),
        "cpu_s": {**cpu, "total": round(sum(cpu.values()), 2)},
        "load_before": load_before, "load_after": load_after}


def report(arms: dict[str, dict]) -> str:
    rows = [("arm", "events", "clients", "stored", "events/s stored", "202 p50 (ms)",
             "202 p99 (ms)", "welcomes at 5 min", "all welcomes after (s)", "welcomes/s",
             "CPU-s (serve tree)", "load before", "load after")]
    for arm, r in arms.items():
        lat = r["latency_ms"]
        rows.append((arm, str(r["events"]), str(r["clients"]), str(r["stored"]),
                     f"{r['events_per_s_stored']:.1f}", f"{lat.get('p50', 0):.1f}",
                     f"{lat.get('p99', 0):.1f}", str(r["welcomes_at_5_min"]),
                     f"{r['all_welcomes_s']:.1f}" if r["all_welcomes_s"]
                     else f"not within {r['waited_s']:.0f}",
                     f"{r['welcomes_per_s']}", f"{r['cpu_s']['serve']:.1f}",
                     " ".join(map(str, r["load_before"])), " ".join(map(str, r["load_after"]))))
    return markdown(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, help="events, one customer each (default 2000, 40 with --quick)")
    parser.add_argument("--clients", type=int, help="concurrent clients (default 16, 4 with --quick)")
    parser.add_argument("--drain-timeout", type=float, default=None,
                        help="seconds from the first post to wait for every welcome (default 900, "
                             "240 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--baseline", type=Path,
                        help="another checkout to measure side by side (first), e.g. a git "
                             "worktree of an older commit")
    args = parser.parse_args(argv)
    events_n = args.events or (40 if args.quick else 2000)
    clients = args.clients or (4 if args.quick else 16)
    drain = args.drain_timeout or (240.0 if args.quick else 900.0)
    if events_n < 1 or clients < 1:
        parser.error("--events and --clients must be at least 1")

    def say(text: str) -> None:
        print(text, flush=True)

    if args.baseline is not None and not (args.baseline / "flows").is_dir():
        parser.error(f"--baseline {args.baseline}: not a checkout of the project (no flows/)")
    codes = {"baseline": args.baseline.resolve()} if args.baseline else {}
    codes["current"] = REPO
    root = Path(tempfile.mkdtemp(prefix="touchpoints-intake-"))
    try:
        arms = {}
        for arm, code in codes.items():
            say(f"--- {arm}: {code}")
            arms[arm] = measure(events_n, clients, drain, root / arm, say, code)
        result = {**arms["current"], "arms": arms, "machine": machine(), "targets": TARGETS,
                  "codes": {arm: str(code) for arm, code in codes.items()}}
        say("")
        say(report(arms))
        say(f"targets: >= {TARGETS['events_per_s_min']} events/s stored, p99 <= "
            f"{TARGETS['p99_ms_max']} ms, every welcome within {TARGETS['all_welcomes_max_s']} s")
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        current = arms["current"]
        return 0 if current["stored"] == events_n and current["welcomes_out"] == events_n else 1
    finally:
        if args.keep:
            say(f"work folder kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
