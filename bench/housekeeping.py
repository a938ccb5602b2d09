"""Housekeeping tick time: the date and inactivity triggers of the shipped touch points
(`renewal`: 90d before contract_end at 09:00 local; `check-in`: inactivity 30d) over N
customers in a fresh SQLite store, after the service was down for ``--down`` minutes (what
fell due before that has fired; what fell due since fires on the first tick).

    python bench/housekeeping.py                       # N = 100,000, this checkout
    python bench/housekeeping.py --code /tmp/before    # the same against another checkout
    python bench/housekeeping.py --customers 2000 --ticks 3 --json out.json

It times, with the code found under ``--code``:

* ``first``: the first tick after start (the catch-up);
* ``tick``: the following ticks, 5 s of journey time apart (median and max), as the service's
  slow loop runs them (``Housekeeper.triggers`` minus its unrelated parts);
* ``rescan``: a full scan again (the hourly one; only where the code has one);

wall-clock and CPU seconds (this process; SQLite runs in it).

It prints how many triggers fired and a digest of their event ids, which must be the same for
two checkouts on the same ``--customers`` and ``--seed``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ZONES = ["Europe/London", "Europe/Berlin", "America/New_York", "America/Los_Angeles",
         "Asia/Tokyo", "Australia/Sydney", "Asia/Kolkata", "UTC"]


def customers(n: int, seed: int) -> list[dict]:
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        end = (NOW + timedelta(days=rnd.uniform(-365, 730))).date()
        created = NOW - timedelta(days=rnd.uniform(30, 400))
        contact = NOW - timedelta(days=rnd.uniform(0, 120)) if rnd.random() < 0.8 else None
        rows.append({"id": f"C-{i:06d}", "name": f"Customer {i}", "email": f"c{i}@example.com",
                     "timezone": rnd.choice(ZONES), "region": "north", "plan": "Fibre 500",
                     "contract_start": end - timedelta(days=730), "contract_end": end,
                     "attributes": {}, "last_contact_at": contact, "created_at": created,
                     "updated_at": created})
    return rows


def fired_before(rows: list[dict], config, then: datetime) -> list[dict]:
    """The trigger events a service running until ``then`` has stored already."""
    from zoneinfo import ZoneInfo

    done = []
    for tp in config.touchpoints.values():
        if not tp.enabled or tp.trigger.kind not in ("date", "inactivity"):
            continue
        for row in rows:
            if tp.trigger.kind == "date":
                rel, anchor = tp.trigger.date, row[tp.trigger.date.field]
                when = rel.resolve(anchor, tp.trigger.at, ZoneInfo(row["timezone"]))
                if not then - timedelta(days=7) <= when <= then:
                    continue
                event_id = f"date:{tp.name}:{row['id']}:{anchor.isoformat()}"
            else:
                last = row["last_contact_at"] or row["created_at"]
                if last > then - tp.trigger.inactivity:
                    continue
                event_id = f"inactivity:{tp.name}:{row['id']}:{last.date().isoformat()}"
            done.append({"id": event_id, "type": f"{tp.trigger.kind}.trigger",
                         "customer_id": row["id"], "data": {}, "occurred_at": then,
                         "received_at": then, "source": "scheduler", "status": "dispatched",
                         "dispatched_at": then, "result": {"started": [tp.name]}})
    return done


class Launcher:
    def start(self, *args, **kwargs):
        return {}

    def resume(self, *args, **kwargs):
        return {}

    def run_states(self, flow_run_ids):
        return {}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--ticks", type=int, default=10, help="ticks after the first (default 10)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--down", type=float, default=120, help="minutes of downtime (120)")
    parser.add_argument("--code", type=Path, default=HERE, help="the checkout to measure")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    code = args.code.resolve()
    sys.path.insert(0, str(code))
    os.environ.setdefault("TOUCHPOINTS_SECRET_KEY", "bench")

    from sqlalchemy import insert, select

    from flows.config import load_config
    from flows.engine.core import Engine
    from flows.service.housekeeping import Housekeeper
    from flows.settings import Settings
    from flows.store.db import Store
    from flows.store.tables import Customer, Event

    work = Path(tempfile.mkdtemp(prefix="bench-housekeeping-"))
    store = Store(f"sqlite:///{work / 'touchpoints.db'}")
    store.migrate()
    config = load_config(code / "touchpoints.yaml")
    rows = customers(args.customers, args.seed)
    started = time.perf_counter()
    with store.session() as session:
        for table, values in ((Customer, rows), (Event, fired_before(rows, config, NOW - timedelta(minutes=args.down)))):
            for i in range(0, len(values), 5000):
                session.execute(insert(table), values[i:i + 5000])
    loaded = time.perf_counter() - started
    with store.session() as session:
        seeded = set(session.scalars(select(Event.id)))

    settings = Settings(data_dir=work / "data", config_file=code / "touchpoints.yaml",
                        secret_key="bench")
    keeper = Housekeeper(Engine(settings, config=config, store=store), Launcher())
    scanner = getattr(keeper, "scanner", None)

    def tick(now: datetime) -> tuple[float, int]:
        begun, cpu = time.perf_counter(), time.process_time()
        if scanner is not None:  # what Housekeeper.triggers runs for these triggers
            fired = scanner.dates(now) + scanner.inactivity(now)
        else:
            fired = keeper.date_triggers(now) + keeper.inactivity_triggers(now)
        cpus.append(time.process_time() - cpu)
        return time.perf_counter() - begun, fired

    cpus: list[float] = []
    first, fired = tick(NOW)
    times = []
    for i in range(1, args.ticks + 1):
        seconds, more = tick(NOW + timedelta(seconds=5 * i))
        times.append(seconds)
        fired += more
    rescan = rescan_cpu = None
    if scanner is not None:
        at = NOW + timedelta(seconds=5 * args.ticks + 5)
        begun, cpu = time.perf_counter(), time.process_time()
        fired += scanner.dates(at, full=True) + scanner.inactivity(at, full=True)
        rescan, rescan_cpu = time.perf_counter() - begun, time.process_time() - cpu
    with store.session() as session:
        new = sorted(set(session.scalars(select(Event.id))) - seeded)
    store.dispose()

    result = {"code": str(code), "customers": args.customers, "ticks": args.ticks,
              "seeded_events": len(seeded), "load_s": round(loaded, 2),
              "first_tick_s": round(first, 4),
              "tick_median_s": round(statistics.median(times), 4) if times else None,
              "tick_max_s": round(max(times), 4) if times else None,
              "first_tick_cpu_s": round(cpus[0], 4),
              "tick_cpu_median_s": round(statistics.median(cpus[1:]), 4) if times else None,
              "rescan_s": round(rescan, 4) if rescan is not None else None,
              "rescan_cpu_s": round(rescan_cpu, 4) if rescan is not None else None,
              "fired": fired, "fired_digest": hashlib.sha256("\n".join(new).encode()).hexdigest()[:16],
              "load_average": os.getloadavg()}
    print("| figure | value |\n| --- | --- |")
    for key, value in result.items():
        print(f"| {key} | {value} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
