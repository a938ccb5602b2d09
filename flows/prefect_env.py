"""Environment for Prefect, set before ``import prefect`` anywhere in the process."""

from __future__ import annotations

import os

from flows.settings import Settings

DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_API_SERVICES_TRIGGERS_ENABLED": "true",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_UI_ENABLED": "true",
}


def configure(settings: Settings) -> None:
    """Point Prefect at a home under the data folder unless the user chose otherwise."""
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
    home = settings.prefect_home.resolve()
    from flows.private import private_dir

    private_dir(settings.data_dir)  # the data folder is 0700, made here at the first command
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str(home))
    if "PREFECT_API_URL" not in os.environ:
        # a running `touchpoints serve` owns the Prefect server: use it instead of an ephemeral one
        from flows.cli.remote import find_service, prefect_api_url

        api = prefect_api_url(find_service(settings, timeout=1.0))
        if api:
            os.environ["PREFECT_API_URL"] = api
