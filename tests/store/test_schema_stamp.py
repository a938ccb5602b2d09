"""The schema stamp `serve` hands its children (TOUCHPOINTS_SCHEMA_HEAD): a flow-run process
opening a store at the newest revision reads that revision and nothing more (no Alembic), and
a stamp that does not hold (the database behind, the scripts changed) is no excuse to skip a
migration."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows.store.db import SCHEMA_HEAD_ENV, Store

REPO = Path(__file__).resolve().parents[2]
OPEN = """
import sys
from flows.store.db import Store
store = Store(sys.argv[1])
store.migrate_if_needed()
print("alembic loaded" if "alembic" in sys.modules else "no alembic")
print(store.current_revision() == store.head_revision())
"""


@pytest.fixture
def store(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    store.migrate_if_needed()
    yield store
    store.dispose()


def open_in_a_child(store: Store, stamp: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env[SCHEMA_HEAD_ENV] = stamp
    done = subprocess.run([sys.executable, "-c", OPEN, store.url], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=True)
    return done.stdout.split("\n")[:2]


def test_a_child_of_serve_opens_a_store_at_the_stamped_head_without_alembic(store):
    assert open_in_a_child(store, store.schema_stamp()) == ["no alembic", "True"]


def test_a_database_behind_the_stamp_is_migrated_all_the_same(store, monkeypatch):
    monkeypatch.setenv(SCHEMA_HEAD_ENV, store.schema_stamp())
    head = store.head_revision()
    store.downgrade("-1")

    store.migrate_if_needed()

    assert store.current_revision() == head


def test_a_stamp_from_other_migration_scripts_is_no_excuse_to_skip_a_migration(store, monkeypatch):
    head = store.head_revision()
    store.downgrade("-1")
    older = store.current_revision()
    monkeypatch.setenv(SCHEMA_HEAD_ENV, f"{older} 0123456789abcdef")  # stamped before `head`

    store.migrate_if_needed()

    assert store.current_revision() == head


def test_a_database_not_at_the_newest_revision_gets_no_stamp(store):
    store.downgrade("-1")
    assert store.schema_stamp() is None
