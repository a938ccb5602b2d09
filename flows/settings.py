"""Configuration from the environment (``TOUCHPOINTS_*``), with embedded defaults.

Embedded defaults: SQLite under ``./data``, the local mail catcher on 127.0.0.1:8025, and a
Prefect server on 127.0.0.1. See docs/operations.md for every variable.
"""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOUCHPOINTS_", extra="ignore")

    data_dir: Path = Field(Path("data"), description="Folder for the SQLite store, mailbox and Prefect home.")
    config_file: Path = Field(Path("touchpoints.yaml"), description="The touch-point file.")
    database_url: str | None = Field(None, description="SQLAlchemy URL of the store; default SQLite in data_dir.")
    migration_database_url: str | None = Field(
        None, description="PostgreSQL: URL of the owner role that runs migrations (from "
        "`touchpoints db setup-roles`); the app then connects as database_url's role.")
    smtp_url: str | None = Field(
        None,
        description="smtp://user:pass@host:port or smtps://…; add ?starttls=1 for STARTTLS. "
        "Unset means the embedded mail catcher on 127.0.0.1:catcher_port.",
    )
    catcher_port: int = Field(8025, description="Port of the embedded mail catcher.")
    secret_key: str | None = Field(None, description="Signs survey, task and unsubscribe links.")
    base_url: str = Field("http://127.0.0.1:8000", description="Public URL of the web app, used in links.")
    web_host: str = "127.0.0.1"
    web_port: int = 8000
    prefect_port: int = 4200
    prefect_host: str = Field("127.0.0.1", description="Where the Prefect server that serve "
                              "starts listens (0.0.0.0 for workers on other machines).")
    batch_size: int = Field(500, description="Recipients handled by one Prefect task run.")
    start_batch: int = Field(
        50, description="Queued journey starts of one touch point (one customer each) that "
        "share one Prefect flow run; 1 gives every start a run of its own.")
    wave_size: int = Field(
        1000, description="Members of a fan-out walked through the steps together: each wave "
        "is a unit of work of its own, run by whichever worker is free.")
    smtp_retries: int = Field(3, description="Attempts for a temporary (4xx) SMTP failure.")
    smtp_backoff_seconds: float = Field(2.0, description="First back-off after a 4xx; doubles each retry.")
    smtp_timeout_seconds: float = 30.0
    roles: str = Field(
        "web,worker,housekeeping",
        description="What this serve instance runs: web (app and intake), worker (flow runs), "
        "housekeeping (triggers and re-drive; one instance at a time). Comma-separated.")
    work_pool: str | None = Field(
        None, description="Prefect process work pool that `touchpoints deploy` registers the "
        "touch points to and workers pull from; unset: a runner in serve's own process group.")
    worker_limit: int = Field(4, description="Flow runs one worker (or runner) runs at once.")
    prefect_database_url: str | None = Field(
        None, description="PostgreSQL URL for the Prefect server that serve starts (default: "
        "SQLite in prefect_home).")
    prefect_redis_url: str | None = Field(
        None, description="redis://host:port/db for the Prefect server's messaging, so its API "
        "can have replicas (needs prefect_database_url).")
    audit_key: str | None = Field(
        None, description="Keys the audit chain (HMAC); default derived from the secret key.")
    audit_previous_keys: list[str] = Field(
        default_factory=list,
        description="Audit keys used before the current one, oldest first (key rotation).")
    audit_checkpoint_seconds: float = Field(
        300.0, description="How often serve writes a signed audit checkpoint.")
    audit_checkpoint_sink: str | None = Field(
        None, description="Where checkpoints are also sent, comma-separated: syslog://host:514, "
        "syslog+tcp://host:601, syslog:///dev/log, http(s)://... (POST JSON).")
    auth_failure_window_seconds: float = Field(
        60.0, description="Window of the failed-authentication limits and of their audit rows.")
    auth_failures_per_key: int = Field(
        10, description="Failed authentications per key id and window before answers are 429.")
    auth_failures_per_address: int = Field(
        30, description="Failed authentications per client address and window before 429.")
    team_link_days: int = Field(30, description="Days a team task-list link stays valid.")
    web_login: Literal["auto", "always"] = Field(
        "auto", description="auto: /mail and team task lists need an operator login unless the "
        "web app listens on loopback; always: they need it everywhere (e.g. behind a proxy).")

    @property
    def templates_dir(self) -> Path:
        return self.config_file.parent / "templates"

    @property
    def store_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'touchpoints.db').resolve()}"

    @property
    def mailbox_dir(self) -> Path:
        return self.data_dir / "mailbox"

    @property
    def prefect_home(self) -> Path:
        return self.data_dir / "prefect"

    @property
    def embedded_mail(self) -> bool:
        return not self.smtp_url

    @property
    def effective_smtp_url(self) -> str:
        return self.smtp_url or f"smtp://127.0.0.1:{self.catcher_port}"

    def signing_key(self) -> str:
        """The secret for signed links: from the environment, else one kept in data_dir."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret.key"
        if not path.exists():
            from flows.private import private_dir, write_private

            private_dir(path.parent)
            write_private(path, secrets.token_urlsafe(48), exclusive=True)
        return path.read_text().strip()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings (tests change the environment)."""
    get_settings.cache_clear()
