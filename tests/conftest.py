"""Root conftest: fixtures live in tests/fixtures/, one module per subsystem."""

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

pytest_plugins = [
    "tests.fixtures.store",
    "tests.fixtures.mail",
    "tests.fixtures.prefect",
]
