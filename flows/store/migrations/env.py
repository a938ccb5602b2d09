"""Alembic environment of the Touchpoints store.

Works from an installed package: ``Store.migrate()`` builds the Alembic config in code and
hands over an open connection in ``config.attributes["connection"]``. Run by hand (for
``alembic revision --autogenerate`` in a source checkout), it uses ``sqlalchemy.url`` from the
config, else the configured store (``TOUCHPOINTS_DATABASE_URL`` / the SQLite file in the data
folder)::

    alembic -c flows/store/migrations/alembic.ini revision --autogenerate -m "what changed"

Concurrent migrations queue: on PostgreSQL behind a transaction-level advisory lock, on SQLite
behind the ``BEGIN IMMEDIATE`` write lock. The current revision is read after the lock is held,
so the second process finds the schema already at head and does nothing.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from flows.store.tables import Base, UTCDateTime

#: pg_advisory_xact_lock key for migrations ("tp-migr" in ASCII)
MIGRATION_LOCK_KEY = 0x74702D6D69677200

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from flows.settings import get_settings

    return get_settings().store_url


def _render_item(kind: str, obj, _autogen_context):
    """Autogenerate writes the models' UTCDateTime as the column type it decorates, so
    migrations do not import the models."""
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _configure(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite",
                      transactional_ddl=True, compare_type=True, render_item=_render_item)


def _run(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
        context.run_migrations()
        if connection.dialect.name == "postgresql":  # the app role's exact rights on new tables
            from flows.store.roles import grant_app_rights

            grant_app_rights(connection)


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from flows.store.db import Store

    store = Store(_url())
    try:
        with store.engine.begin() as connection:
            _run(connection)
    finally:
        store.dispose()


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True,
                      dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
