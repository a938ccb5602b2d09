"""Where the parts of `touchpoints serve` run: its roles, the Prefect work pool its workers
pull from, and the environment of a Prefect server on PostgreSQL with Redis messaging.

One machine (the default): ``serve`` runs every role in one process group, with its own Prefect
server and a runner serving the touch points. Several machines: every instance shares one
PostgreSQL store and one Prefect server; ``touchpoints deploy`` registers the touch points to a
process work pool once, and each instance runs the roles it is given:

* ``web``: the web app and the event intake (an outbox: events are stored, Prefect is not called);
* ``worker``: a Prefect process worker on the pool (or, without a pool, a runner);
* ``housekeeping``: triggers, escalations, launching queued units and re-driving dead ones. It
  runs on one instance at a time, under a lock (see flows/service/lock.py); the others stand by.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from flows.errors import ServiceError
from flows.settings import Settings

ROLES = ("web", "worker", "housekeeping")


@dataclass(frozen=True)
class Topology:
    roles: frozenset[str]
    work_pool: str | None

    @property
    def everything(self) -> bool:
        return self.roles == frozenset(ROLES)

    def has(self, role: str) -> bool:
        return role in self.roles

    def describe(self) -> str:
        roles = ", ".join(r for r in ROLES if r in self.roles)
        pool = f"work pool {self.work_pool!r}" if self.work_pool else "a runner in this process group"
        return f"roles {roles}; flow runs through {pool}"


def parse_roles(text: str) -> frozenset[str]:
    names = [part.strip().lower() for part in text.replace(" ", ",").split(",") if part.strip()]
    unknown = sorted(set(names) - set(ROLES))
    if unknown or not names:
        raise ServiceError(f"unknown serve role(s): {', '.join(unknown) or '(none given)'}",
                          hint=f"use a comma-separated list of {', '.join(ROLES)} "
                               "(TOUCHPOINTS_ROLES or --roles); the default is all three")
    return frozenset(names)


def topology(settings: Settings, roles: str | None = None) -> Topology:
    """The topology for these settings, refused when a split one lacks what it needs to share
    the work: one store, one secret key, both from the environment."""
    chosen = parse_roles(roles or settings.roles)
    result = Topology(roles=chosen, work_pool=settings.work_pool)
    if result.everything and not result.work_pool:
        return result
    missing = []
    if not settings.secret_key:
        missing.append("TOUCHPOINTS_SECRET_KEY (every instance signs and checks the same links)")
    if not settings.database_url:
        missing.append("TOUCHPOINTS_DATABASE_URL (every instance shares one store)")
    if missing:
        raise ServiceError(f"serve with {result.describe()} needs settings from the environment: "
                          + "; ".join(missing),
                          hint="see docs/operations.md, 'Several machines'")
    if not result.everything and not result.work_pool:
        raise ServiceError(f"serve with {result.describe()} needs a Prefect work pool to share "
                           "flow runs between instances",
                           hint="set TOUCHPOINTS_WORK_POOL=touchpoints on every instance and run "
                                "`touchpoints deploy` once")
    if not result.everything and not settings.smtp_url:
        raise ServiceError("a split serve needs TOUCHPOINTS_SMTP_URL: the embedded mail catcher "
                           "belongs to one machine",
                           hint="point every instance at your mail relay (smtp://host:port)")
    if not result.everything and settings.store_url.startswith("sqlite"):
        raise ServiceError("a split serve needs a PostgreSQL store: SQLite cannot be shared "
                          "between machines",
                          hint="set TOUCHPOINTS_DATABASE_URL=postgresql+psycopg://…")
    return result


def prefect_server_env(settings: Settings) -> dict[str, str]:
    """Environment for a Prefect server on PostgreSQL with Redis messaging, so its API can
    have replicas; empty for the embedded SQLite server."""
    env: dict[str, str] = {}
    if settings.prefect_database_url:
        url = settings.prefect_database_url
        scheme = urlsplit(url).scheme
        if scheme in ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2"):
            url = "postgresql+asyncpg" + url[len(scheme):]
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = url
    if settings.prefect_redis_url:
        parts = urlsplit(settings.prefect_redis_url)
        database = (parts.path or "/0").lstrip("/") or "0"
        env.update({
            "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
            "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
            "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
            "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
            "PREFECT_REDIS_MESSAGING_HOST": parts.hostname or "127.0.0.1",
            "PREFECT_REDIS_MESSAGING_PORT": str(parts.port or 6379),
            "PREFECT_REDIS_MESSAGING_DB": database,
        })
    return env
