"""Group commit (the outbox's writer): callers that wait together share one transaction, each
gets its own result once it is committed, a failed transaction fails every caller of it and
stores nothing, and the writer thread goes when idle."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from flows.engine.groupcommit import GroupCommit
from flows.store.db import Store


@pytest.fixture
def store(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'gc.db'}")
    with store.session() as session:
        session.execute(text("CREATE TABLE t (n INTEGER PRIMARY KEY)"))
    yield store
    store.dispose()


def _stored(store) -> list[int]:
    with store.session() as session:
        return list(session.scalars(text("SELECT n FROM t ORDER BY n")))


def _insert(session, items):
    for n in items:
        session.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})
    return [n * 10 for n in items]


def _submit_all(writer, items) -> tuple[dict, list[threading.Thread]]:
    results: dict = {}

    def call(n):
        try:
            results[n] = writer.submit(n)
        except Exception as exc:  # noqa: BLE001 - what the caller got
            results[n] = exc

    threads = [threading.Thread(target=call, args=(n,)) for n in items]
    for thread in threads:
        thread.start()
    return results, threads


def test_callers_waiting_together_share_one_transaction_and_each_gets_its_own_result(store):
    first_in, go = threading.Event(), threading.Event()
    batches: list[list[int]] = []

    def write(session, items):
        batches.append(list(items))
        if len(batches) == 1:  # hold the first transaction open while the others arrive
            first_in.set()
            go.wait(10)
        return _insert(session, items)

    writer = GroupCommit(store.session, write)
    results, threads = _submit_all(writer, [1])
    assert first_in.wait(10)
    more, more_threads = _submit_all(writer, [2, 3, 4, 5])
    while len(writer._pending) < 4:
        time.sleep(0.01)
    go.set()
    for thread in threads + more_threads:
        thread.join(10)
    assert batches == [[1], sorted(batches[1])] and sorted(batches[1]) == [2, 3, 4, 5]
    assert {**results, **more} == {1: 10, 2: 20, 3: 30, 4: 40, 5: 50}
    assert _stored(store) == [1, 2, 3, 4, 5]
    assert (writer.batches, writer.items) == (2, 5)


def test_a_failed_transaction_fails_every_caller_of_it_and_stores_none(store):
    first_in, go = threading.Event(), threading.Event()

    def write(session, items):  # the first key twice in one batch: the insert fails
        first_in.set()
        go.wait(10)
        return _insert(session, [*items, items[0]])

    writer = GroupCommit(store.session, write)
    results, threads = _submit_all(writer, [7])
    assert first_in.wait(10)
    more, more_threads = _submit_all(writer, [8, 9])
    while len(writer._pending) < 2:
        time.sleep(0.01)
    go.set()
    for thread in threads + more_threads:
        thread.join(10)
    answers = {**results, **more}
    assert all(isinstance(answers[n], IntegrityError) for n in (7, 8, 9))
    assert _stored(store) == []


def test_an_item_the_write_refuses_gets_its_own_error_and_the_others_their_results(store):
    def write(session, items):
        return [ValueError(f"{n} refused") if n == 2 else _insert(session, [n])[0]
                for n in items]

    writer = GroupCommit(store.session, write)
    assert writer.submit(1) == 10
    with pytest.raises(ValueError, match="2 refused"):
        writer.submit(2)
    assert _stored(store) == [1]


def test_the_writer_thread_goes_when_idle_and_comes_back_for_the_next_caller(store):
    writer = GroupCommit(store.session, _insert, idle_s=0.05)
    assert writer.submit(1) == 10
    deadline = time.monotonic() + 5
    while writer._thread is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer._thread is None
    assert writer.submit(2) == 20
    assert _stored(store) == [1, 2]
