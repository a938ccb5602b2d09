"""The throwaway store a simulation runs against (`touchpoints simulate`).

* SQLite: the store file is copied with SQLite's backup API (committed WAL pages included)
  into a private temporary folder, then narrowed to the simulated customer;
* PostgreSQL: a temporary SQLite store is migrated and the rows the engine reads for one
  customer are copied into it (the customer, preferences, suppressions, holds, events,
  journeys and members, deliveries, touch point versions).

Narrowed means: the other customers are gone (a segment reaches the simulated customer only),
and no continuation or unit of work of an earlier journey is left, so nothing but the
simulated journey can run. The real store is only read.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from sqlalchemy import delete, or_, select
from sqlalchemy.engine import make_url

from flows.errors import NotFoundError
from flows.store.db import Store
from flows.store.tables import (
    Continuation,
    Customer,
    Delivery,
    Event,
    Hold,
    Journey,
    Member,
    Preference,
    Suppression,
    TouchpointVersion,
    WorkUnit,
)

#: events with no customer (outages, maintenance) copied from a PostgreSQL store, this far back
BROADCAST_EVENTS = timedelta(days=90)


def _check_customer(source: Store, customer_id: str) -> None:
    with source.read_session() as session:
        if session.get(Customer, customer_id) is None:
            raise NotFoundError(f"unknown customer {customer_id!r}",
                                hint="list them with `touchpoints customers list`, or import "
                                     "them with `touchpoints customers import FILE`")


@contextmanager
def throwaway_store(source: Store, customer_id: str, *, now) -> Iterator[Store]:
    """A private copy of ``source`` narrowed to ``customer_id``, deleted afterwards."""
    _check_customer(source, customer_id)
    folder = Path(tempfile.mkdtemp(prefix="touchpoints-simulate-"))
    path = folder / "simulation.db"
    store = None
    try:
        if source.dialect == "sqlite":
            _backup(source, path)
            store = Store(f"sqlite:///{path}")
            store.migrate_if_needed()
            _narrow(store, customer_id)
        else:
            store = Store(f"sqlite:///{path}")
            store.migrate()
            _copy_rows(source, store, customer_id, now=now)
        yield store
    finally:
        if store is not None:
            store.dispose()
        shutil.rmtree(folder, ignore_errors=True)


def _backup(source: Store, path: Path) -> None:
    database = make_url(source.url).database
    if not database or database == ":memory:":
        raise NotFoundError("the store is an in-memory SQLite database: nothing to copy",
                            hint="point TOUCHPOINTS_DATABASE_URL at a database file")
    with source.reporting_errors():
        src = sqlite3.connect(database)
        dst = sqlite3.connect(path)
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()


def _narrow(store: Store, customer_id: str) -> None:
    with store.session() as session:
        session.execute(delete(WorkUnit))
        session.execute(delete(Continuation))
        session.execute(delete(Member).where(Member.customer_id != customer_id))
        session.execute(delete(Preference).where(Preference.customer_id != customer_id))
        session.execute(delete(Hold).where(Hold.customer_id != customer_id))
        session.execute(delete(Customer).where(Customer.id != customer_id))


def _copy_rows(source: Store, target: Store, customer_id: str, *, now) -> None:
    with source.read_session() as read:
        customer = read.get(Customer, customer_id)
        email = (customer.email or "").lower()
        member_journeys = select(Member.journey_id).where(Member.customer_id == customer_id)
        queries = [
            (Customer, Customer.id == customer_id),
            (Preference, Preference.customer_id == customer_id),
            (Suppression, Suppression.email == email),
            (Hold, Hold.customer_id == customer_id),
            (Event, or_(Event.customer_id == customer_id,
                        (Event.customer_id.is_(None)) & (Event.received_at >= now - BROADCAST_EVENTS))),
            (Journey, or_(Journey.customer_id == customer_id, Journey.id.in_(member_journeys))),
            (Member, Member.customer_id == customer_id),
            (Delivery, Delivery.customer_id == customer_id),
            (TouchpointVersion, None),
        ]
        copied = []
        for model, where in queries:
            table = model.__table__
            query = select(table) if where is None else select(table).where(where)
            copied.append((table, [dict(row._mapping) for row in read.execute(query)]))
    with target.session() as write:
        for table, rows in copied:
            if rows:
                write.execute(table.insert(), rows)
