"""``defaults.contact_policy`` at send time, across every touch point.

What a rule counts is the customer's own sent email of its categories in the delivery ledger
(``status = sent``, by the moment it was sent: a sent row is never touched again, so its
``updated_at`` is its send time). The ledger is read **once per batch**, for every customer of
the batch at once, over the longest window of the rules; a send in the batch is added to what
was read, so two emails of one batch count each other. Two runs sending to one customer in the
same instant may both pass (the check is not a lock).

A rule that is full defers the email until its oldest counted email leaves the window (then the
send window, if any, still applies), or suppresses it, as its ``action`` says. A window that
frees up within the engine's claim tolerance (30 s) counts as free, as a resumed run may start
that early. An email held by
several rules is suppressed if any of them suppresses, else deferred until all of them free up.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select

from flows.store.tables import Delivery as Ledger

#: the ledger key of an email to the customer ends so (flows/engine/delivery.py builds it)
CUSTOMER_KEY_SUFFIX = ":customer"


@dataclass(frozen=True)
class Verdict:
    action: str                 # defer | suppress
    reason: str                 # "contact policy: …"
    until: datetime | None = None


@dataclass
class ContactLedger:
    """The counted emails of a batch's customers: customer id → [(sent at, category)]."""

    sent: dict[str, list[tuple[datetime, str]]] = field(default_factory=lambda: defaultdict(list))
    ids: frozenset[str] = frozenset()   # the customers it was read for

    def record(self, customer_id: str, category: str, at: datetime) -> None:
        self.sent[customer_id].append((at, category))


def transactional_map(config) -> dict[str, bool]:
    return {name: category.transactional for name, category in config.categories.items()}


def counted_categories(config) -> set[str]:
    """Every category some rule counts."""
    flags = transactional_map(config)
    return {name for name, transactional in flags.items() if not transactional
            and any(rule.counts(name, flags) for rule in config.defaults.contact_policy)}


def read(session, config, customer_ids, now: datetime) -> ContactLedger:
    """One query: the counted emails sent to any of ``customer_ids`` within the longest window."""
    rules = config.defaults.contact_policy
    ids = sorted(set(customer_ids))
    ledger = ContactLedger(ids=frozenset(ids))
    categories = counted_categories(config)
    if not rules or not ids or not categories:
        return ledger
    since = now - max(rule.per for rule in rules)
    rows = session.execute(
        select(Ledger.customer_id, Ledger.category, Ledger.updated_at)
        .where(Ledger.customer_id.in_(ids), Ledger.status == "sent",
               Ledger.category.in_(sorted(categories)), Ledger.updated_at > since,
               Ledger.key.like(f"%{CUSTOMER_KEY_SUFFIX}")))
    for customer_id, category, at in rows:
        ledger.record(customer_id, category, at)
    return ledger


def decide(config, ledger: ContactLedger, *, customer_id: str, category: str,
           now: datetime) -> Verdict | None:
    """What the policy does with one more email of ``category`` to the customer now (None:
    it may go)."""
    from flows.engine.journeys import CLAIM_TOLERANCE

    flags = transactional_map(config)
    full = []
    # a resumed run may claim its members up to CLAIM_TOLERANCE early: a window that frees up
    # that soon is free (else the member would be parked again at the due time it came for)
    moment = now + CLAIM_TOLERANCE
    for rule in config.defaults.contact_policy:
        if not rule.counts(category, flags):
            continue
        times = sorted(at for at, cat in ledger.sent.get(customer_id, ())
                       if rule.counts(cat, flags) and at > moment - rule.per)
        if len(times) >= rule.max:
            full.append((rule, len(times), times[len(times) - rule.max] + rule.per))
    if not full:
        return None
    suppressing = [f for f in full if f[0].action == "suppress"]
    if suppressing:
        rule, count, _ = suppressing[0]
        return Verdict("suppress", _reason(rule, count))
    rule, count, until = max(full, key=lambda f: f[2])
    return Verdict("defer", _reason(rule, count), until=until)


def _reason(rule, count: int) -> str:
    what = " or ".join(rule.categories) if rule.categories else "non-transactional"
    return (f"contact policy: {_plural(count, what + ' email')} in the last "
            f"{in_words(rule.per)} (at most {rule.max})")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def in_words(delta) -> str:
    """``timedelta(days=1, hours=12)`` → ``1 day 12 hours``."""
    seconds, parts = int(delta.total_seconds()), []
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        if seconds >= size:
            parts.append(_plural(seconds // size, unit))
            seconds %= size
    return " ".join(parts) or "0 seconds"


def for_batch(ctx, customer_id: str) -> ContactLedger:
    """The batch's ledger read, made on the first email that needs it and kept on ``ctx``
    (``ctx.customer_ids``: the batch's customers; a context that was not told them reads for
    the one customer)."""
    ledger = getattr(ctx, "contacts", None)
    if ledger is None or customer_id not in ledger.ids:
        batch = getattr(ctx, "customer_ids", ())
        batch = batch if customer_id in batch else (customer_id,)
        ledger = ctx.contacts = read(ctx.session, ctx.config, batch, ctx.now)
    return ledger


def preview_note(engine, touchpoint, customer_id: str, category: str, now: datetime,
                 cache: dict) -> str | None:
    """What the control group and the policy would do with this customer email, sent now
    (``cache`` keeps the one ledger read of a preview)."""
    flags = transactional_map(engine.config)
    if category not in flags or flags[category]:
        return None
    notes = []
    if getattr(touchpoint, "holdout", None):
        notes.append(f"not sent to the {touchpoint.holdout * 100:g}% of entrants held out "
                     "as the control group")
    if engine.config.defaults.contact_policy:
        if "ledger" not in cache:
            with engine.store.session() as session:
                cache["ledger"] = read(session, engine.config, [customer_id], now)
        verdict = decide(engine.config, cache["ledger"], customer_id=customer_id,
                         category=category, now=now)
        if verdict is not None and verdict.action == "suppress":
            notes.append(f"would be suppressed by the {verdict.reason}")
        elif verdict is not None:
            notes.append(f"would be deferred to {verdict.until:%Y-%m-%d %H:%M} UTC by the "
                         f"{verdict.reason}")
    return "; ".join(notes) or None
