"""Fixtures for the page tests: a real engine on the SQLite store, the real Dispatcher with a
launcher that records instead of running Prefect, and the app under FastAPI's TestClient."""

from __future__ import annotations

import pytest

from tests.web.support import RecordingLauncher


@pytest.fixture
def engine(settings, sqlite_store):
    from flows.engine.core import Engine

    return Engine(settings, store=sqlite_store)


@pytest.fixture
def launcher():
    return RecordingLauncher()


@pytest.fixture
def dispatcher(engine, launcher):
    from flows.engine.dispatch import Dispatcher

    return Dispatcher(engine, launcher)


@pytest.fixture
def app(engine, dispatcher):
    from flows.web.app import create_app

    return create_app(engine, dispatcher)


@pytest.fixture
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        yield client
