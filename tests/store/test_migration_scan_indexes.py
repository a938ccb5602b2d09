"""Migration 0005 adds the indexes of the housekeeping scans and the alert checks to a database
that has rows in it already, on SQLite and PostgreSQL, and takes them away again on downgrade;
the housekeeping queries on members, events and tasks search them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import event, inspect, text

from flows.store.db import Store
from tests.fixtures.store import fresh_postgres_database

NEW = {"customers": {"ix_customers_contract_end", "ix_customers_contract_start",
                     "ix_customers_last_contact"},
       "events": {"ix_events_status", "ix_events_count"},
       "members": {"ix_member_due"},
       "tasks": {"ix_tasks_status"}}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_at_0004(request, tmp_path):
    def at_0004(url):
        store = Store(url)
        store.migrate("0004")
        return store

    if request.param == "sqlite":
        store = at_0004(f"sqlite:///{tmp_path / 'old.db'}")
        yield store
        store.dispose()
    else:
        with fresh_postgres_database("scan_indexes") as url:
            store = at_0004(url)
            yield store
            store.dispose()


def indexes(store: Store) -> dict[str, set[str]]:
    found = inspect(store.engine)
    return {table: {ix["name"] for ix in found.get_indexes(table)} for table in NEW}


def test_upgrading_a_database_with_customers_adds_the_scan_indexes_and_downgrade_drops_them(
        store_at_0004):
    store = store_at_0004
    with store.engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO customers (id, name, email, timezone, contract_end, attributes, "
            "created_at, updated_at) VALUES ('C-1', 'Ada', 'ada@example.com', 'UTC', :end, '{}', "
            ":at, :at)"), {"end": date(2027, 3, 1), "at": datetime(2026, 1, 1, tzinfo=UTC)})
    assert all(not (NEW[table] & names) for table, names in indexes(store).items())

    store.migrate()

    assert store.current_revision() == store.head_revision()
    assert all(NEW[table] <= names for table, names in indexes(store).items())
    with store.engine.connect() as connection:
        assert connection.execute(text("SELECT id FROM customers WHERE contract_end >= :d"),
                                  {"d": date(2027, 1, 1)}).scalars().all() == ["C-1"]
    store.downgrade("0004")
    assert all(not (NEW[table] & names) for table, names in indexes(store).items())


def test_the_alert_checks_escalations_and_redispatch_search_indexes_not_whole_tables(
        sqlite_store, tmp_path):
    from flows.actions import escalate_overdue
    from flows.config import load_config
    from flows.engine.alert_checks import stalled_tasks, stuck_members, undispatched_events
    from flows.engine.core import Engine
    from flows.engine.dispatch import Dispatcher
    from flows.settings import Settings

    repo = Path(__file__).resolve().parents[2]
    engine = Engine(Settings(data_dir=tmp_path / "data", config_file=repo / "touchpoints.yaml",
                             secret_key="test"),
                    config=load_config(repo / "touchpoints.yaml"), store=sqlite_store)
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    statements = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and any(
                f" {table}" in statement for table in ("members", "events", "tasks")):
            statements.append((statement, parameters))

    event.listen(sqlite_store.engine, "before_cursor_execute", seen)
    try:
        for check in (stuck_members, undispatched_events, stalled_tasks):
            check(engine, now=now, wall=now)
        escalate_overdue(engine, now=now)
        Dispatcher(engine, None).redispatch_stuck()
    finally:
        event.remove(sqlite_store.engine, "before_cursor_execute", seen)

    with sqlite_store.engine.connect() as connection:
        plans = [" | ".join(row[3] for row in connection.exec_driver_sql(
            f"EXPLAIN QUERY PLAN {statement}", parameters)) for statement, parameters in statements]
    assert len(plans) >= 5, plans
    for plan in plans:
        assert not any(f"SCAN {table}" in plan for table in ("members", "events", "tasks")), plan
    used = " ".join(plans)
    assert {"ix_member_due", "ix_events_status", "ix_tasks_status"} <= {
        name for name in NEW["members"] | NEW["events"] | NEW["tasks"] if name in used}
