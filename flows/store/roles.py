"""Least privilege on PostgreSQL: an owner role that migrates, an app role that works.

* The **owner** role owns every table, sequence and function of the store and runs the
  migrations (``TOUCHPOINTS_MIGRATION_DATABASE_URL``). It is not a superuser.
* The **app** role is what ``serve``, the web app and the commands connect as
  (``TOUCHPOINTS_DATABASE_URL``). It owns nothing, so it cannot ``ALTER``, ``DROP`` or switch
  triggers off; on ``audit`` it may only ``SELECT`` and ``INSERT``; on ``holds`` it may also
  ``DELETE`` (cancelled journeys lift their holds); on every other table ``SELECT``, ``INSERT``
  and ``UPDATE``; no ``TRUNCATE`` anywhere; ``USAGE, SELECT`` on the sequences.

``setup_roles`` (``touchpoints db setup-roles``) makes both roles, hands the objects to the
owner and grants the app its rights; it is idempotent. The owner's *default privileges* name
the app role, so a table a later migration creates gets only ``SELECT, INSERT`` at once, and
``grant_app_rights`` (run by the migration environment after every upgrade) sets each table's
exact rights for every role the owner's default privileges name.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from flows.errors import StoreError

#: what the app role may do, per table; tables not listed get DEFAULT_RIGHTS
APP_RIGHTS: dict[str, tuple[str, ...]] = {
    "audit": ("SELECT", "INSERT"),
    "alembic_version": ("SELECT",),
    "holds": ("SELECT", "INSERT", "UPDATE", "DELETE"),
}
DEFAULT_RIGHTS = ("SELECT", "INSERT", "UPDATE")
#: what a table made by a later migration gets before grant_app_rights sets its exact rights
NEW_TABLE_RIGHTS = ("SELECT", "INSERT")
SEQUENCE_RIGHTS = ("USAGE", "SELECT")
DEFAULT_OWNER, DEFAULT_APP = "touchpoints_owner", "touchpoints_app"
SETUP_HINT = ("run `touchpoints db setup-roles --admin-url <superuser URL>` and use the two URLs "
              "it prints (see docs/operations.md, \"Database roles\")")
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class RoleUrls:
    """The URLs ``setup_roles`` leaves behind: the app's and the migrations'."""

    app_url: str
    migration_url: str


def app_rights(table: str) -> tuple[str, ...]:
    return APP_RIGHTS.get(table, DEFAULT_RIGHTS)


def store_tables() -> list[str]:
    """The tables of the store (those migrations make), alembic_version included."""
    from flows.store.tables import Base

    return sorted([*Base.metadata.tables, "alembic_version"])


def _check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or name.startswith("pg_"):
        raise StoreError(f"{name!r} is not a usable name for the {what} role",
                         hint="use lower-case letters, digits and _, e.g. touchpoints_app")
    return name


def _pg_url(url: str) -> str:
    """A libpq URL (postgresql://…) for psycopg from any SQLAlchemy PostgreSQL URL."""
    from flows.store.db import normalise_url

    parsed = normalise_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise StoreError(f"database roles are a PostgreSQL feature; {parsed.get_backend_name()} "
                         "has none", hint="on SQLite the data folder's file modes protect the "
                                          "store (see docs/operations.md, \"Data at rest\")")
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def setup_roles(admin_url: str, *, owner: str = DEFAULT_OWNER, app: str = DEFAULT_APP,
                owner_password: str | None = None, app_password: str | None = None,
                schema: str = "public") -> RoleUrls:
    """Make (or update) the owner and app roles, hand the store's objects to the owner and grant
    the app role its rights, all in one transaction, as the admin of ``admin_url`` (a
    superuser, or a role with CREATEROLE that is a member of the current owners). Passwords
    not given are made up. Returns the URLs to configure."""
    import psycopg
    from psycopg import sql

    _check_name(owner, "owner")
    _check_name(app, "app")
    if owner == app:
        raise StoreError("the owner and the app role must be two roles",
                         hint=f"e.g. --owner {DEFAULT_OWNER} --app {DEFAULT_APP}")
    owner_password = owner_password or secrets.token_urlsafe(24)
    app_password = app_password or secrets.token_urlsafe(24)
    from flows.store.db import display_url

    try:
        connection = psycopg.connect(_pg_url(admin_url), connect_timeout=10)
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to {display_url(admin_url)} as admin: "
                         f"{str(exc).strip().splitlines()[0]}",
                         hint="give --admin-url a superuser's URL for the store's database") from None
    try:
        with connection.transaction(), connection.cursor() as cur:
            me, database = cur.execute("SELECT current_user, current_database()").fetchone()
            for role in (owner, app):
                if role == me:
                    raise StoreError(f"the role {role} is the admin you connected as",
                                     hint="connect as a superuser and name two other roles")
                row = cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s",
                                  (role,)).fetchone()
                if row is not None and row[0]:
                    raise StoreError(f"the role {role} is a superuser",
                                     hint="name roles that are not, e.g. "
                                          f"--owner {DEFAULT_OWNER} --app {DEFAULT_APP}")
            for role, password in ((owner, owner_password), (app, app_password)):
                exists = cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
                verb = sql.SQL("ALTER ROLE" if exists else "CREATE ROLE")
                cur.execute(sql.SQL("{} {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                                    "NOBYPASSRLS PASSWORD {}").format(
                    verb, sql.Identifier(role), sql.Literal(password)))
            _organise(cur, database=database, schema=schema, owner=owner, app=app)
    except psycopg.Error as exc:
        raise StoreError(f"setting up the roles failed: {str(exc).strip().splitlines()[0]}",
                         hint="connect --admin-url as a superuser of the store's database") from None
    finally:
        connection.close()
    base = make_url(admin_url)
    return RoleUrls(
        app_url=base.set(username=app, password=app_password).render_as_string(hide_password=False),
        migration_url=base.set(username=owner, password=owner_password)
        .render_as_string(hide_password=False))


def _organise(cur, *, database: str, schema: str, owner: str, app: str) -> None:
    from psycopg import sql

    o, a, s = sql.Identifier(owner), sql.Identifier(app), sql.Identifier(schema)
    # the app role inherits nothing that could own the tables
    for member_of in cur.execute(
            "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
            "JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = %s", (app,)).fetchall():
        cur.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(member_of[0]), a))
    cur.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(
        sql.Identifier(database), o))
    cur.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), a))
    cur.execute(sql.SQL("REVOKE CREATE ON SCHEMA {} FROM PUBLIC").format(s))
    cur.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM {}").format(s, a))
    cur.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA {} TO {}").format(s, o))
    cur.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(s, a))
    # tables first: their sequences (serial, identity) follow them
    for kinds, noun in (("rpvmf", "TABLE"), ("S", "SEQUENCE")):
        names = cur.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind = ANY(%s) AND c.relowner <> "
            "(SELECT oid FROM pg_roles WHERE rolname = %s)",
            (schema, list(kinds), owner)).fetchall()
        for (name,) in names:
            cur.execute(sql.SQL("ALTER {} {}.{} OWNER TO {}").format(
                sql.SQL(noun), s, sql.Identifier(name), o))
    for (signature,) in cur.execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n "
            "ON n.oid = p.pronamespace WHERE n.nspname = %s AND p.proowner <> "
            "(SELECT oid FROM pg_roles WHERE rolname = %s)", (schema, owner)).fetchall():
        cur.execute(sql.SQL("ALTER FUNCTION {} OWNER TO {}").format(sql.SQL(signature), o))
    cur.execute(sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT {} ON TABLES "
                        "TO {}").format(o, s, sql.SQL(", ".join(NEW_TABLE_RIGHTS)), a))
    cur.execute(sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT {} ON SEQUENCES "
                        "TO {}").format(o, s, sql.SQL(", ".join(SEQUENCE_RIGHTS)), a))
    _grant(cur, schema=schema, app=app)


def _grant(cur, *, schema: str, app: str) -> None:
    """Set the app role's exact rights on every store table and sequence present."""
    from psycopg import sql

    s, a = sql.Identifier(schema), sql.Identifier(app)
    cur.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(s, a))
    cur.execute(sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA {} FROM {}").format(s, a))
    present = {name for (name,) in cur.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)).fetchall()}
    for table in store_tables():
        if table in present:
            cur.execute(sql.SQL("GRANT {} ON {}.{} TO {}").format(
                sql.SQL(", ".join(app_rights(table))), s, sql.Identifier(table), a))
    cur.execute(sql.SQL("GRANT {} ON ALL SEQUENCES IN SCHEMA {} TO {}").format(
        sql.SQL(", ".join(SEQUENCE_RIGHTS)), s, a))


def grant_app_rights(connection) -> list[str]:
    """After a migration, as the owner: give every app role (those the current user's default
    privileges grant to) its exact rights on the tables now present. Returns the roles."""
    if connection.dialect.name != "postgresql":
        return []
    schema = connection.exec_driver_sql("SELECT current_schema()").scalar() or "public"
    apps = connection.execute(text(
        "SELECT DISTINCT r.rolname FROM pg_default_acl d "
        "JOIN pg_namespace n ON n.oid = d.defaclnamespace, aclexplode(d.defaclacl) x "
        "JOIN pg_roles r ON r.oid = x.grantee "
        "WHERE d.defaclrole = (SELECT oid FROM pg_roles WHERE rolname = current_user) "
        "AND n.nspname = :schema AND d.defaclobjtype = 'r'"), {"schema": schema}).scalars().all()
    if not apps:
        return []
    cursor = connection.connection.driver_connection.cursor()
    try:
        for app in apps:
            _grant(cursor, schema=schema, app=app)
    finally:
        cursor.close()
    return list(apps)


def migrate(store, settings) -> None:
    """Bring ``store`` to the newest schema: as the owner of
    ``TOUCHPOINTS_MIGRATION_DATABASE_URL`` when that is set, else as the store's own role."""
    migration_url = getattr(settings, "migration_database_url", None)
    if store.dialect != "postgresql":  # SQLite has no roles: the file's owner migrates it
        migration_url = None
    if not migration_url or store.current_revision() == store.head_revision():
        migrate_as(store)
        return
    from flows.store.db import Store

    owner = Store(migration_url)
    try:
        migrate_as(owner)
    finally:
        owner.dispose()


def migrate_as(store) -> None:
    """``store.migrate_if_needed()``, with a role that may not change the schema (the app
    role, with no migration URL set) refused in words, not a traceback."""
    try:
        store.migrate_if_needed()
    except DBAPIError as exc:
        if getattr(getattr(exc, "orig", None), "sqlstate", None) != "42501":
            raise
        from flows.store.db import display_url

        raise StoreError(
            f"the schema of {display_url(store.url)} is behind, and its role may not change it: "
            f"{str(exc.orig).strip().splitlines()[0]}",
            hint="migrate as the owner role: set TOUCHPOINTS_MIGRATION_DATABASE_URL (printed by "
                 "`touchpoints db setup-roles`) and run `touchpoints db migrate`") from None


def privilege_warning(store) -> str | None:
    """One line when the store's role could undo the audit trail's protection (it is a
    superuser, or owns or may act as the owner of the audit table), else None."""
    if store.dialect != "postgresql":
        return None
    with store.engine.connect() as connection:
        row = connection.execute(text(
            "SELECT r.rolsuper, c.relowner IS NOT NULL "
            "AND pg_has_role(current_user, c.relowner, 'MEMBER'), current_user "
            "FROM pg_roles r LEFT JOIN pg_class c ON c.oid = to_regclass('audit') "
            "WHERE r.rolname = current_user")).one()
    superuser, owns_audit, role = row
    if superuser:
        why = "is a superuser"
    elif owns_audit:
        why = "owns the audit table"
    else:
        return None
    return (f"warning: the database role {role} {why}, so it could alter or drop the audit "
            f"trail; {SETUP_HINT}")


def startup_checks(settings) -> list[str]:
    """What ``serve`` does first with the store: seal signing secrets still stored in the
    clear, and warn (one line each) about a privileged database role."""
    from flows.keys import seal_clear_secrets
    from flows.store.db import open_store

    store = open_store(settings)
    lines = []
    try:
        with store.session() as session:
            sealed = seal_clear_secrets(session, secret_key=settings.signing_key())
        if sealed:
            lines.append(f"sealed {sealed} API key signing secret(s) that were stored in the "
                         "clear; rotate them if old backups of the database may leak")
    except (StoreError, SQLAlchemyError) as exc:  # a role without UPDATE: first use seals them
        lines.append(f"warning: could not seal the API keys' signing secrets: {exc}")
    warning = privilege_warning(store)
    if warning:
        lines.append(warning)
    return lines
