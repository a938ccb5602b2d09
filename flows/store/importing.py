"""Importing customers (CSV, JSON, API).

An import keeps every good row and reports each bad one with where it is in the file and
why. It is idempotent: the same file twice changes nothing, and ``updated_at`` moves only when
something really changed. The ``unsubscribed`` categories of a row turn those categories off
(``source='import'``); an import never turns a category back on, that is the customer's own
choice on the preference page. ``last_contact_at`` (the CRM's last contact) only ever moves
forward: an older value never hides a newer contact of ours. Each import writes one audit row,
not one per customer.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from flows.errors import ImportRowsError
from flows.store import audit
from flows.store.customer_checks import CHUNK, CustomerIn, check_customer
from flows.store.customer_files import SourceRow, parse_rows, read_file
from flows.store.tables import Customer, Preference, utcnow

if TYPE_CHECKING:  # pragma: no cover
    from flows.store.db import Store


# --------------------------------------------------------------------------- reports
@dataclass(frozen=True)
class RowError:
    """A rejected row: ``index`` from 0 among the rows, ``line`` in the file (CSV: the
    physical line, header included; JSON: where the object starts), ``item`` from 1 for JSON."""

    index: int
    reason: str
    line: int | None = None
    item: int | None = None
    customer_id: str | None = None

    def format(self, source: str) -> str:
        if self.line is not None and self.item is not None:
            return f"{source}:{self.line}: item {self.item}: {self.reason}"
        if self.line is not None:
            return f"{source}:{self.line}: {self.reason}"
        return f"{source}: item {self.item or self.index + 1}: {self.reason}"


@dataclass
class ImportReport:
    source: str
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        return len(self.errors)

    @property
    def received(self) -> int:
        return self.created + self.updated + self.unchanged + self.rejected

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        return (f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged, "
                f"{self.rejected} rejected")

    def problems(self) -> list[str]:
        """Each rejected row as ``FILE:LINE: reason``."""
        return [error.format(self.source) for error in self.errors]

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "received": self.received, "created": self.created,
                "updated": self.updated, "unchanged": self.unchanged, "rejected": self.rejected,
                "errors": [{"index": e.index, "line": e.line, "item": e.item,
                            "customer_id": e.customer_id, "reason": e.reason}
                           for e in self.errors]}


# --------------------------------------------------------------------------- importing
def import_customers(store: Store, path: str | Path, *, actor: str,
                     categories: Collection[str] | None = None, around=None) -> ImportReport:
    """Import a .csv or .json file of customers in one transaction, keeping the good rows.

    ``categories``, when given, are the email categories of touchpoints.yaml: an unsubscribe
    from any other category is a bad row (it would otherwise silently not apply).
    ``around(session, ids)``, when given, is a context manager entered around the import in
    its transaction (the CLI's: waits follow changed contract dates)."""
    path = Path(path)
    raw = read_file(path)
    rows = parse_rows(path, raw)
    detail = {"file": str(path), "sha256": hashlib.sha256(raw).hexdigest()}
    ids = [r.data.get("id") for r in rows if isinstance(r.data, Mapping)]
    with store.session() as session, (around(session, ids) if around else nullcontext()):
        return import_rows(session, rows, actor=actor, source=str(path), categories=categories,
                           detail=detail)


def import_rows(session: Session, rows: Sequence[SourceRow | Mapping[str, Any]], *, actor: str,
                source: str = "api", categories: Collection[str] | None = None,
                detail: Mapping[str, Any] | None = None) -> ImportReport:
    """Create or update many customers (the API's bulk import; files go through
    ``import_customers``). Plain mappings are numbered by their index from 0."""
    report = ImportReport(source=source)
    good: list[tuple[SourceRow, CustomerIn]] = []
    first_seen: dict[str, SourceRow] = {}
    for position, row in enumerate(rows):
        if not isinstance(row, SourceRow):
            row = SourceRow(index=position, data=row)
        customer = _check_row(row, report, categories)
        if customer is None:
            continue
        if customer.id in first_seen:
            earlier = first_seen[customer.id]
            where = (f"line {earlier.line}" if earlier.line is not None
                     else f"item {earlier.item or earlier.index + 1}")
            _reject(report, row, f"id {customer.id} appears twice (first on {where})", customer.id)
            continue
        first_seen[customer.id] = row
        good.append((row, customer))
    for start in range(0, len(good), CHUNK):
        _save_chunk(session, [c for _, c in good[start:start + CHUNK]], report, source="import")
    audit.record(session, action="customers.imported",
                 result="imported" if report.ok else "partial", actor=actor,
                 reason=f"{source}: {report.summary()}",
                 detail={**(detail or {}), "source": source, "created": report.created,
                         "updated": report.updated, "unchanged": report.unchanged,
                         "rejected": report.rejected})
    return report


def _check_row(row: SourceRow, report: ImportReport,
               categories: Collection[str] | None) -> CustomerIn | None:
    if row.problem is not None:
        _reject(report, row, row.problem, None)
        return None
    if not isinstance(row.data, Mapping):
        _reject(report, row, f"is not an object but {type(row.data).__name__}", None)
        return None
    try:
        return check_customer(row.data, categories=categories)
    except ValueError as exc:
        raw_id = row.data.get("id")
        _reject(report, row, str(exc), str(raw_id) if raw_id not in (None, "") else None)
        return None


def _reject(report: ImportReport, row: SourceRow, reason: str, customer_id: str | None) -> None:
    report.errors.append(RowError(index=row.index, reason=reason, line=row.line, item=row.item,
                                  customer_id=customer_id))


def _save_chunk(session: Session, chunk: list[CustomerIn], report: ImportReport, *,
                source: str) -> None:
    ids = [c.id for c in chunk]
    existing = {row.id: row
                for row in session.scalars(select(Customer).where(Customer.id.in_(ids)))}
    prefs: dict[str, dict[str, Preference]] = defaultdict(dict)
    for pref in session.scalars(select(Preference).where(Preference.customer_id.in_(ids))):
        prefs[pref.customer_id][pref.category] = pref
    now = utcnow()
    for customer in chunk:
        row = existing.get(customer.id)
        if row is None:
            session.add(Customer(id=customer.id, created_at=now, updated_at=now,
                                 last_contact_at=customer.last_contact_at, **customer.columns()))
            _unsubscribe(session, customer, prefs[customer.id], source=source, now=now)
            report.created += 1
            continue
        changed = _update(row, customer)
        if _unsubscribe(session, customer, prefs[customer.id], source=source, now=now) or changed:
            report.updated += 1
        else:
            report.unchanged += 1
    session.flush()


def _update(row: Customer, customer: CustomerIn) -> list[str]:
    """Set the fields that differ; the names of those changed (``updated_at`` moves only then)."""
    changed = []
    for name, value in customer.columns().items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed.append(name)
    contact = customer.last_contact_at
    if contact is not None and (row.last_contact_at is None or contact > row.last_contact_at):
        row.last_contact_at = contact  # the CRM's contact is newer than the last we know of
        changed.append("last_contact_at")
    return changed


def _unsubscribe(session: Session, customer: CustomerIn, current: dict[str, Preference], *,
                 source: str, now) -> list[str]:
    changed = []
    for category in customer.unsubscribed:
        pref = current.get(category)
        if pref is None:
            pref = Preference(customer_id=customer.id, category=category, subscribed=False,
                              source=source, updated_at=now)
            session.add(pref)
            current[category] = pref
        elif pref.subscribed:
            pref.subscribed, pref.source = False, source
        else:
            continue
        changed.append(category)
    return changed


# --------------------------------------------------------------------------- one customer
def upsert_customer(session: Session, data: Mapping[str, Any], *, actor: str,
                    source: str = "api", categories: Collection[str] | None = None) -> Customer:
    """Create or update one customer with the same checks as an import (the web API's PUT).
    Every field is replaced; ``unsubscribed`` turns categories off. Raises ImportRowsError
    when the data is invalid. Audited when something changed."""
    try:
        customer = check_customer(data, categories=categories)
    except ValueError as exc:
        raise ImportRowsError(f"invalid customer: {exc}",
                              hint="send id, name, email and timezone; dates as YYYY-MM-DD"
                              ) from None
    row = session.get(Customer, customer.id)
    now = utcnow()
    if row is None:
        row = Customer(id=customer.id, created_at=now, updated_at=now,
                       last_contact_at=customer.last_contact_at, **customer.columns())
        session.add(row)
        session.flush()
        action, changed = "customer.created", list(customer.columns())
    else:
        action, changed = "customer.updated", _update(row, customer)
    current = {p.category: p for p in session.scalars(
        select(Preference).where(Preference.customer_id == customer.id))}
    unsubscribed = _unsubscribe(session, customer, current, source=source, now=now)
    session.flush()
    if action == "customer.created" or changed or unsubscribed:
        what = changed + [f"unsubscribed from {c}" for c in unsubscribed]
        reason = "created" if action == "customer.created" else "changed " + ", ".join(what)
        audit.record(session, action=action, result="saved", actor=actor, customer_id=row.id,
                     reason=reason,
                     detail={"changed": changed, "unsubscribed": unsubscribed, "source": source})
    return row
