"""The latency benchmark of an idle `touchpoints serve` (issue 6, point 5):

* **first email**: `contract.signed` posted → the welcome email in the catcher (target p50 ≤ 5 s);
* **matched event**: a journey waits for `install.completed`; the event is posted → the next
  step's email ("Is everything working…") in the catcher (target p50 ≤ 10 s).

    python bench/latency.py                 # 10 samples of each
    python bench/latency.py --samples 3 --json latency.json
    python bench/latency.py --against /tmp/old-checkout   # the same samples, interleaved, on both
    TOUCHPOINTS_WARM_RUNS=0 python bench/latency.py      # flow runs as fresh processes

`touchpoints serve` runs in a subprocess on embedded defaults in a temporary data folder with
the shipped touchpoints.yaml (see bench/intake.py); samples are taken one after the other, so
the service is idle apart from the sample itself. With ``--against``, a second serve runs the
code of that checkout (its own data folder, ports and Prefect server) and the samples alternate
between the two, so both see the same load on a shared machine.

Each sample is also split into stages, from the flow run's state history in Prefect:
accepted (the POST) → **run created** (the outbox's dispatch loop called Prefect) → **Pending**
(the runner picked it up) → **Running** (its process started and loaded the flow) → **email**
(in the catcher).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from bench.intake import Serve, percentile, write_customers
from bench.measure import load, machine

TARGETS = {"first_email_p50_s": 5.0, "matched_event_p50_s": 10.0}
STAGES = ("to_created_s", "to_pending_s", "to_running_s", "to_email_s")


def examples() -> dict[str, dict]:
    from flows.config import load_config

    config = load_config(REPO / "touchpoints.yaml")
    return {name: dict(spec.example or {}) for name, spec in config.event_types().items()}


def wait_for_mail(mailbox: Path, address: str, subject: str, timeout: float) -> float | None:
    """Poll the catcher's summaries until a message to ``address`` with ``subject`` is there;
    the time it was found (wall clock), or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in mailbox.glob("*.json") if mailbox.is_dir() else []:
            try:
                summary = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if subject in summary.get("subject", "") and address in str(summary.get("to", "")):
                return time.time()
        time.sleep(0.05)
    return None


def post(serve: Serve, event: dict) -> float:
    sent = time.time()
    response = httpx.post(f"{serve.info['web_url']}/api/events", json=event, timeout=60,
                          headers={"Authorization": f"Bearer {serve.info['api_key']}"})
    response.raise_for_status()
    return sent


class Arm:
    """One `touchpoints serve` running the code of one checkout, and its samples."""

    def __init__(self, name: str, repo: Path, root: Path, samples: int) -> None:
        self.name, self.repo = name, repo
        root.mkdir(parents=True, exist_ok=True)
        write_customers(root / "customers.csv", 2 * samples)
        self.serve = Serve(root)
        self.serve.env["PYTHONPATH"] = str(repo)  # serve, its CLI and its runs import that copy
        self.serve.env["TOUCHPOINTS_CONFIG_FILE"] = str(repo / "touchpoints.yaml")
        if "TOUCHPOINTS_WARM_RUNS" in os.environ:  # Serve passes no TOUCHPOINTS_* of ours on
            self.serve.env["TOUCHPOINTS_WARM_RUNS"] = os.environ["TOUCHPOINTS_WARM_RUNS"]
        self.serve.cli("customers", "import", str(root / "customers.csv"))
        self.mailbox = self.serve.data / "mailbox"
        self.samples: dict[str, list[dict]] = {"first_email": [], "matched_event": []}
        self.missed: list[str] = []

    def first_email(self, n: int, data: dict, say) -> None:
        customer, address = f"S-{n:06d}", f"signer{n:06d}@example.com"
        sent = post(self.serve, {"id": f"lat-signed-{n}", "type": "contract.signed",
                                 "customer_id": customer, "data": data["contract.signed"]})
        found = wait_for_mail(self.mailbox, address, "Welcome to Northwind", 120)
        self._record("first_email", n, customer, sent, found, say)

    def matched_event(self, n: int, samples: int, data: dict, say) -> None:
        customer, address = f"S-{n:06d}", f"signer{n:06d}@example.com"
        job = {**data["install.scheduled"], "job_id": f"JOB-LAT-{n}"}
        post(self.serve, {"id": f"lat-booked-{n}", "type": "install.scheduled",
                          "customer_id": customer, "data": job})
        if wait_for_mail(self.mailbox, address, "installation", 120) is None:
            self.missed.append(f"expectations {customer}")
            return
        time.sleep(2)  # the journey parks at await_install
        done = {**data["install.completed"], "job_id": f"JOB-LAT-{n}"}
        sent = post(self.serve, {"id": f"lat-done-{n}", "type": "install.completed",
                                 "customer_id": customer, "data": done})
        found = wait_for_mail(self.mailbox, address, "Is everything working", 120)
        self._record("matched_event", n - samples, customer, sent, found, say)

    def _record(self, kind: str, n: int, customer: str, sent: float, found: float | None,
                say) -> None:
        label = kind.replace("_", " ")
        if found is None:
            self.missed.append(f"{kind} {customer}")
            say(f"  [{self.name}] {label} {n}: missed")
            return
        self.samples[kind].append({"customer": customer, "sent": sent, "found": found,
                                   "total_s": found - sent})
        say(f"  [{self.name}] {label} {n}: {found - sent:.2f} s")

    def add_stages(self) -> None:
        """Split every sample by its flow run's state history (read from serve's Prefect)."""
        try:
            asyncio.run(self._read_stages(self.serve.info["prefect_url"].rstrip("/") + "/api"))
        except Exception as exc:  # noqa: BLE001  (the stages explain; the totals stand alone)
            print(f"  [{self.name}] could not read the runs' states: {exc}")

    async def _read_stages(self, api: str) -> None:
        from prefect.client.orchestration import PrefectClient
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

        async with PrefectClient(api) as client:
            for sample in (s for kind in self.samples.values() for s in kind):
                runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
                    tags=FlowRunFilterTags(all_=[f"customer:{sample['customer']}"])))
                split = []
                for run in runs:  # the run that went Pending after the post
                    stages = _stages(run, await client.read_flow_run_states(run.id), sample)
                    if stages:
                        split.append(stages)
                if split:
                    sample.update(min(split, key=lambda stages: stages["to_created_s"]))

    def figures(self) -> dict:
        result: dict = {"missed": self.missed, "repo": str(self.repo)}
        for kind, samples in self.samples.items():
            totals = [s["total_s"] for s in samples]
            if not totals:
                continue
            result[kind] = {"p50_s": round(percentile(totals, 50), 2),
                            "p90_s": round(percentile(totals, 90), 2),
                            "max_s": round(max(totals), 2), "n": len(totals),
                            "stages_p50_s": {},
                            "stages_n": sum("to_running_s" in s for s in samples)}
            for stage in STAGES:
                values = [s[stage] for s in samples if stage in s]
                if values:
                    result[kind]["stages_p50_s"][stage] = round(percentile(values, 50), 2)
            result[kind]["samples"] = [{k: round(v, 3) if isinstance(v, float) else v
                                        for k, v in s.items()} for s in samples]
        return result


def _stages(run, states, sample: dict) -> dict | None:
    """The stages of ``run`` after the post: None unless it went Pending and Running after it.
    A run created before the post (a waiting journey's scheduled run that the event moved to
    now) counts from its first state after the post."""
    since = sample["sent"] - 0.5
    after = sorted((s.timestamp.timestamp(), s.type.value.lower()) for s in states
                   if s.timestamp.timestamp() >= since)
    pending = next((t for t, kind in after if kind == "pending"), None)
    running = next((t for t, kind in after if kind == "running" and pending and t >= pending), None)
    if pending is None or running is None or running > sample["found"]:
        return None
    created = run.created.timestamp()
    if created < since:
        created = after[0][0]
    return {"to_created_s": created - sample["sent"], "to_pending_s": pending - created,
            "to_running_s": running - pending, "to_email_s": sample["found"] - running}


def measure(samples: int, root: Path, say, against: Path | None = None) -> dict:
    data = examples()
    arms = [Arm("this", REPO, root / "this", samples)]
    if against is not None:
        arms.append(Arm(against.name, against.resolve(), root / "against", samples))
    load_at_start = load()
    try:
        for arm in arms:
            arm.serve.start()
        time.sleep(5)  # let the start-up work (date triggers, deployments) settle
        for n in range(1, samples + 1):
            for arm in arms:
                arm.first_email(n, data, say)
        for n in range(samples + 1, 2 * samples + 1):
            for arm in arms:
                arm.matched_event(n, samples, data, say)
        for arm in arms:
            arm.add_stages()
    finally:
        for arm in arms:
            arm.serve.stop()
    result = {"samples": samples, "load_at_start": load_at_start, "load": load(),
              "machine": machine(), "targets": TARGETS,
              "warm_runs": os.environ.get("TOUCHPOINTS_WARM_RUNS", "1"),
              "arms": {arm.name: arm.figures() for arm in arms}}
    this = result["arms"]["this"]  # the figures of this checkout, where they always were
    result.update({k: v for k, v in this.items() if k in ("first_email", "matched_event")})
    result["missed"] = [f"{arm}: {m}" for arm, figures in result["arms"].items()
                        for m in figures["missed"]]
    return result


def report(result: dict) -> None:
    for arm, figures in result["arms"].items():
        for name, target in (("first_email", "first_email_p50_s"),
                             ("matched_event", "matched_event_p50_s")):
            f = figures.get(name)
            if not f:
                continue
            stages = ", ".join(f"{k.removeprefix('to_').removesuffix('_s')} {v} s"
                               for k, v in f["stages_p50_s"].items())
            print(f"[{arm}] {name}: p50 {f['p50_s']} s, p90 {f['p90_s']} s, max {f['max_s']} s "
                  f"(n={f['n']}; target p50 ≤ {TARGETS[target]} s); stage p50s "
                  f"(n={f['stages_n']}): {stages or 'n/a'}")
    print(f"load average: {result['load_at_start']} → {result['load']}; "
          f"missed: {result['missed'] or 'none'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--against", type=Path,
                        help="another checkout (e.g. a git worktree of an older commit) to "
                             "measure in the same run, samples interleaved")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tp-latency-") as tmp:
        result = measure(args.samples, Path(tmp), print, against=args.against)
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 1 if result["missed"] else 0


if __name__ == "__main__":
    sys.exit(main())
