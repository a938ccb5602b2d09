"""The CLI tests use the page tests' engine (SQLite store, a recording launcher) and their
service served by uvicorn, as `touchpoints serve` would."""

from tests.web.conftest import app, client, dispatcher, engine, launcher  # noqa: F401
from tests.web.test_api_remote import local, server  # noqa: F401
