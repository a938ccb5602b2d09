"""The latency benchmark of an idle `touchpoints serve` (issue 6, point 5):

* **first email**: `contract.signed` posted → the welcome email in the catcher (target p50 ≤ 5 s);
* **matched event**: a journey waits for `install.completed`; the event is posted → the next
  step's email ("Is everything working…") in the catcher (target p50 ≤ 10 s).

    python bench/latency.py                 # 10 samples of each
    python bench/latency.py --samples 3 --json latency.json

`touchpoints serve` runs in a subprocess on embedded defaults in a temporary data folder with
the shipped touchpoints.yaml (see bench/intake.py); samples are taken one after the other, so
the service is idle apart from the sample itself.
"""

from __future__ import annotations

import argparse
import json
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


def examples() -> dict[str, dict]:
    from flows.config import load_config

    config = load_config(REPO / "touchpoints.yaml")
    return {name: dict(spec.example or {}) for name, spec in config.event_types().items()}


def wait_for_mail(mailbox: Path, address: str, subject: str, timeout: float) -> float | None:
    """Poll the catcher's summaries until a message to ``address`` with ``subject`` is there;
    the time it was found (monotonic), or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in mailbox.glob("*.json") if mailbox.is_dir() else []:
            try:
                summary = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if subject in summary.get("subject", "") and address in str(summary.get("to", "")):
                return time.monotonic()
        time.sleep(0.05)
    return None


def post(serve: Serve, event: dict) -> float:
    sent = time.monotonic()
    response = httpx.post(f"{serve.info['web_url']}/api/events", json=event, timeout=60,
                          headers={"Authorization": f"Bearer {serve.info['api_key']}"})
    response.raise_for_status()
    return sent


def measure(samples: int, root: Path, say) -> dict:
    data = examples()
    write_customers(root / "customers.csv", 2 * samples)
    serve = Serve(root)
    serve.cli("customers", "import", str(root / "customers.csv"))
    serve.start()
    mailbox = serve.data / "mailbox"
    first, matched, missed = [], [], []
    try:
        time.sleep(5)  # let the start-up work (date triggers, deployments) settle
        for n in range(1, samples + 1):
            customer, address = f"S-{n:06d}", f"signer{n:06d}@example.com"
            sent = post(serve, {"id": f"lat-signed-{n}", "type": "contract.signed",
                                "customer_id": customer, "data": data["contract.signed"]})
            found = wait_for_mail(mailbox, address, "Welcome to Northwind", 120)
            (first.append(found - sent) if found else missed.append(f"welcome {customer}"))
            say(f"  first email {n}: {found - sent:.2f} s" if found else f"  first email {n}: missed")
        for n in range(samples + 1, 2 * samples + 1):
            customer, address = f"S-{n:06d}", f"signer{n:06d}@example.com"
            job = {**data["install.scheduled"], "job_id": f"JOB-LAT-{n}"}
            post(serve, {"id": f"lat-booked-{n}", "type": "install.scheduled",
                         "customer_id": customer, "data": job})
            if wait_for_mail(mailbox, address, "installation", 120) is None:
                missed.append(f"expectations {customer}")
                continue
            time.sleep(2)  # the journey parks at await_install
            done = {**data["install.completed"], "job_id": f"JOB-LAT-{n}"}
            sent = post(serve, {"id": f"lat-done-{n}", "type": "install.completed",
                                "customer_id": customer, "data": done})
            found = wait_for_mail(mailbox, address, "Is everything working", 120)
            (matched.append(found - sent) if found else missed.append(f"after_visit {customer}"))
            say(f"  matched event {n - samples}: {found - sent:.2f} s" if found
                else f"  matched event {n - samples}: missed")
    finally:
        serve.stop()
    result = {"samples": samples, "load": load(), "machine": machine(), "missed": missed,
              "targets": TARGETS}
    for name, values in (("first_email", first), ("matched_event", matched)):
        if values:
            result[name] = {"p50_s": round(percentile(values, 50), 2),
                            "p90_s": round(percentile(values, 90), 2),
                            "max_s": round(max(values), 2), "n": len(values)}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tp-latency-") as tmp:
        result = measure(args.samples, Path(tmp), print)
    for name, target in (("first_email", "first_email_p50_s"), ("matched_event", "matched_event_p50_s")):
        figures = result.get(name)
        if figures:
            print(f"{name}: p50 {figures['p50_s']} s, p90 {figures['p90_s']} s, max {figures['max_s']} s "
                  f"(n={figures['n']}; target p50 ≤ {TARGETS[target]} s)")
    print(f"load average: {result['load']}; missed: {result['missed'] or 'none'}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 1 if result["missed"] else 0


if __name__ == "__main__":
    sys.exit(main())
