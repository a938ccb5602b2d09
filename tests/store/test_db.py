"""The Store: sessions, SQLite made safe for several processes, open_store and its errors."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select

from flows.errors import StoreError
from flows.store import audit
from flows.store.db import Store, display_url, normalise_url, open_store
from flows.store.tables import Customer


def add(store, customer_id: str) -> None:
    with store.session() as session:
        session.add(Customer(id=customer_id, name="Ada", email="ada@example.com",
                             timezone="Europe/London", attributes={}))


def ids(store) -> list[str]:
    with store.session() as session:
        return list(session.scalars(select(Customer.id).order_by(Customer.id)))


def test_a_session_commits_when_the_block_ends_and_rolls_back_when_it_raises(store):
    add(store, "C-1")
    with pytest.raises(RuntimeError), store.session() as session:
        session.add(Customer(id="C-2", name="Bo", email="bo@example.com", timezone="UTC",
                             attributes={}))
        session.flush()
        raise RuntimeError("boom")
    assert ids(store) == ["C-1"]


def test_rows_stay_readable_after_the_session_ends(store):
    add(store, "C-1")
    with store.session() as session:
        row = session.get(Customer, "C-1")
    with store.read_session() as session:
        read = session.get(Customer, "C-1")
    assert row.name == read.name == "Ada" and read.created_at.tzinfo is not None


def test_sqlite_runs_in_wal_mode_with_foreign_keys_and_a_busy_timeout(sqlite_store):
    with sqlite_store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000


def test_sqlite_write_transactions_take_the_write_lock_when_they_begin(sqlite_store):
    """BEGIN IMMEDIATE: a second writer waits at BEGIN, before it has read anything, so two
    writers can never both read the last audit hash."""
    other = Store(sqlite_store.url)
    order: list[str] = []
    try:
        with sqlite_store.session() as session:
            session.get(Customer, "nobody")  # the transaction has begun

            def second_writer() -> None:
                with other.session() as s:
                    s.get(Customer, "nobody")
                    order.append("second began")

            thread = threading.Thread(target=second_writer)
            thread.start()
            time.sleep(0.3)
            order.append("first still open")
        thread.join(10)
        assert order == ["first still open", "second began"]
    finally:
        other.dispose()


def test_a_read_session_on_sqlite_does_not_hold_up_writers(sqlite_store):
    writer = Store(sqlite_store.url)
    done = threading.Event()
    try:
        with sqlite_store.read_session() as session:
            session.execute(select(Customer.id)).all()

            def write() -> None:
                add(writer, "C-9")
                done.set()

            thread = threading.Thread(target=write)
            thread.start()
            assert done.wait(5), "the writer waited for the reader"
            thread.join()
    finally:
        writer.dispose()
    assert ids(sqlite_store) == ["C-9"]


def test_open_store_creates_the_data_folder_migrates_and_returns_the_same_store(tmp_path, monkeypatch):
    from flows.settings import Settings
    from flows.store.db import forget_store

    settings = Settings(data_dir=tmp_path / "new" / "data")
    store = open_store(settings)
    try:
        assert (tmp_path / "new" / "data" / "touchpoints.db").exists()
        assert store.current_revision() == store.head_revision()
        assert open_store(settings) is store
        with store.session() as session:
            audit.record(session, action="x", result="ok", actor=audit.SYSTEM)
    finally:
        forget_store(store.url)


def test_an_unreachable_postgres_gives_a_store_error_with_a_hint(tmp_path):
    from flows.settings import Settings

    settings = Settings(data_dir=tmp_path,
                        database_url="postgresql://tp:secret@127.0.0.1:1/touchpoints")
    with pytest.raises(StoreError) as caught:
        open_store(settings)
    error = caught.value
    assert "cannot reach the database postgresql+psycopg://tp:***@127.0.0.1:1/touchpoints" in error.message
    assert "secret" not in str(error)
    assert "TOUCHPOINTS_DATABASE_URL" in error.hint and "127.0.0.1:1" in error.hint


def test_a_malformed_url_gives_a_store_error(tmp_path):
    from flows.settings import Settings

    with pytest.raises(StoreError, match="not a database URL"):
        open_store(Settings(data_dir=tmp_path, database_url="no way"))
    with pytest.raises(StoreError, match="cannot use the database URL"):
        open_store(Settings(data_dir=tmp_path, database_url="nosuchdb://x/y"))


def test_a_data_folder_that_cannot_be_made_gives_a_store_error(tmp_path):
    from flows.settings import Settings

    (tmp_path / "taken").write_text("a file, not a folder")
    with pytest.raises(StoreError, match="cannot create the data folder") as caught:
        open_store(Settings(data_dir=tmp_path / "taken" / "data"))
    assert "TOUCHPOINTS_DATA_DIR" in caught.value.hint
    with pytest.raises(StoreError, match="for the SQLite store"):
        Store(f"sqlite:///{tmp_path / 'taken' / 'x' / 'store.db'}")


def test_bare_postgresql_urls_use_psycopg_3_and_passwords_are_hidden():
    assert normalise_url("postgresql://u:p@h/db").drivername == "postgresql+psycopg"
    assert display_url("postgres://u:p@h/db") == "postgresql+psycopg://u:***@h/db"


def test_ping_answers_for_a_live_store_and_explains_a_dead_one(store):
    store.ping()
    dead = Store("postgresql+psycopg://tp@127.0.0.1:1/touchpoints")
    try:
        with pytest.raises(StoreError, match="cannot reach the database"):
            dead.ping()
    finally:
        dead.dispose()
