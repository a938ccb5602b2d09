"""Helpers for the store tests: tampering with the audit table the way someone with the
database owner's rights could, and writing customer files."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flows.store.db import Store

CSV_HEADER = "id,name,email,timezone,region,plan,contract_start,contract_end,account_owner,unsubscribed"


@contextmanager
def past_the_guard(store: Store) -> Iterator:
    """A connection on which UPDATE and DELETE of audit rows work: the append-only trigger is
    switched off (PostgreSQL, as the owner) or dropped (SQLite) for the changes made in it."""
    with store.engine.begin() as connection:
        if store.dialect == "postgresql":
            connection.exec_driver_sql("ALTER TABLE audit DISABLE TRIGGER audit_append_only")
        else:
            connection.exec_driver_sql("DROP TRIGGER IF EXISTS audit_refuse_update")
            connection.exec_driver_sql("DROP TRIGGER IF EXISTS audit_refuse_delete")
        yield connection
        if store.dialect == "postgresql":
            connection.exec_driver_sql("ALTER TABLE audit ENABLE TRIGGER audit_append_only")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def csv_file(path: Path, *rows: str, header: str = CSV_HEADER) -> Path:
    return write(path, "\n".join([header, *rows]) + "\n")
