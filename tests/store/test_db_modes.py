"""The SQLite store at rest: its folder is 0700 and the database file, its -wal and -shm are
0600 from the start, whatever the umask; files and folders left too open are narrowed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from flows.store.db import Store, forget_store, open_store


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask():
    old = os.umask(0)
    yield
    os.umask(old)


def companions(database: Path) -> list[Path]:
    return sorted(p for p in database.parent.iterdir() if p.name.startswith(database.name))


def test_a_new_sqlite_store_is_0600_with_its_wal_and_shm(tmp_path, open_umask):
    database = tmp_path / "new" / "touchpoints.db"
    store = Store(f"sqlite:///{database}")
    try:
        store.migrate()
        with store.session() as session:  # keeps the WAL and shared memory open
            session.connection().exec_driver_sql("SELECT 1")
            found = companions(database)
            assert [p.name for p in found] == ["touchpoints.db", "touchpoints.db-shm",
                                               "touchpoints.db-wal"]
            assert {p.name: mode(p) for p in found} == {p.name: 0o600 for p in found}
        assert mode(database.parent) == 0o700
    finally:
        store.dispose()


def test_open_store_narrows_an_existing_open_data_folder_and_database(tmp_path, monkeypatch):
    from flows.settings import Settings

    data = tmp_path / "data"
    database = data / "touchpoints.db"
    Store(f"sqlite:///{database}").migrate()
    os.chmod(data, 0o755)
    for path in companions(database):
        os.chmod(path, 0o644)
    journal = data / "touchpoints.db-journal"  # as a rollback journal left by older SQLite use
    journal.write_bytes(b"")
    os.chmod(journal, 0o644)
    settings = Settings(data_dir=data, database_url=f"sqlite:///{database}",
                        config_file=tmp_path / "touchpoints.yaml")
    try:
        open_store(settings)
        assert mode(data) == 0o700
        assert {p.name: mode(p) for p in companions(database)} == \
            {p.name: 0o600 for p in companions(database)}
    finally:
        forget_store(settings.store_url)


def test_the_database_file_does_not_hold_the_customers_for_others_to_read(sqlite_store):
    """Guards the modes above from the other side: the file really holds customer data."""
    from flows.store.tables import Customer

    with sqlite_store.session() as session:
        session.add(Customer(id="C-1", name="Ada Lovelace", email="ada@example.com",
                             timezone="UTC", attributes={}))
    database = Path(sqlite_store.engine.url.database)
    contents = b"".join(p.read_bytes() for p in companions(database))
    assert b"ada@example.com" in contents
    assert mode(database) == 0o600 and not mode(database) & (stat.S_IRGRP | stat.S_IROTH)
