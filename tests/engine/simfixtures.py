"""The shipped touch points on a SQLite store with the sample customers, for simulations:
no Prefect server, no SMTP server (a simulation needs neither)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CUSTOMERS = REPO / "docs" / "examples" / "customers.csv"
#: a Tuesday, 10:00 in London
TUESDAY = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


@pytest.fixture
def sim_engine(settings, sqlite_store, monkeypatch):
    from flows.engine.core import Engine, set_engine
    from flows.settings import get_settings, reset_settings
    from flows.store.customers import import_customers

    monkeypatch.setenv("TOUCHPOINTS_CONFIG_FILE", str(REPO / "touchpoints.yaml"))
    monkeypatch.setenv("TOUCHPOINTS_SMTP_URL", "smtp://127.0.0.1:9")  # nothing listens there
    reset_settings()
    engine = Engine(get_settings(), store=sqlite_store)
    set_engine(engine)
    import_customers(sqlite_store, CUSTOMERS, actor="test")
    yield engine
    set_engine(None)
    reset_settings()
