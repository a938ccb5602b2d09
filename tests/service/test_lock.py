"""Housekeeping runs on one instance at a time: a second instance stands by, and takes over
as soon as the holder lets go or dies (its connection or file lock goes with it)."""

from __future__ import annotations

import time

import pytest

from flows.service.lock import HousekeepingLock
from flows.store.db import Store


@pytest.fixture
def second_store(store):
    """Another instance: its own engine (connections) on the same database."""
    other = Store(store.url)
    yield other
    other.dispose()


def test_only_one_instance_holds_the_housekeeping_lock(store, second_store):
    first, second = HousekeepingLock(store), HousekeepingLock(second_store)
    try:
        assert first.held()
        assert first.held()  # keeps it
        assert not second.held()
        first.release()
        assert second.held()
        assert not first.held()
    finally:
        first.release()
        second.release()


@pytest.mark.postgres
def test_a_lost_connection_frees_the_lock_for_a_standby(postgres_store):
    other = Store(postgres_store.url)
    first, second = HousekeepingLock(postgres_store), HousekeepingLock(other)
    try:
        assert first.held() and not second.held()
        first._connection.invalidate()  # as when the holder is killed: its session ends
        first._connection = None
        # the server ends the dead session (and frees its advisory lock) a moment after the
        # socket closes; a standby tries again at each tick, as this does
        deadline = time.monotonic() + 10
        while not second.held() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert second.held()
        assert not first.held()
    finally:
        first.release()
        second.release()
        other.dispose()
