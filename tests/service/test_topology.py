"""Serve's roles: all three on one machine by default; a split instance is refused unless it
has what several instances need to share the work (a work pool, one PostgreSQL store, one
secret key and a mail relay, all from the environment)."""

from __future__ import annotations

import pytest

from flows.errors import ServiceError
from flows.service.topology import ROLES, parse_roles, prefect_server_env, topology
from flows.settings import Settings

SHARED = {"secret_key": "s" * 40, "database_url": "postgresql+psycopg://app@db/touchpoints",
          "smtp_url": "smtp://relay:25", "work_pool": "touchpoints"}


def test_the_default_runs_every_role_in_one_process_group():
    chosen = topology(Settings())
    assert chosen.everything and chosen.roles == frozenset(ROLES) and chosen.work_pool is None


def test_roles_are_read_from_a_comma_separated_list_in_any_case():
    assert parse_roles("Web, worker") == {"web", "worker"}
    assert parse_roles("housekeeping") == {"housekeeping"}


@pytest.mark.parametrize("text", ["", "web,scheduler", ","])
def test_an_unknown_or_empty_role_list_is_refused_with_the_known_roles(text):
    with pytest.raises(ServiceError) as caught:
        parse_roles(text)
    assert "web, worker, housekeeping" in caught.value.hint


def test_a_split_instance_names_every_setting_it_lacks():
    with pytest.raises(ServiceError) as caught:
        topology(Settings(work_pool="touchpoints"), "worker")
    assert "TOUCHPOINTS_SECRET_KEY" in caught.value.message
    assert "TOUCHPOINTS_DATABASE_URL" in caught.value.message


def test_a_split_instance_needs_a_work_pool_a_relay_and_postgresql():
    with pytest.raises(ServiceError, match="work pool"):
        topology(Settings(**{**SHARED, "work_pool": None}), "worker")
    with pytest.raises(ServiceError, match="SMTP_URL"):
        topology(Settings(**{**SHARED, "smtp_url": None}), "web")
    with pytest.raises(ServiceError, match="PostgreSQL"):
        topology(Settings(**{**SHARED, "database_url": "sqlite:///x.db"}), "housekeeping")


def test_a_split_instance_with_shared_settings_is_accepted():
    chosen = topology(Settings(**SHARED), "worker,housekeeping")
    assert chosen.roles == {"worker", "housekeeping"} and chosen.work_pool == "touchpoints"
    assert "work pool 'touchpoints'" in chosen.describe()


def test_the_prefect_server_runs_on_postgresql_with_redis_messaging_when_configured():
    env = prefect_server_env(Settings(prefect_database_url="postgresql+psycopg://p@db:5432/prefect",
                                      prefect_redis_url="redis://cache:6380/2"))
    assert env["PREFECT_API_DATABASE_CONNECTION_URL"] == "postgresql+asyncpg://p@db:5432/prefect"
    assert env["PREFECT_MESSAGING_BROKER"] == "prefect_redis.messaging"
    assert env["PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"] == "prefect_redis.lease_storage"
    assert (env["PREFECT_REDIS_MESSAGING_HOST"], env["PREFECT_REDIS_MESSAGING_PORT"],
            env["PREFECT_REDIS_MESSAGING_DB"]) == ("cache", "6380", "2")
    assert prefect_server_env(Settings()) == {}
