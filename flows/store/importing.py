"""Importing customers (CSV, JSON, API).

An import keeps every good row and reports each bad one with where it is in the file and
why. It is idempotent: the same file twice changes nothing, and ``updated_at`` moves only when
something really changed. The ``unsubscribed`` categories of a row turn those categories off
(``source='import'``); an import never turns a category back on, that is the customer's own
choice on the preference page. ``last_contact_at`` (the CRM's last contact) only ever moves
forward: an older value never hides a newer contact of ours. Each import writes one audit row,
not one per customer.

Imports stream: the file is read row by row (flows/store/customer_files.py), rows are checked
and saved in chunks of ``CHUNK`` (one query for the chunk's existing customers, one for their
preferences, bulk inserts and updates), all in one transaction for the file. Memory stays flat
whatever the size of the file: what is kept for the whole file is the ids seen (a repeated id
is a bad row) and the first ``MAX_LISTED`` bad rows (the rest are counted).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from flows.errors import ImportRowsError
from flows.store import audit
from flows.store.customer_checks import CHUNK, FIELDS, CustomerIn, check_customer
from flows.store.customer_files import CustomerFile, SourceRow
from flows.store.tables import Customer, Preference, utcnow

if TYPE_CHECKING:  # pragma: no cover
    from flows.store.db import Store

#: bad rows listed in a report (and the CLI's output); any more are only counted
MAX_LISTED = 1_000
#: ``around(session, ids)``: entered around the saving of each chunk, in its transaction
Around = Callable[[Session, list[str]], AbstractContextManager[Any]]


# --------------------------------------------------------------------------- reports
@dataclass(frozen=True, slots=True)
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
    """What an import did. ``errors`` holds the first ``MAX_LISTED`` bad rows, ``rejected``
    counts all of them."""

    source: str
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def received(self) -> int:
        return self.created + self.updated + self.unchanged + self.rejected

    @property
    def ok(self) -> bool:
        return not self.rejected

    @property
    def omitted(self) -> int:
        """Bad rows counted but not listed."""
        return self.rejected - len(self.errors)

    def reject(self, error: RowError) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_LISTED:
            self.errors.append(error)

    def summary(self) -> str:
        return (f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged, "
                f"{self.rejected} rejected")

    def problems(self) -> list[str]:
        """Each listed bad row as ``FILE:LINE: reason``, then how many more there are."""
        lines = [error.format(self.source) for error in self.errors]
        if self.omitted:
            lines.append(f"{self.source}: {self.omitted} more rejected row(s) not listed "
                         f"(only the first {len(self.errors)} are)")
        return lines

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "received": self.received, "created": self.created,
                "updated": self.updated, "unchanged": self.unchanged, "rejected": self.rejected,
                "errors": [{"index": e.index, "line": e.line, "item": e.item,
                            "customer_id": e.customer_id, "reason": e.reason}
                           for e in self.errors],
                "errors_omitted": self.omitted}


# --------------------------------------------------------------------------- importing
def import_customers(store: Store, path: str | Path, *, actor: str,
                     categories: Collection[str] | None = None,
                     around: Around | None = None) -> ImportReport:
    """Import a .csv or .json file of customers in one transaction, keeping the good rows.

    ``categories``, when given, are the email categories of touchpoints.yaml: an unsubscribe
    from any other category is a bad row (it would otherwise silently not apply).
    ``around(session, ids)``, when given, is a context manager entered around the saving of
    each chunk of customers, in the import's transaction (the CLI's: waits follow changed
    contract dates). A problem with the file as a whole (not UTF-8, not JSON) found part way
    rolls the whole import back."""
    path = Path(path)
    with CustomerFile(path) as source, store.session() as session:
        importer = _Importer(session, ImportReport(source=str(path)), categories, around)
        for row in source.rows():
            importer.add(row)
        return importer.finish(actor=actor, detail={"file": str(path), "sha256": source.sha256})


def import_rows(session: Session, rows: Iterable[SourceRow | Mapping[str, Any]], *, actor: str,
                source: str = "api", categories: Collection[str] | None = None,
                detail: Mapping[str, Any] | None = None,
                around: Around | None = None) -> ImportReport:
    """Create or update many customers (the API's bulk import; files go through
    ``import_customers``). Plain mappings are numbered by their index from 0."""
    importer = _Importer(session, ImportReport(source=source), categories, around)
    for position, row in enumerate(rows):
        importer.add(row if isinstance(row, SourceRow) else SourceRow(index=position, data=row))
    return importer.finish(actor=actor, detail=detail)


class _Importer:
    """Checks rows one by one and saves the good ones a chunk at a time."""

    def __init__(self, session: Session, report: ImportReport,
                 categories: Collection[str] | None, around: Around | None) -> None:
        self.session, self.report, self.around = session, report, around
        self.categories = frozenset(categories) if categories is not None else None
        #: where each good id was first seen: its line, or minus its item number (no line)
        self.first_seen: dict[str, int] = {}
        self.chunk: list[CustomerIn] = []

    def add(self, row: SourceRow) -> None:
        customer = _check_row(row, self.report, self.categories)
        if customer is None:
            return
        earlier = self.first_seen.get(customer.id)
        if earlier is not None:
            where = f"line {earlier}" if earlier > 0 else f"item {-earlier}"
            _reject(self.report, row, f"id {customer.id} appears twice (first on {where})",
                    customer.id)
            return
        self.first_seen[customer.id] = (row.line if row.line is not None
                                        else -(row.item or row.index + 1))
        self.chunk.append(customer)
        if len(self.chunk) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        if not self.chunk:
            return
        chunk, self.chunk = self.chunk, []
        ids = [c.id for c in chunk]
        with self.around(self.session, ids) if self.around else nullcontext():
            _save_chunk(self.session, chunk, self.report, source="import")

    def finish(self, *, actor: str, detail: Mapping[str, Any] | None) -> ImportReport:
        self.flush()
        report = self.report
        audit.record(self.session, action="customers.imported",
                     result="imported" if report.ok else "partial", actor=actor,
                     reason=f"{report.source}: {report.summary()}",
                     detail={**(detail or {}), "source": report.source,
                             "created": report.created, "updated": report.updated,
                             "unchanged": report.unchanged, "rejected": report.rejected})
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
    report.reject(RowError(index=row.index, reason=reason, line=row.line, item=row.item,
                           customer_id=customer_id))


_REPLACED = tuple(name for name in FIELDS if name not in ("id", "last_contact_at")) + (
    "attributes",)
_TABLE = Customer.__table__


def _save_chunk(session: Session, chunk: list[CustomerIn], report: ImportReport, *,
                source: str) -> None:
    """Save one chunk: one query for its existing customers, one for the preferences of those
    who unsubscribe, then bulk inserts and updates."""
    existing = {row[0]: row for row in session.execute(
        select(_TABLE.c.id, _TABLE.c.last_contact_at, *(_TABLE.c[n] for n in _REPLACED))
        .where(_TABLE.c.id.in_([c.id for c in chunk]))).tuples()}
    prefs = _subscribed(session, [c.id for c in chunk if c.unsubscribed and c.id in existing])
    now = utcnow()
    new_customers: list[dict] = []
    changes: list[dict] = []
    new_prefs: list[dict] = []
    turned_off: list[dict] = []
    for customer in chunk:
        values = customer.columns()
        row = existing.get(customer.id)
        for category in customer.unsubscribed:
            subscribed = prefs.get((customer.id, category)) if row is not None else None
            if subscribed is None:
                new_prefs.append({"customer_id": customer.id, "category": category,
                                  "subscribed": False, "source": source, "updated_at": now})
            elif subscribed:
                turned_off.append({"customer_id": customer.id, "category": category,
                                   "subscribed": False, "source": source, "updated_at": now})
        if row is None:
            new_customers.append({"id": customer.id, "created_at": now, "updated_at": now,
                                  "last_contact_at": customer.last_contact_at, **values})
            report.created += 1
            continue
        changed = {name: values[name] for name, old in zip(_REPLACED, row[2:], strict=True)
                   if old != values[name]}
        contact, known = customer.last_contact_at, row[1]
        if contact is not None and (known is None or contact > known):
            changed["last_contact_at"] = contact  # the CRM's contact is newer than ours
        if changed:
            changes.append({"id": customer.id, "updated_at": now, **changed})
        pref_changed = any(prefs.get((customer.id, c)) is not False
                           for c in customer.unsubscribed)
        if changed or pref_changed:
            report.updated += 1
        else:
            report.unchanged += 1
    if new_customers:
        session.execute(_TABLE.insert(), new_customers)
    if changes:
        session.execute(update(Customer), changes)  # by primary key, grouped by columns set
    if new_prefs:
        session.execute(Preference.__table__.insert(), new_prefs)
    if turned_off:
        session.execute(update(Preference), turned_off)


def _subscribed(session: Session, ids: list[str]) -> dict[tuple[str, str], bool]:
    """The stored choices of these customers: (id, category) -> subscribed."""
    if not ids:
        return {}
    return {(customer_id, category): bool(subscribed)
            for customer_id, category, subscribed in session.execute(
                select(Preference.customer_id, Preference.category, Preference.subscribed)
                .where(Preference.customer_id.in_(ids)))}


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
