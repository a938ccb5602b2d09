"""Batched steps versus one Prefect task run per recipient, measured side by side.

    python bench/run.py                  # N = 2000 customers in the segment
    python bench/run.py --customers 500
    python bench/run.py --quick          # N = 200, a smoke run for CI
    python bench/run.py --json out.json  # also write the numbers as JSON

One process, one real Prefect test server (``prefect_test_harness``), and per arm a fresh
SQLite store and a fresh local SMTP server (aiosmtpd) that counts what it accepts. Both arms run
the same touch point (bench/touchpoints.yaml: an outage notice emailed to every customer of the
affected region) through the real dispatcher, compiler, delivery ledger and SMTP client:

* ``batched``        the engine as built: TOUCHPOINTS_BATCH_SIZE=500 (the default);
* ``per-recipient``  the same engine with TOUCHPOINTS_BATCH_SIZE=1: one task run per recipient.

See bench/README.md for why that baseline, and for the results on the reference machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import shutil
import socket
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Self

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CONFIG = HERE / "touchpoints.yaml"
REGION = "north"
WARMUP_REGION = "warmup"
WARMUP_CUSTOMERS = 3
DEFAULT_CUSTOMERS = 2000
QUICK_CUSTOMERS = 200
ARMS = (("batched", 500), ("per-recipient", 1))


# --------------------------------------------------------------------------- SMTP server
class CountingSmtp:
    """A real SMTP server on 127.0.0.1 (aiosmtpd) that counts the messages it accepts."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self._lock = threading.Lock()
        self.messages = 0
        self.recipients: list[str] = []
        self._connections: set[int] = set()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port,
                                     server_hostname="bench-smtp")

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        return len(self._connections)

    def reset(self) -> None:
        with self._lock:
            self.messages, self.recipients = 0, []
            self._connections.clear()

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        with self._lock:
            self._connections.add(id(server))
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if not (envelope.original_content or envelope.content):
            return "554 5.6.0 empty message"
        with self._lock:
            self.messages += 1
            self.recipients.extend(envelope.rcpt_tos)
        return "250 2.0.0 Message accepted"

    def __enter__(self) -> Self:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop(no_assert=True)


# --------------------------------------------------------------------------- customers
def customer_email(n: int) -> str:
    return f"customer{n:05d}@example.com"


def write_customers(path: Path, count: int) -> None:
    """``count`` customers in the benchmark region, plus a few in a warm-up region."""
    columns = ["id", "name", "email", "timezone", "region", "plan", "contract_start", "contract_end"]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for n in range(1, count + 1):
            writer.writerow([f"B-{n:05d}", f"Customer {n:05d}", customer_email(n), "Europe/London",
                             REGION, "Fibre 500", "2025-01-10", "2027-01-09"])
        for n in range(1, WARMUP_CUSTOMERS + 1):
            writer.writerow([f"W-{n:05d}", f"Warm {n}", f"warm{n}@example.com", "Europe/London",
                             WARMUP_REGION, "Fibre 500", "2025-01-10", "2027-01-09"])


# --------------------------------------------------------------------------- Prefect API
def _api(path: str, body: dict) -> object:
    import httpx
    from prefect.settings import PREFECT_API_URL

    response = httpx.post(f"{PREFECT_API_URL.value().rstrip('/')}{path}", json=body, timeout=60)
    response.raise_for_status()
    return response.json()


def _task_filter(flow_run_id: str, state_type: str | None = None) -> dict:
    body: dict = {"flow_runs": {"id": {"any_": [flow_run_id]}}}
    if state_type:
        body["task_runs"] = {"state": {"type": {"any_": [state_type]}}}
    return body


def count_task_runs(flow_run_id: str, state_type: str | None = None) -> int:
    return int(_api("/task_runs/count", _task_filter(flow_run_id, state_type)))


def wait_for_task_runs(flow_run_id: str, *, settle: float = 3.0, timeout: float = 600.0) -> tuple[int, float]:
    """Prefect records task runs from events, after the fact: wait until the server holds them
    all (every one in a final state, and the count steady for ``settle`` seconds). Returns the
    count and how long the wait took."""
    started = time.perf_counter()
    last, steady_since = -1, time.perf_counter()
    while time.perf_counter() - started < timeout:
        total = count_task_runs(flow_run_id)
        completed = count_task_runs(flow_run_id, "COMPLETED")
        now = time.perf_counter()
        if total != last:
            last, steady_since = total, now
        elif total and completed == total and now - steady_since >= settle:
            return total, now - started - settle
        time.sleep(0.5)
    raise RuntimeError(f"the Prefect server still had not recorded every task run of "
                       f"{flow_run_id} after {timeout:.0f}s (last count {last})")


def read_task_runs(flow_run_id: str) -> list[dict]:
    runs: list[dict] = []
    while True:
        page = _api("/task_runs/filter", {**_task_filter(flow_run_id), "limit": 200,
                                          "offset": len(runs), "sort": "EXPECTED_START_TIME_ASC"})
        runs += page
        if len(page) < 200:
            return runs


def read_flow_run(flow_run_id: str) -> dict:
    import httpx
    from prefect.settings import PREFECT_API_URL

    response = httpx.get(f"{PREFECT_API_URL.value().rstrip('/')}/flow_runs/{flow_run_id}", timeout=60)
    response.raise_for_status()
    return response.json()


def _seconds(run: dict) -> float:
    from datetime import datetime

    if not run.get("start_time") or not run.get("end_time"):
        return 0.0
    start = datetime.fromisoformat(run["start_time"])
    end = datetime.fromisoformat(run["end_time"])
    return (end - start).total_seconds()


# --------------------------------------------------------------------------- one arm
@dataclass
class ArmResult:
    arm: str
    batch_size: int
    customers: int
    wall_seconds: float
    task_runs: int
    step_task_runs: int
    emails_delivered: int
    emails_per_second: float
    smtp_connections: int
    ledger_sent: int
    flow_state: str
    server_catch_up_seconds: float
    enter_seconds: float
    step_seconds: float
    task_names: dict[str, int] = field(default_factory=dict)


def run_arm(name: str, batch_size: int, *, customers: int, workdir: Path, customers_csv: Path,
            say) -> ArmResult:
    from sqlalchemy import func, select

    from flows.engine.compiler import forget_compiled
    from flows.engine.core import Engine, set_engine
    from flows.engine.dispatch import Dispatcher
    from flows.engine.launch import InProcessLauncher
    from flows.settings import get_settings, reset_settings
    from flows.store.customers import import_customers
    from flows.store.db import Store
    from flows.store.tables import Delivery, Journey

    folder = workdir / name
    folder.mkdir(parents=True)
    store = Store(f"sqlite:///{folder / 'touchpoints.db'}")
    store.migrate()
    report = import_customers(store, customers_csv, actor="bench")
    if not report.ok:
        raise RuntimeError(f"importing the bench customers failed: {report.summary()}")
    with CountingSmtp() as smtp:
        os.environ.update({
            "TOUCHPOINTS_DATA_DIR": str(folder / "data"),
            "TOUCHPOINTS_CONFIG_FILE": str(CONFIG),
            "TOUCHPOINTS_DATABASE_URL": store.url,
            "TOUCHPOINTS_SMTP_URL": smtp.url,
            "TOUCHPOINTS_BATCH_SIZE": str(batch_size),
        })
        reset_settings()
        engine = Engine(get_settings(), store=store)
        set_engine(engine)
        forget_compiled()  # the compiled flow keeps the batch size it was compiled with
        try:
            dispatcher = Dispatcher(engine, InProcessLauncher())
            data = dict(engine.config.event_types()["outage.declared"].example or {})

            # warm-up: compile the flow, open the Prefect client, touch every code path once
            dispatcher.emit(type="outage.declared", data={**data, "outage_id": f"WARM-{name}",
                                                          "regions": [WARMUP_REGION]},
                            source="bench", actor="bench")
            if smtp.messages != WARMUP_CUSTOMERS:
                raise RuntimeError(f"{name}: the warm-up delivered {smtp.messages} emails, "
                                   f"not {WARMUP_CUSTOMERS}")
            smtp.reset()

            say(f"{name}: outage for {customers} customers, one task run per "
                f"{batch_size} recipient{'s' if batch_size > 1 else ''}…")
            started = time.perf_counter()
            result = dispatcher.emit(type="outage.declared",
                                     data={**data, "outage_id": f"BENCH-{name}", "regions": [REGION]},
                                     source="bench", actor="bench")
            wall = time.perf_counter() - started
            delivered = smtp.messages
            expected = {customer_email(n) for n in range(1, customers + 1)}
            if delivered != customers or set(smtp.recipients) != expected or \
                    len(smtp.recipients) != customers:
                raise RuntimeError(f"{name}: the SMTP server accepted {delivered} emails for "
                                   f"{len(set(smtp.recipients))} distinct recipients, "
                                   f"expected one each for {customers}")
            journey_id = result.started[0]["journey_id"]
            with store.session() as session:
                flow_run_id = session.get(Journey, journey_id).flow_run_id
                ledger_sent = session.scalar(select(func.count()).select_from(Delivery).where(
                    Delivery.journey_id == journey_id, Delivery.status == "sent"))
            say(f"{name}: {delivered} emails in {wall:.1f}s; waiting for the Prefect server to "
                "record every task run…")
            task_runs, catch_up = wait_for_task_runs(flow_run_id)
            runs = read_task_runs(flow_run_id)
            names: dict[str, int] = {}
            for run in runs:
                base = run["name"].split(" #")[0]  # step task runs are named "<step> #<batch>"
                names[base] = names.get(base, 0) + 1
            step_runs = [r for r in runs if r["name"].split(" #")[0] == "outage_acknowledged"]
            enter_runs = [r for r in runs if r["name"] == "enter"]
            return ArmResult(
                arm=name, batch_size=batch_size, customers=customers, wall_seconds=round(wall, 2),
                task_runs=task_runs, step_task_runs=len(step_runs), emails_delivered=delivered,
                emails_per_second=round(delivered / wall, 1), smtp_connections=smtp.connections,
                ledger_sent=ledger_sent, flow_state=read_flow_run(flow_run_id)["state_name"],
                server_catch_up_seconds=round(catch_up, 1),
                enter_seconds=round(sum(_seconds(r) for r in enter_runs), 2),
                step_seconds=round(sum(_seconds(r) for r in step_runs), 2), task_names=names)
        finally:
            set_engine(None)
            forget_compiled()
            reset_settings()
            store.dispose()


# --------------------------------------------------------------------------- report
def machine() -> dict[str, str]:
    from importlib.metadata import version

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": str(os.cpu_count()), "cpu": cpu, "os": platform.platform(terse=True),
            "python": platform.python_version(), "prefect": version("prefect"),
            "sqlalchemy": version("sqlalchemy"), "aiosmtpd": version("aiosmtpd")}


def table(results: list[ArmResult]) -> str:
    rows = [("arm", "batch size", "customers (N)", "wall time (s)", "task runs created",
             "… of them for the email step", "emails delivered", "emails/s", "SMTP connections")]
    for r in results:
        rows.append((r.arm, str(r.batch_size), str(r.customers), f"{r.wall_seconds:.1f}",
                     str(r.task_runs), str(r.step_task_runs), str(r.emails_delivered),
                     f"{r.emails_per_second:.1f}", str(r.smtp_connections)))
    return _markdown(rows)


def breakdown(results: list[ArmResult]) -> str:
    rows = [("arm", "enter task (s)", "email step task runs, summed (s)",
             "Prefect server caught up after the run (s)", "ledger rows 'sent'", "flow run")]
    for r in results:
        rows.append((r.arm, f"{r.enter_seconds:.1f}", f"{r.step_seconds:.1f}",
                     f"{r.server_catch_up_seconds:.1f}", str(r.ledger_sent), r.flow_state))
    return _markdown(rows)


def _markdown(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) + " |"
             for row in rows]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main
def _prepare_environment(workdir: Path) -> None:
    """Before Prefect is imported: its home in the work folder, quiet logs, no analytics."""
    os.environ["PREFECT_HOME"] = str(workdir / "prefect-home")
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.pop("PREFECT_API_URL", None)  # the test server below, never a real one
    os.environ.pop("TOUCHPOINTS_CLOCK", None)  # real time
    os.environ["TOUCHPOINTS_SECRET_KEY"] = "bench-secret-key-not-for-production"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=None,
                        help=f"customers in the segment, N (default {DEFAULT_CUSTOMERS}; "
                             f"{QUICK_CUSTOMERS} with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run: N={QUICK_CUSTOMERS} unless --customers says otherwise")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (stores, logs)")
    args = parser.parse_args(argv)
    customers = args.customers or (QUICK_CUSTOMERS if args.quick else DEFAULT_CUSTOMERS)
    if customers < 1:
        parser.error("--customers must be at least 1")

    def say(text: str) -> None:
        print(text, flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="touchpoints-bench-"))
    _prepare_environment(workdir)
    sys.path.insert(0, str(REPO))
    try:
        customers_csv = workdir / "customers.csv"
        write_customers(customers_csv, customers)
        say("starting a Prefect test server (the first start migrates its database)…")
        from prefect.testing.utilities import prefect_test_harness

        started = time.perf_counter()
        with prefect_test_harness(server_startup_timeout=180):
            say(f"Prefect test server up in {time.perf_counter() - started:.0f}s")
            results = [run_arm(name, size, customers=customers, workdir=workdir,
                               customers_csv=customers_csv, say=say) for name, size in ARMS]
        batched, baseline = results
        assert batched.emails_delivered == baseline.emails_delivered == customers, \
            (batched.emails_delivered, baseline.emails_delivered, customers)
        info = machine()
        say("")
        say(f"N = {customers} customers in the segment, one email each, "
            f"`{Path(sys.argv[0]).name}` on {info['nproc']} cores")
        say("")
        say(table(results))
        say("")
        say(breakdown(results))
        say("")
        say("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
        speedup = baseline.wall_seconds / batched.wall_seconds if batched.wall_seconds else math.inf
        say(f"batched is {speedup:.1f}× faster end to end, with "
            f"{baseline.task_runs / batched.task_runs:.0f}× fewer task runs")
        if args.json:
            args.json.write_text(json.dumps({"customers": customers, "machine": info,
                                             "speedup": round(speedup, 2),
                                             "arms": [asdict(r) for r in results]}, indent=2))
        return 0
    finally:
        if args.keep:
            say(f"work folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
