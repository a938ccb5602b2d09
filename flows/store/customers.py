"""The customer directory: lookups, preferences and streaming. Importing lives in
flows/store/importing.py (checks in customer_checks.py, file reading in customer_files.py); its
names are re-exported here, where callers have always found them."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from flows.errors import NotFoundError
from flows.steps.base import CustomerView
from flows.store import audit
from flows.store.customer_checks import (  # noqa: F401 - re-exported
    FIELDS,
    HINT_FIX,
    REQUIRED,
    SPECIAL,
    CustomerIn,
    check_customer,
    is_email,
    is_timezone,
)
from flows.store.customer_files import SourceRow, parse_rows, read_file  # noqa: F401
from flows.store.importing import (  # noqa: F401 - re-exported
    ImportReport,
    RowError,
    import_customers,
    import_rows,
    upsert_customer,
)
from flows.store.tables import Customer, Preference, utcnow


def to_view(row: Customer | None) -> CustomerView:
    if row is None:
        raise NotFoundError("no such customer",
                            hint="list customers with `touchpoints customers list`")
    return CustomerView(id=row.id, name=row.name, email=row.email, timezone=row.timezone,
                        region=row.region, plan=row.plan, contract_start=row.contract_start,
                        contract_end=row.contract_end, account_owner=row.account_owner,
                        account_owner_name=row.account_owner_name,
                        preferred_name=row.preferred_name,
                        attributes=dict(row.attributes or {}))


def get_customer(session: Session, customer_id: str) -> CustomerView:
    row = session.get(Customer, customer_id)
    if row is None:
        raise NotFoundError(f"unknown customer {customer_id!r}",
                            hint="list customers with `touchpoints customers list`, or import "
                                 "them with `touchpoints customers import FILE`")
    return to_view(row)


def preferences(session: Session, customer_id: str) -> dict[str, Preference]:
    """The stored choices of a customer by category (a missing category means subscribed)."""
    stmt = (select(Preference).where(Preference.customer_id == customer_id)
            .order_by(Preference.category))
    return {p.category: p for p in session.scalars(stmt)}


def is_subscribed(session: Session, customer_id: str, category: str) -> bool:
    pref = session.get(Preference, (customer_id, category))
    return pref is None or bool(pref.subscribed)


def set_preference(session: Session, customer_id: str, category: str, subscribed: bool, *,
                   source: str, actor: str) -> bool:
    """Record a customer's choice for one category; audited. Returns whether it changed."""
    if session.get(Customer, customer_id) is None:
        raise NotFoundError(f"unknown customer {customer_id!r}",
                            hint="list customers with `touchpoints customers list`")
    pref = session.get(Preference, (customer_id, category))
    if pref is not None and pref.subscribed == subscribed:
        return False
    if pref is None:
        session.add(Preference(customer_id=customer_id, category=category, subscribed=subscribed,
                               source=source, updated_at=utcnow()))
    else:
        pref.subscribed, pref.source = subscribed, source
    session.flush()
    state = "subscribed" if subscribed else "unsubscribed"
    audit.record(session, action="preference.changed", result=state, actor=actor,
                 customer_id=customer_id, reason=f"{category}: {state} ({source})",
                 detail={"category": category, "subscribed": subscribed, "source": source})
    return True


def stream_customers(session: Session, batch_size: int = 500, *,
                     region: str | None = None) -> Iterator[list[Customer]]:
    """Every customer (or those of ``region``) in batches, ordered by id, by keyset pagination:
    never the whole table in memory."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    after: str | None = None
    while True:
        stmt = select(Customer).order_by(Customer.id).limit(batch_size)
        if region is not None:
            stmt = stmt.where(Customer.region == region)
        if after is not None:
            stmt = stmt.where(Customer.id > after)
        batch = list(session.scalars(stmt))
        if not batch:
            return
        yield batch
        after = batch[-1].id
        if len(batch) < batch_size:
            return
