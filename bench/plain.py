"""The two reference arms: the same email to every customer of the region, written by hand.

* **floor**: plain Python, no Prefect. Render the shipped outage templates with Jinja2, build an
  ``EmailMessage``, send everything over one SMTP connection, and write one hash-chained
  audit row per email to SQLite (committed per email, WAL, like the store).
* **naive**: the same work per email as one Prefect ``@task`` per email, called from one
  ``@flow``, each task opening its own SMTP connection.

Neither keeps a ledger, journeys, members or leases: they are what the engine is measured
against, not replacements for it.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import smtplib
import sqlite3
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STEP = "outage_acknowledged"
GENESIS = "0" * 64


def read_customers(path: Path, region: str) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["region"] == region]
    for row in rows:
        row["first_name"] = row["name"].split()[0]
    return rows


class AuditLog:
    """One SQLite table, one row per email, each row's hash covering the previous one."""

    def __init__(self, path: Path, key: bytes) -> None:
        self.db = sqlite3.connect(path, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY, at TEXT, "
                        "action TEXT, customer_id TEXT, detail TEXT, prev_hash TEXT, hash TEXT)")
        self.db.commit()
        self.key = key
        last = self.db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        self.seq, self.prev = last if last else (0, GENESIS)

    def append(self, action: str, customer_id: str, detail: dict) -> None:
        at = datetime.now(UTC).isoformat(timespec="microseconds")
        body = json.dumps({"at": at, "action": action, "customer_id": customer_id,
                           "detail": detail}, sort_keys=True, separators=(",", ":"))
        digest = hmac.new(self.key, (self.prev + body).encode(), hashlib.sha256).hexdigest()
        self.seq += 1
        self.db.execute("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (self.seq, at, action, customer_id, json.dumps(detail), self.prev, digest))
        self.db.commit()
        self.prev = digest

    def count(self) -> int:
        return self.db.execute("SELECT count(*) FROM audit").fetchone()[0]

    def verify(self) -> bool:
        prev = GENESIS
        for at, action, customer_id, detail, stored_prev, digest in self.db.execute(
                "SELECT at, action, customer_id, detail, prev_hash, hash FROM audit ORDER BY seq"):
            body = json.dumps({"at": at, "action": action, "customer_id": customer_id,
                               "detail": json.loads(detail)}, sort_keys=True, separators=(",", ":"))
            if stored_prev != prev or digest != hmac.new(self.key, (prev + body).encode(),
                                                         hashlib.sha256).hexdigest():
                return False
            prev = digest
        return True


class Postman:
    """Renders and builds one outage email per customer, from the shipped touchpoints.yaml and
    templates (the same Jinja2 environment the engine uses: sandboxed, StrictUndefined)."""

    def __init__(self, config_file: Path, event: dict) -> None:
        from flows.config import iter_steps, load_config_fast
        from flows.templating import make_environment

        config = load_config_fast(config_file)
        step = next(s for s in iter_steps(config.touchpoint("outage").steps) if s.id == STEP)
        self.env = make_environment(config_file.parent / "templates")
        self.text = self.env.get_template(f"{step.template}.txt")
        self.html = self.env.get_template(f"{step.template}.html")
        self.subject = self.env.from_string(step.subject)
        d = config.defaults
        self.sender, self.reply_to, self.domain = d.sender, d.reply_to, "northwind.example"
        self.company = {"name": d.company_name, "sender": d.sender, "reply_to": d.reply_to,
                        "postal_address": d.postal_address}
        self.event = event

    def message(self, customer: dict) -> EmailMessage:
        ctx = {"customer": customer, "event": self.event, "trigger": self.event, "steps": {},
               "company": self.company, "journey": {"id": "floor", "touchpoint": "outage"},
               "links": {}, "now": datetime.now(UTC)}
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = f"{customer['name']} <{customer['email']}>"
        message["Reply-To"] = self.reply_to
        message["Subject"] = " ".join(self.subject.render(ctx).split())
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = make_msgid(domain=self.domain)
        message.set_content(self.text.render(ctx))
        message.add_alternative(self.html.render(ctx), subtype="html")
        return message


def _audit(log: AuditLog, customer: dict, message: EmailMessage) -> None:
    log.append("email.sent", customer["id"], {"to": customer["email"], "category": "outage",
                                              "message_id": message["Message-ID"]})


def floor(customers: list[dict], postman: Postman, log: AuditLog, smtp_port: int) -> int:
    """Every email over one SMTP connection, one audit row each. Returns the number sent."""
    sent = 0
    if not customers:
        return 0
    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as smtp:
        for customer in customers:
            message = postman.message(customer)
            smtp.send_message(message)
            _audit(log, customer, message)
            sent += 1
    return sent


def naive_flow(postman: Postman, log: AuditLog, smtp_port: int):
    """The Prefect flow of the naive arm (built here so Prefect is imported only by it)."""
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    @task(name="send-one", cache_policy=NO_CACHE, persist_result=False)
    def send_one(customer: dict) -> str:
        message = postman.message(customer)
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as smtp:  # one connection each
            smtp.send_message(message)
        _audit(log, customer, message)
        return customer["id"]

    @flow(name="naive-outage", persist_result=False, validate_parameters=False)
    def naive_outage(customers_csv: str, region: str) -> int:
        sent = 0
        for customer in read_customers(Path(customers_csv), region):
            send_one(customer)
            sent += 1
        return sent

    return naive_outage
