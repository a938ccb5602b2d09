"""One arm of bench/run.py, in a process of its own (so its CPU time and peak RSS are its own).

    python bench/arms.py {floor,naive,engine} --customers-csv F --smtp-port P --workdir D

The parent (bench/run.py) sets PREFECT_API_URL and the TOUCHPOINTS_* variables. The worker
prepares (imports, store, warm-up: nothing of that is measured), says ``ready``, waits for
``go`` on stdin, runs the arm, says ``done`` with its own timings, and exits on ``exit``.
Its protocol lines start with ``@@bench `` on stdout; anything else there is ignored.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

CONFIG = REPO / "touchpoints.yaml"
REGION = "north"
WARMUP_REGION = "warmup"
WARMUP_CUSTOMERS = 3
ARM_NAMES = ("floor", "naive", "engine")


def say(kind: str, **data) -> None:
    print("@@bench " + json.dumps({"kind": kind, **data}, default=str), flush=True)


def wait_for(command: str) -> None:
    for line in sys.stdin:
        if line.strip() == command:
            return
        if line.strip() == "exit":
            raise SystemExit(0)
    raise SystemExit(f"the benchmark went away before sending {command!r}")


def reset_peak_rss() -> None:
    """Linux: forget the high-water mark of the resident set (VmHWM), so the peak we report is
    the run's, not the preparation's."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def outage_event(outage_id: str, region: str) -> dict:
    from flows.config import load_config_fast

    example = dict(load_config_fast(CONFIG).event_types()["outage.declared"].example or {})
    return {"id": f"bench-{outage_id}", "type": "outage.declared", "customer_id": None,
            "occurred_at": datetime.now(UTC).isoformat(),
            "data": {**example, "outage_id": outage_id, "regions": [region]}}


# --------------------------------------------------------------------------- the arms
class Floor:
    def __init__(self, args) -> None:
        from bench.plain import AuditLog, Postman, read_customers

        self.args = args
        self.log = AuditLog(args.workdir / "floor-audit.db", b"bench audit key")
        self.postman = Postman(CONFIG, outage_event(args.tag, REGION))
        warm = Postman(CONFIG, outage_event(f"WARM-{args.tag}", WARMUP_REGION))
        self._send(read_customers(args.customers_csv, WARMUP_REGION), warm)
        self.read = read_customers

    def _send(self, customers, postman) -> int:
        from bench.plain import floor

        return floor(customers, postman, self.log, self.args.smtp_port)

    def run(self) -> dict:
        sent = self._send(self.read(self.args.customers_csv, REGION), self.postman)
        return {"sent": sent}

    def check(self) -> dict:
        return {"audit_rows": self.log.count() - WARMUP_CUSTOMERS, "audit_chain_ok": self.log.verify()}


class Naive(Floor):
    def __init__(self, args) -> None:
        from bench.plain import AuditLog, Postman, naive_flow

        self.args = args
        self.log = AuditLog(args.workdir / "naive-audit.db", b"bench audit key")
        self.flow = naive_flow(Postman(CONFIG, outage_event(args.tag, REGION)), self.log,
                               args.smtp_port)
        self.flow(customers_csv=str(args.customers_csv), region=WARMUP_REGION)  # registers it

    def run(self) -> dict:
        return {"sent": self.flow(customers_csv=str(self.args.customers_csv), region=REGION)}


class EngineArm:
    """The shipped outage touch point through the real dispatcher, as `touchpoints emit` runs
    it in-process: the event is stored, its unit queued and launched, the flow compiled from
    touchpoints.yaml runs against the Prefect server, and the call returns when it finished."""

    def __init__(self, args) -> None:
        from flows.engine.core import current_engine
        from flows.engine.dispatch import Dispatcher
        from flows.engine.launch import InProcessLauncher
        from flows.store.customers import import_customers

        self.args = args
        self.engine = current_engine()
        report = import_customers(self.engine.store, args.customers_csv, actor="bench")
        if not report.ok:
            raise SystemExit(f"importing the customers failed: {report.summary()}")
        self.dispatcher = Dispatcher(self.engine, InProcessLauncher())
        warm = outage_event(f"WARM-{args.tag}", WARMUP_REGION)
        self.dispatcher.emit(type=warm["type"], data=warm["data"], event_id=warm["id"],
                             source="bench", actor="bench")
        self.event = outage_event(args.tag, REGION)

    def run(self) -> dict:
        result = self.dispatcher.emit(type=self.event["type"], data=self.event["data"],
                                      event_id=self.event["id"], source="bench", actor="bench")
        self.journey_id = result.started[0]["journey_id"] if result.started else None
        return {"started": [s["touchpoint"] for s in result.started]}

    def check(self) -> dict:
        from sqlalchemy import func, select

        from flows.store.tables import Delivery, Journey, Member

        with self.engine.store.session() as session:
            journey = session.get(Journey, self.journey_id) if self.journey_id else None
            sent = session.scalar(select(func.count()).select_from(Delivery).where(
                Delivery.journey_id == self.journey_id, Delivery.status == "sent"))
            members = dict(session.execute(select(Member.status, func.count()).where(
                Member.journey_id == self.journey_id).group_by(Member.status)).all())
        flow_run_id = journey.flow_run_id if journey else None
        return {"ledger_sent": sent, "members": members, "flow_run_id": flow_run_id,
                "task_runs": task_run_seconds(flow_run_id) if flow_run_id else {}}


def task_run_seconds(flow_run_id: str) -> dict[str, dict]:
    """Per task name (a step's batches are "<step> #<n>"): how many task runs the Prefect
    server recorded for the flow run, and their summed run time."""
    import uuid

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    out: dict[str, dict] = {}
    with get_client(sync_client=True) as client:
        offset = 0
        while True:
            page = client.read_task_runs(flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[uuid.UUID(flow_run_id)])), limit=200, offset=offset)
            for run in page:
                name = run.name.split(" #")[0]
                entry = out.setdefault(name, {"runs": 0, "seconds": 0.0})
                entry["runs"] += 1
                entry["seconds"] = round(entry["seconds"] + (run.total_run_time.total_seconds()
                                                             if run.total_run_time else 0.0), 2)
            if len(page) < 200:
                return out
            offset += 200


ARMS = {"floor": Floor, "naive": Naive, "engine": EngineArm}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one arm of bench/run.py")
    parser.add_argument("arm", choices=ARM_NAMES)
    parser.add_argument("--customers-csv", type=Path, required=True)
    parser.add_argument("--smtp-port", type=int, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--tag", required=True, help="outage id of this run")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    arm = ARMS[args.arm](args)
    say("ready", prepare_s=round(time.perf_counter() - started, 2))
    wait_for("go")
    reset_peak_rss()
    t0 = time.time()
    outcome = arm.run()
    t_end = time.time()
    say("done", t0=t0, t_end=t_end, peak_rss_mb=peak_rss_mb(), **outcome)
    wait_for("check")  # after the parent took its CPU readings
    say("checked", **arm.check())
    wait_for("exit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
