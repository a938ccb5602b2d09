"""An engine wired to a real store (SQLite and PostgreSQL), a real SMTP server on 127.0.0.1
and the session's real Prefect test server, loaded with the shipped touchpoints.yaml and the
sample customers."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CUSTOMERS = REPO / "docs" / "examples" / "customers.csv"


def sample_customers() -> list[dict]:
    with CUSTOMERS.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


class Clock:
    """Engine time the test controls: starts at a fixed weekday morning in London."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> datetime:
        from datetime import timedelta

        self.now = self.now + timedelta(**delta)
        return self.now


@pytest.fixture
def clock(monkeypatch):
    from flows import clock as clock_module

    fake = Clock(datetime(2026, 11, 24, 10, 0, tzinfo=UTC))  # a Tuesday, 10:00 London
    monkeypatch.setattr(clock_module, "now", fake)
    return fake


def make_engine(config_file: Path, smtp_url: str, monkeypatch, store):
    from flows.engine.compiler import forget_compiled
    from flows.engine.core import Engine, set_engine
    from flows.settings import get_settings, reset_settings

    monkeypatch.setenv("TOUCHPOINTS_SMTP_URL", smtp_url)
    monkeypatch.setenv("TOUCHPOINTS_CONFIG_FILE", str(config_file))
    monkeypatch.setenv("TOUCHPOINTS_SMTP_BACKOFF_SECONDS", "0.01")
    monkeypatch.setenv("TOUCHPOINTS_DATABASE_URL", store.url)
    reset_settings()
    engine = Engine(get_settings(), store=store)
    set_engine(engine)
    forget_compiled()
    return engine


@pytest.fixture
def engine(store, smtp_server, prefect_server, clock, tmp_path, monkeypatch):
    """The shipped touch points on ``store`` (both databases) with the sample customers."""
    from flows.engine.compiler import forget_compiled
    from flows.engine.core import set_engine
    from flows.settings import reset_settings
    from flows.store.customers import import_customers

    monkeypatch.setenv("TOUCHPOINTS_DATA_DIR", str(tmp_path / "data"))
    engine = make_engine(REPO / "touchpoints.yaml", smtp_server.url, monkeypatch, store)
    import_customers(store, CUSTOMERS, actor="test")
    yield engine
    set_engine(None)
    forget_compiled()
    reset_settings()


@pytest.fixture
def emit(engine):
    """emit(type, customer_id=None, **data) through the real dispatcher and Prefect."""
    from flows.engine.dispatch import Dispatcher
    from flows.engine.launch import InProcessLauncher

    dispatcher = Dispatcher(engine, InProcessLauncher())

    def _emit(event_type: str, customer_id: str | None = None, event_id: str | None = None, **data):
        example = dict(engine.config.event_types()[event_type].example or {})
        return dispatcher.emit(type=event_type, customer_id=customer_id, data={**example, **data},
                               event_id=event_id, source="test", actor="test")

    _emit.dispatcher = dispatcher
    return _emit
