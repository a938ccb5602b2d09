"""SQLite's write lock: a writer waits for it in even steps (not SQLite's back-off, which let
newcomers overtake a writer that had waited long), gets it as soon as the holder commits, and
a lock held past the busy timeout is the store's "stayed locked" error, as before."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from sqlalchemy import text

from flows.errors import StoreError
from flows.store import db
from flows.store.db import Store


@pytest.fixture
def store(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'lock.db'}")
    with store.session() as session:
        session.execute(text("CREATE TABLE t (n INTEGER)"))
    yield store
    store.dispose()


def _holder(store) -> sqlite3.Connection:
    other = sqlite3.connect(store.engine.url.database, isolation_level=None,
                            check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    return other


def test_a_writer_gets_the_lock_as_soon_as_its_holder_commits(store):
    other = _holder(store)
    released = []

    def release():
        time.sleep(0.3)
        released.append(time.monotonic())
        other.execute("COMMIT")

    threading.Thread(target=release).start()
    with store.session() as session:
        session.execute(text("INSERT INTO t VALUES (1)"))  # begins: waits for the lock
        got = time.monotonic()
    assert released and 0 <= got - released[0] < 0.1  # not 100 ms steps behind
    with store.session() as session:  # the busy timeout is back for every other statement
        assert session.execute(text("PRAGMA busy_timeout")).scalar() == db.SQLITE_BUSY_TIMEOUT_MS


def test_a_lock_held_past_the_timeout_is_the_stayed_locked_error(store, monkeypatch):
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_MS", 300)
    other = _holder(store)
    started = time.monotonic()
    with pytest.raises(StoreError, match="stayed locked"), store.session() as session:
        session.execute(text("INSERT INTO t VALUES (1)"))
    assert 0.3 <= time.monotonic() - started < 5
    other.execute("COMMIT")
    with store.session() as session:
        session.execute(text("INSERT INTO t VALUES (2)"))
        assert session.execute(text("SELECT count(*) FROM t")).scalar() == 1
