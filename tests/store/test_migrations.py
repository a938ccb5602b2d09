"""Migration 0001 builds exactly the tables of flows/store/tables.py, on SQLite and PostgreSQL,
and installs the guard that makes the database itself refuse to change audit rows."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import delete, inspect, text, update
from sqlalchemy.exc import IntegrityError

from flows.errors import StoreError
from flows.store import audit
from flows.store.db import Store
from flows.store.tables import AuditRow, Base
from tests.fixtures.store import fresh_postgres_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request, tmp_path):
    """The URL of a brand-new, empty database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
    else:
        with fresh_postgres_database("migrations") as url:
            yield url


def diffs(store: Store, metadata: sa.MetaData = Base.metadata) -> list:
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, metadata)


def test_upgrade_creates_every_table_and_matches_the_models(empty_url):
    store = Store(empty_url)
    try:
        assert store.current_revision() is None
        store.migrate()
        assert store.current_revision() == store.head_revision() is not None
        tables = set(inspect(store.engine).get_table_names()) - {"alembic_version"}
        assert tables == set(Base.metadata.tables)
        assert diffs(store) == []
    finally:
        store.dispose()


def test_the_model_comparison_would_notice_a_difference(sqlite_store):
    """Guards the test above: compare_metadata does report a column the database lacks."""
    changed = sa.MetaData()
    for table in Base.metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["customers"].append_column(sa.Column("nickname", sa.String(50)))
    found = diffs(sqlite_store, changed)
    assert [d[0] for d in found] == ["add_column"] and found[0][3].name == "nickname"


def test_downgrade_removes_everything_and_upgrade_is_repeatable(empty_url):
    store = Store(empty_url)
    try:
        store.migrate()
        store.migrate()  # at head already: nothing to do, no error
        store.downgrade("base")
        assert set(inspect(store.engine).get_table_names()) <= {"alembic_version"}
        store.migrate()
        assert diffs(store) == []
    finally:
        store.dispose()


def _migrate(url: str) -> str | None:
    store = Store(url)
    try:
        store.migrate_if_needed()
        return store.current_revision()
    finally:
        store.dispose()


def test_processes_migrating_one_database_at_once_all_succeed(empty_url):
    """The service and a CLI command may both find a new database and migrate it."""
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        assert pool.map(_migrate, [empty_url] * 3) == [Store(empty_url).head_revision()] * 3
    store = Store(empty_url)
    try:
        assert diffs(store) == []
    finally:
        store.dispose()


def _one_row(store: Store) -> None:
    with store.session() as session:
        audit.record(session, action="test.done", result="ok", actor=audit.SYSTEM,
                     at=datetime(2026, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize("statement", [
    update(AuditRow).values(reason="changed"),
    delete(AuditRow),
    delete(AuditRow).where(AuditRow.seq == 1),
], ids=["update", "delete-all", "delete-one"])
def test_the_database_refuses_to_change_or_delete_audit_rows(store, statement):
    _one_row(store)
    with pytest.raises(IntegrityError, match="append-only"), store.session() as session:
        session.execute(statement)
    with store.session() as session:
        assert [r.reason for r in audit.query(session)] == [""]


@pytest.mark.postgres
def test_postgres_refuses_truncate_of_the_audit_table(postgres_store):
    _one_row(postgres_store)
    with pytest.raises(IntegrityError, match="TRUNCATE on table audit is refused"), \
            postgres_store.session() as session:
        session.execute(text("TRUNCATE audit"))
    with postgres_store.session() as session:
        assert len(audit.query(session)) == 1


def test_a_database_from_a_newer_version_is_refused(sqlite_store):
    with sqlite_store.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(StoreError, match="revision 9999") as caught:
        sqlite_store.migrate_if_needed()
    assert "upgrade Touchpoints" in caught.value.hint
