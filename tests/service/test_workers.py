"""Several instances of `touchpoints serve` share one PostgreSQL store and one Prefect server
(itself on PostgreSQL, with Redis messaging): one instance runs the intake and housekeeping,
two run Prefect process workers on the work pool. The worker running a fan-out is killed with
SIGKILL in the middle; its lease expires, housekeeping re-drives the unit, the other worker
finishes it, and no customer is mailed twice (a message in flight at the kill may go again,
with its Message-ID)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from contextlib import suppress

import psutil
import pytest
from sqlalchemy import create_engine, text

from tests.fixtures.mail import RecordingServer
from tests.fixtures.store import _admin_engine, fresh_postgres_database
from tests.service.conftest import PROJECT, REPO_TEMPLATES, SHARED_TEMPLATES, Service

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

CUSTOMERS = 240
NOTICE = """
  notice:
    description: A notice to every customer of the regions in the event.
    trigger: {event: notice.posted}
    audience:
      segment: "customer.region in event.data.regions"
    entry: {rule: every_time}
    steps:
      - id: notice
        kind: email
        subject: "A notice for {{ customer.region }}"
        template: ping/first
        category: service
"""
EVENT = """
  notice.posted:
    description: A notice for some regions.
    example: {regions: ["north"]}
"""


class SlowSink(RecordingServer):
    """A mail relay that takes 25 ms a message, so a fan-out is still going when it is killed."""

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(0.025)
        return await super().handle_DATA(server, session, envelope)


class Instance(Service):
    def __init__(self, root, roles: str, shared: dict[str, str]) -> None:
        super().__init__(root)
        self.roles = roles
        self.env.update(shared)

    def start(self, timeout: float = 300) -> None:
        with open(self.root / "serve.log", "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "flows", "serve", "--roles", self.roles],
                                         env=self.env, cwd=self.root, stdout=log,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve --roles {self.roles} exited:\n{self.log()}")
            if "Touchpoints is running" in self.log():
                return
            time.sleep(0.5)
        raise AssertionError(f"serve --roles {self.roles} did not start:\n{self.log()}")

    def runs_a_flow(self) -> bool:
        """True while a flow-run process runs under this instance's worker."""
        with suppress(psutil.NoSuchProcess):
            return any("prefect" in " ".join(p.cmdline()) and "worker" not in " ".join(p.cmdline())
                       for p in psutil.Process(self.proc.pid).children(recursive=True)
                       if p.ppid() != self.proc.pid)
        return False


def _project(root):
    shutil.copytree(PROJECT, root, dirs_exist_ok=True)
    for shared in SHARED_TEMPLATES:
        target = root / "templates" / shared
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_TEMPLATES / shared, target)
    source = (root / "touchpoints.yaml").read_text()
    source = source.replace("\nevents:\n", "\nevents:" + EVENT, 1)
    (root / "touchpoints.yaml").write_text(source + NOTICE)
    rows = ["id,name,email,timezone,region,plan,contract_start,contract_end"]
    rows += [f"N-{i},Customer {i},c{i}@example.com,Europe/London,north,Fibre,2026-01-01,2027-12-31"
             for i in range(CUSTOMERS)]
    (root / "many.csv").write_text("\n".join(rows) + "\n")


@pytest.fixture
def prefect_database():
    admin = _admin_engine()
    name = f"tp_test_prefect_{os.getpid()}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    with suppress(Exception), admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.mark.timeout(600)
def test_two_workers_share_the_pool_and_the_survivor_finishes_a_killed_fan_out(
        tmp_path, prefect_database):
    sink = SlowSink().start()
    instances: list[Instance] = []
    with fresh_postgres_database("workers") as store_url:
        shared = {"TOUCHPOINTS_DATABASE_URL": store_url, "TOUCHPOINTS_SMTP_URL": sink.url,
                  "TOUCHPOINTS_SECRET_KEY": "k" * 48, "TOUCHPOINTS_WORK_POOL": "touchpoints-test",
                  "TOUCHPOINTS_PREFECT_DATABASE_URL": prefect_database,
                  "TOUCHPOINTS_PREFECT_REDIS_URL": "redis://127.0.0.1:6379/3",
                  "TOUCHPOINTS_BATCH_SIZE": "60", "PREFECT_WORKER_QUERY_SECONDS": "2"}
        try:
            front_root = tmp_path / "front"
            _project(front_root)
            front = Instance(front_root, "web,housekeeping", shared)
            instances.append(front)
            front.cli("customers", "import", "many.csv")
            front.start()
            assert "deployed" in front.log() and "work pool touchpoints-test" in front.log()
            api = f"http://127.0.0.1:{front.env['TOUCHPOINTS_PREFECT_PORT']}/api"
            workers = []
            for name in ("one", "two"):
                root = tmp_path / name
                _project(root)
                worker = Instance(root, "worker", {**shared, "PREFECT_API_URL": api})
                instances.append(worker)
                worker.start()
                workers.append(worker)

            front.info = json.loads((front.data / "serve.json").read_text())
            front.post_event("notice.posted", event_id="notice-1", regions=["north"])

            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and len(sink.messages) < 20:
                time.sleep(0.2)
            assert len(sink.messages) >= 20, front.log()
            running = [w for w in workers if w.runs_a_flow()]
            assert len(running) == 1, "exactly one worker runs the fan-out"
            victim, survivor = running[0], next(w for w in workers if w is not running[0])
            victim.kill()
            at_kill = len(sink.messages)
            assert at_kill < CUSTOMERS, "the fan-out was over before the kill"

            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                if len({m.envelope_to[0] for m in sink.messages}) >= CUSTOMERS:
                    break
                time.sleep(1)
            recipients = Counter(m.envelope_to[0] for m in sink.messages)
            assert len(recipients) == CUSTOMERS, (len(recipients), front.log(), survivor.log())
            twice = [address for address, n in recipients.items() if n > 1]
            assert len(twice) <= 1, twice  # at most the one in flight at the kill
            for address in twice:
                ids = {m.message["Message-ID"] for m in sink.messages if m.envelope_to[0] == address}
                assert len(ids) == 1, ids

            # the last emails are out before their chunk is settled and the wave finished:
            # wait for the store to say so (the survivor finishing is what is tested)
            engine = create_engine(store_url)
            deadline = time.monotonic() + 120
            while True:
                with engine.connect() as connection:
                    statuses = dict(connection.execute(text(
                        "SELECT status, count(*) FROM members GROUP BY status")).all())
                    units = dict(connection.execute(text(
                        "SELECT status, count(*) FROM work_units GROUP BY status")).all())
                settled = statuses == {"done": CUSTOMERS} and set(units) == {"done"}
                if settled or time.monotonic() > deadline:
                    break
                time.sleep(1)
            engine.dispose()
            assert statuses == {"done": CUSTOMERS}, statuses
            assert set(units) == {"done"}, units
            assert front.cli("audit", "verify").returncode == 0
        finally:
            for instance in reversed(instances):
                instance.stop()
            sink.stop()
