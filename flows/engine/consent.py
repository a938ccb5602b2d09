"""What a batch's customers allow, read once per batch: suppressed addresses, preferences,
other journeys' holds, the ledger rows the batch's emails already have, and (right before each
chunk's SMTP conversation) which of the chunk's members are still open.

One query each for the whole batch, never one per member (flows/engine/delivery.py asks these
for every email of a batch at once).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import or_, select

from flows.store.tables import Delivery as Ledger
from flows.store.tables import Hold, Member, Preference, Suppression


@dataclass
class Consent:
    """The batch's reads. ``suppressed``: lower-cased address → reason; ``unsubscribed``:
    (customer id, category) pairs; ``holds``: customer id → [(categories, reason)] of holds
    placed by *other* journeys and still on; ``ledger``: key → the row it already has."""

    suppressed: dict[str, str] = field(default_factory=dict)
    unsubscribed: set[tuple[str, str]] = field(default_factory=set)
    holds: dict[str, list[tuple[list, str]]] = field(default_factory=lambda: defaultdict(list))
    ledger: dict[str, Ledger] = field(default_factory=dict)

    def why_not(self, *, customer_id: str, address: str, category: str,
                transactional: bool) -> str | None:
        """Why a customer email must not go out now, or None (the rules of one email)."""
        reason = self.suppressed.get(address.lower())
        if reason is not None:
            return f"address suppressed: {reason}"
        if transactional:
            return None
        if (customer_id, category) in self.unsubscribed:
            return f"customer unsubscribed from {category}"
        for categories, why in self.holds.get(customer_id, ()):
            if category in (categories or []):
                return f"held out: {why}"
        return None


def read(session, *, journey_id: str, now: datetime, keys: list[str], addresses: list[str],
         consent_of: list[tuple[str, str]]) -> Consent:
    """One query per kind for a batch: the ledger rows of ``keys``, the suppressions of
    ``addresses``, and the preferences and holds of ``consent_of`` ((customer id, category)
    of the batch's non-transactional customer emails)."""
    out = Consent()
    if keys:
        out.ledger = {row.key: row for row in session.scalars(
            select(Ledger).where(Ledger.key.in_(sorted(set(keys)))))}
    lowered = sorted({a.lower() for a in addresses if a})
    if lowered:
        out.suppressed = dict(session.execute(
            select(Suppression.email, Suppression.reason).where(Suppression.email.in_(lowered))).all())
    customers = sorted({cid for cid, _ in consent_of})
    if customers:
        categories = sorted({cat for _, cat in consent_of})
        out.unsubscribed = {(cid, cat) for cid, cat in session.execute(
            select(Preference.customer_id, Preference.category).where(
                Preference.customer_id.in_(customers), Preference.category.in_(categories),
                Preference.subscribed.is_(False)))}
        for cid, categories_held, reason in session.execute(
                select(Hold.customer_id, Hold.categories, Hold.reason).where(
                    Hold.customer_id.in_(customers), ~Hold.source.like(f"{journey_id}:%"),
                    or_(Hold.until.is_(None), Hold.until > now)).order_by(Hold.id)):
            out.holds[cid].append((categories_held, reason))
    return out


def still_open(session, member_ids: list[int]) -> set[int]:
    """Which of ``member_ids`` are still ``active``: one query, read from the database (not the
    session's copies), so a journey ended meanwhile (``exit_when``, a cancel) shows. The rows
    stay locked until the caller commits (PostgreSQL; SQLite's write transaction already
    excludes other writers), so a journey cannot end between this read and that commit."""
    if not member_ids:
        return set()
    return set(session.scalars(select(Member.id).where(
        Member.id.in_(sorted(set(member_ids))), Member.status == "active").with_for_update()))
