"""On PostgreSQL the app connects as a role that cannot undo the audit trail: `touchpoints db
setup-roles` makes an owner role (which migrates) and an app role that may only INSERT and
SELECT audit rows, while the engine's own work still goes through as that role."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from flows.errors import StoreError
from flows.store import roles
from flows.store.db import Store
from tests.fixtures.store import ADMIN_URL, fresh_postgres_database

REPO = Path(__file__).resolve().parents[2]
CUSTOMERS = REPO / "docs" / "examples" / "customers.csv"


@contextmanager
def role_names() -> Iterator[tuple[str, str]]:
    """Two role names no other test uses; the roles are dropped afterwards (they are
    cluster-wide). Use it outside the database's own `with`, so the database goes first."""
    tag = f"{os.getpid()}_{secrets.token_hex(3)}"
    names = (f"tp_test_owner_{tag}", f"tp_test_app_{tag}")
    try:
        yield names
    finally:
        admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
        with suppress(Exception), admin.connect() as connection:
            for name in reversed(names):
                connection.exec_driver_sql(f'DROP ROLE IF EXISTS "{name}"')
        admin.dispose()


@pytest.fixture
def roles_database() -> Iterator[tuple[str, roles.RoleUrls, tuple[str, str]]]:
    """A fresh database with both roles set up; not yet migrated."""
    with role_names() as (owner, app), fresh_postgres_database("roles") as url:
        urls = roles.setup_roles(url, owner=owner, app=app)
        yield url, urls, (owner, app)


@pytest.fixture(scope="module")
def migrated():
    """Roles set up, then migrated as the owner; yields a Store connected as the app role."""
    with role_names() as (owner, app), fresh_postgres_database("roles_migrated") as url:
        urls = roles.setup_roles(url, owner=owner, app=app)
        owner_store = Store(urls.migration_url)
        owner_store.migrate()
        owner_store.dispose()
        app_store = Store(urls.app_url)
        yield app_store, urls, (owner, app)
        app_store.dispose()


REFUSED = [
    "UPDATE audit SET reason = 'rewritten'",
    "DELETE FROM audit",
    "TRUNCATE audit",
    "ALTER TABLE audit DISABLE TRIGGER audit_append_only",
    "ALTER TABLE audit DISABLE TRIGGER ALL",
    "DROP TRIGGER audit_append_only ON audit",
    "DROP TABLE audit",
    "SET session_replication_role = replica",
    "CREATE OR REPLACE FUNCTION touchpoints_audit_append_only() RETURNS trigger "
    "LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$",
    "LOCK TABLE audit IN ACCESS EXCLUSIVE MODE",
    "ALTER TABLE audit OWNER TO CURRENT_USER",
    "TRUNCATE journeys",
    "DELETE FROM journeys",
    "ALTER TABLE journeys ADD COLUMN sneaky text",
    "CREATE TABLE sneaky (a int)",
    "UPDATE alembic_version SET version_num = 'x'",
]


@pytest.mark.postgres
@pytest.mark.parametrize("statement", REFUSED)
def test_the_app_role_is_refused_what_could_undo_the_audit_trail(migrated, statement):
    app_store, _, _ = migrated
    with app_store.engine.connect() as connection:
        with pytest.raises(DBAPIError) as caught:
            connection.exec_driver_sql(statement)
        assert caught.value.orig.sqlstate == "42501", caught.value  # insufficient_privilege
        connection.rollback()


@pytest.mark.postgres
def test_the_owner_owns_every_table_and_the_app_role_nothing(migrated):
    app_store, _, (owner, app) = migrated
    with app_store.engine.connect() as connection:
        owners = dict(connection.execute(text(
            "SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public'")).all())
        assert set(owners) == set(roles.store_tables())
        assert set(owners.values()) == {owner}
        rights = dict(connection.execute(text(
            "SELECT table_name, string_agg(privilege_type, ',' ORDER BY privilege_type) "
            "FROM information_schema.role_table_grants WHERE grantee = :app GROUP BY 1"),
            {"app": app}).all())
    assert rights["audit"] == "INSERT,SELECT"
    assert rights["alembic_version"] == "SELECT"
    assert rights["holds"] == "DELETE,INSERT,SELECT,UPDATE"
    assert rights["journeys"] == "INSERT,SELECT,UPDATE"
    assert not any("TRUNCATE" in r or "TRIGGER" in r for r in rights.values())


@pytest.mark.postgres
def test_the_engines_work_goes_through_as_the_app_role(roles_database, tmp_path, monkeypatch):
    """A real slice: open_store migrates as the owner, then as the app role customers are
    imported, an event is taken in, a journey entered and cancelled (members and tasks
    updated, holds deleted), an API key made and revoked, each with its audit row."""
    from flows import clock
    from flows.engine.cancel import cancel_journey
    from flows.engine.core import Engine
    from flows.engine.dispatch import Dispatcher
    from flows.engine.journeys import JourneyOps
    from flows.engine.launch import InProcessLauncher
    from flows.keys import create_key, revoke_key
    from flows.settings import get_settings, reset_settings
    from flows.store.customers import import_customers
    from flows.store.db import forget_store, open_store
    from flows.store.tables import AuditRow, Journey, Member

    _, urls, (_, app) = roles_database
    monkeypatch.setenv("TOUCHPOINTS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TOUCHPOINTS_CONFIG_FILE", str(REPO / "touchpoints.yaml"))
    monkeypatch.setenv("TOUCHPOINTS_DATABASE_URL", urls.app_url)
    monkeypatch.setenv("TOUCHPOINTS_MIGRATION_DATABASE_URL", urls.migration_url)
    reset_settings()
    try:
        store = open_store(get_settings())
        assert store.current_revision() == store.head_revision()
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT current_user").scalar() == app
        assert roles.privilege_warning(store) is None
        import_customers(store, CUSTOMERS, actor="test")
        engine = Engine(get_settings(), store=store)
        taken = Dispatcher(engine, InProcessLauncher(), outbox=True).emit(
            type="contract.signed", customer_id="C-1001", data={"plan": "Fibre 500"})
        assert taken.event_id
        sale = engine.config.touchpoints["sale"]
        with store.session() as session:
            entered = JourneyOps(engine).enter(
                session, touchpoint=sale, event={"id": "evt-roles", "type": "contract.signed",
                                                 "customer_id": "C-1002", "data": {}},
                customer_id="C-1002", flow_run_id=None, now=clock.now())
        cancelled = cancel_journey(engine, entered["journey_id"], actor="test",
                                   reason="roles test", prefect=False)
        assert cancelled["members"] == 1
        with store.session() as session:
            key_id, _, _ = create_key(session, "crm", actor="test")
            revoke_key(session, key_id, actor="test")
        with store.read_session() as session:
            assert session.get(Journey, entered["journey_id"]).status == "cancelled"
            assert session.scalar(select(Member.status).where(
                Member.journey_id == entered["journey_id"])) == "cancelled"
            actions = set(session.scalars(select(AuditRow.action)))
        assert {"journey.started", "journey.cancelled", "apikey.created",
                "apikey.revoked"} <= actions
    finally:
        forget_store(urls.app_url)
        reset_settings()


@pytest.mark.postgres
def test_setting_up_again_changes_nothing_and_hands_over_tables_an_app_role_owned(tmp_path):
    """The issue's starting point: the app's role made and owns the tables. Setting up roles
    with that very role as the app role takes its ownership away; running it twice is fine."""
    with role_names() as (owner, app), fresh_postgres_database("handover") as url:
        admin = Store(url)
        with admin.engine.begin() as connection:
            connection.exec_driver_sql(f'CREATE ROLE "{app}" LOGIN')
            connection.exec_driver_sql(f'GRANT ALL ON SCHEMA public TO "{app}"')
        admin.dispose()
        as_app = Store(make_url(url).set(username=app))
        as_app.migrate()  # the old way: the app role owns what it made
        assert "owns the audit table" in roles.privilege_warning(as_app)
        as_app.dispose()

        roles.setup_roles(url, owner=owner, app=app, app_password="one")
        urls = roles.setup_roles(url, owner=owner, app=app, app_password="two")
        assert ":two@" in urls.app_url
        app_store = Store(urls.app_url)
        try:
            assert roles.privilege_warning(app_store) is None
            with app_store.engine.connect() as connection, pytest.raises(DBAPIError):
                connection.exec_driver_sql("DROP TABLE audit")
        finally:
            app_store.dispose()


@pytest.mark.postgres
def test_a_superuser_gets_the_warning_at_serve_start(postgres_store):
    warning = roles.privilege_warning(postgres_store)
    assert warning.startswith("warning: the database role ") and "is a superuser" in warning
    assert "touchpoints db setup-roles" in warning and "\n" not in warning


def test_sqlite_has_no_roles_and_no_warning(sqlite_store):
    assert roles.privilege_warning(sqlite_store) is None
    with pytest.raises(StoreError, match="PostgreSQL feature"):
        roles.setup_roles(sqlite_store.url, owner="a_owner", app="a_app")


@pytest.mark.postgres
@pytest.mark.parametrize("owner, app", [("same", "same"), ("Bad-Name", "ok_app"),
                                        ("ok_owner", "pg_sneaky"), ("postgres", "ok_app")])
def test_unusable_role_names_are_refused_with_a_hint(owner, app):
    with pytest.raises(StoreError) as caught:
        roles.setup_roles(ADMIN_URL, owner=owner, app=app)
    assert caught.value.hint


@pytest.mark.postgres
def test_the_command_prints_the_two_urls_and_migrates(tmp_path):
    from typer.testing import CliRunner

    from flows.cli import _register_all
    from flows.cli import app as cli

    _register_all()
    with role_names() as (owner, app), fresh_postgres_database("cli") as url:
        result = CliRunner().invoke(cli, ["db", "setup-roles", "--admin-url", url, "--owner",
                                          owner, "--app", app, "--json"])
        assert result.exit_code == 0, result.output
        urls = json.loads(result.output)
        assert f"//{app}:" in urls["TOUCHPOINTS_DATABASE_URL"]
        assert f"//{owner}:" in urls["TOUCHPOINTS_MIGRATION_DATABASE_URL"]
        app_store = Store(urls["TOUCHPOINTS_DATABASE_URL"])
        try:
            assert app_store.current_revision() == app_store.head_revision()
            with app_store.engine.connect() as connection, pytest.raises(DBAPIError):
                connection.exec_driver_sql("TRUNCATE audit")
        finally:
            app_store.dispose()


def test_serve_start_seals_clear_secrets_and_warns_about_a_privileged_role(store_settings,
                                                                          store):
    from flows.keys import create_key, is_sealed
    from flows.store.tables import ApiKey

    with store.session() as session:
        key_id, _, _ = create_key(session, "legacy", actor="test")
        session.get(ApiKey, key_id).hmac_secret = "whsec_stored_in_the_clear"
    lines = roles.startup_checks(store_settings)
    assert lines[0].startswith("sealed 1 API key signing secret(s)")
    with store.read_session() as session:
        assert is_sealed(session.get(ApiKey, key_id).hmac_secret)
    if store.dialect == "postgresql":  # the tests connect as a superuser
        assert len(lines) == 2 and "touchpoints db setup-roles" in lines[1]
    else:
        assert len(lines) == 1
    assert roles.startup_checks(store_settings) == lines[1:]


def _grants_and_owners(url: str, app: str) -> tuple[dict, set]:
    store = Store(url)
    try:
        with store.engine.connect() as connection:
            grants = dict(connection.execute(text(
                "SELECT table_name, string_agg(privilege_type, ',' ORDER BY privilege_type) "
                "FROM information_schema.role_table_grants WHERE grantee = :app GROUP BY 1"),
                {"app": app}).all())
            owners = set(connection.execute(text(
                "SELECT tableowner FROM pg_tables WHERE schemaname = 'public'")).scalars())
        return grants, owners
    finally:
        store.dispose()


@pytest.mark.postgres
def test_the_shipped_sql_file_sets_up_the_same_rights_as_the_command(migrated):
    """docs/examples/roles.sql, run with psql on a store migrated the old way (as a
    superuser), leaves the same owner and grants as setup_roles did for ``migrated``."""
    import shutil
    import subprocess

    psql = shutil.which("psql")
    assert psql, "psql is needed to run docs/examples/roles.sql"
    by_command = _grants_and_owners(migrated[1].app_url, migrated[2][1])[0]
    with role_names() as (owner, app), fresh_postgres_database("sql_file") as url:
        old = Store(url)
        old.migrate()
        old.dispose()
        libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        for _ in range(2):  # safe to run again
            done = subprocess.run(
                [psql, libpq, "-q", "-v", f"owner={owner}", "-v", f"app={app}",
                 "-v", "owner_password=o'ne", "-v", "app_password=a'pp",
                 "-f", str(REPO / "docs" / "examples" / "roles.sql")],
                capture_output=True, text=True, timeout=60, check=False)
            assert done.returncode == 0, done.stderr
        grants, owners = _grants_and_owners(url, app)
    assert owners == {owner}
    assert grants == by_command and grants["audit"] == "INSERT,SELECT"


@pytest.mark.postgres
def test_the_app_role_alone_cannot_migrate_and_is_told_how(roles_database, tmp_path,
                                                           monkeypatch):
    from typer.testing import CliRunner

    from flows.cli import _register_all
    from flows.cli import app as cli
    from flows.settings import Settings, reset_settings
    from flows.store.db import forget_store, open_store

    _, urls, _ = roles_database
    settings = Settings(data_dir=tmp_path / "data", database_url=urls.app_url)
    with pytest.raises(StoreError) as caught:
        open_store(settings)
    assert "may not change it" in caught.value.message
    assert "TOUCHPOINTS_MIGRATION_DATABASE_URL" in caught.value.hint
    forget_store(urls.app_url)

    _register_all()
    monkeypatch.setenv("TOUCHPOINTS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TOUCHPOINTS_DATABASE_URL", urls.app_url)
    monkeypatch.setenv("TOUCHPOINTS_MIGRATION_DATABASE_URL", urls.migration_url)
    reset_settings()
    try:
        first = CliRunner().invoke(cli, ["db", "migrate"])
        assert first.exit_code == 0 and "from schema empty to" in first.output, first.output
        assert "is up to date" in CliRunner().invoke(cli, ["db", "migrate"]).output
        store = open_store()  # now the app role works without migrating
        assert store.current_revision() == store.head_revision()
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql(
                "SELECT has_table_privilege('audit', 'UPDATE')").scalar() is False
    finally:
        forget_store(urls.app_url)
        reset_settings()


def test_a_sqlite_store_ignores_a_migration_url(tmp_path):
    from flows.settings import Settings
    from flows.store.db import forget_store, open_store

    settings = Settings(data_dir=tmp_path / "data",
                        migration_database_url="postgresql://nobody@127.0.0.1:1/elsewhere")
    try:
        store = open_store(settings)
        assert store.dialect == "sqlite" and store.current_revision() == store.head_revision()
    finally:
        forget_store(settings.store_url)
