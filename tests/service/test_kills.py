"""Pulling the plug during a big fan-out, again and again: `kill -9` of the whole `serve`
process group five times while an outage notice goes to 5,000 customers on embedded defaults.
After the last restart every customer has the notice, a customer mailed twice got the same
Message-ID both times (at most one such customer per kill) and `audit verify` passes.

It takes several minutes, so it is marked ``soak`` and left out of the default run; run it
with ``pytest -m soak tests/service/test_kills.py`` (``TOUCHPOINTS_SOAK_CUSTOMERS`` sets the
size)."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import time
from collections import Counter

import pytest

from tests.service.conftest import PROJECT, REPO_TEMPLATES, SHARED_TEMPLATES, Service
from tests.service.test_workers import EVENT, NOTICE

pytestmark = [pytest.mark.e2e, pytest.mark.soak]

CUSTOMERS = int(os.environ.get("TOUCHPOINTS_SOAK_CUSTOMERS", "5000"))
KILLS = 5


def kill_group(service: Service) -> None:
    """SIGKILL serve and every process of its group, children included."""
    pids = [service.proc.pid]
    try:
        import psutil

        pids += [p.pid for p in psutil.Process(service.proc.pid).children(recursive=True)]
    except Exception:  # noqa: BLE001 - already gone
        pass
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    service.proc.wait(10)


def ledger(service: Service) -> list[tuple[str, str, str]]:
    with sqlite3.connect(service.data / "touchpoints.db") as db:
        return db.execute("SELECT recipient, message_id, status FROM deliveries "
                          "WHERE step_id = 'notice'").fetchall()


def caught(service: Service) -> Counter:
    """Messages in the embedded catcher's mailbox, by (recipient, Message-ID)."""
    import email
    from email import policy

    seen: Counter = Counter()
    for path in (service.data / "mailbox").glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        if message["Subject"] and message["Subject"].startswith("A notice"):
            seen[(str(message["To"]), message["Message-ID"])] += 1
    return seen


@pytest.mark.timeout(1800)
def test_five_kills_during_a_big_fan_out_leave_every_customer_notified_once(tmp_path):
    root = tmp_path / "service"
    shutil.copytree(PROJECT, root, dirs_exist_ok=True)
    for shared in SHARED_TEMPLATES:
        target = root / "templates" / shared
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_TEMPLATES / shared, target)
    source = (root / "touchpoints.yaml").read_text().replace("\nevents:\n", "\nevents:" + EVENT, 1)
    (root / "touchpoints.yaml").write_text(source + NOTICE)
    rows = ["id,name,email,timezone,region,plan,contract_start,contract_end"]
    rows += [f"N-{i:05d},Customer {i},c{i}@example.com,Europe/London,north,Fibre,2026-01-01,"
             "2027-12-31" for i in range(CUSTOMERS)]
    (root / "many.csv").write_text("\n".join(rows) + "\n")

    service = Service(root)
    service.cli("customers", "import", "many.csv")
    service.start()
    try:
        service.post_event("notice.posted", event_id="big-notice", regions=["north"])
        kills = 0
        while kills < KILLS:
            sent = len([r for r in ledger(service) if r[2] == "sent"])
            if sent >= CUSTOMERS:
                break
            if sent > (kills + 1) * CUSTOMERS // (KILLS + 2):
                kill_group(service)
                kills += 1
                service.start()
            time.sleep(1)
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            if len([r for r in ledger(service) if r[2] == "sent"]) >= CUSTOMERS:
                break
            time.sleep(2)
        rows = ledger(service)
        assert len(rows) == CUSTOMERS and {r[2] for r in rows} == {"sent"}, Counter(r[2] for r in rows)
        assert kills == KILLS, f"the fan-out ended after {kills} kills"
        time.sleep(3)  # the catcher writes the last messages
        seen = caught(service)
        recipients = Counter(to for to, _ in seen.elements())
        assert len(recipients) == CUSTOMERS
        twice = [to for to, n in recipients.items() if n > 1]
        assert len(twice) <= KILLS, twice
        by_recipient = {to: mid for to, mid, _ in rows}
        for to, message_id in seen:  # a repeat carries its ledger's Message-ID
            assert message_id == by_recipient[to.split("<")[-1].rstrip(">")]
        assert service.cli("audit", "verify").returncode == 0
    finally:
        service.stop()
