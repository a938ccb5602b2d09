"""The store: one SQLAlchemy engine and session factory per database URL, and its migrations.

SQLite is made safe for several processes (the service, the web app and CLI commands at once):
WAL journal, foreign keys on, a busy timeout, and every write transaction opened with
``BEGIN IMMEDIATE`` so two writers queue instead of failing half-way (the SQLAlchemy pysqlite
recipe). The SQLite file is created 0600 before SQLite opens it, so its -wal and -shm files
are 0600 too; existing ones are narrowed when a Store opens them. PostgreSQL is used through
psycopg 3 (``postgresql+psycopg://``).

``open_store(settings)`` is what commands and the service call: it creates the data folder
(0700; an existing one is narrowed), migrates the database to the newest schema if needed
(as the owner role of TOUCHPOINTS_MIGRATION_DATABASE_URL when set, flows/store/roles.py), and
keeps one Store per URL.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    InterfaceError,
    NoSuchModuleError,
    OperationalError,
)
from sqlalchemy.orm import Session, sessionmaker

from flows.errors import StoreError
from flows.private import DIR_MODE, FILE_MODE, make_private, private_dir

if TYPE_CHECKING:  # pragma: no cover
    from alembic.config import Config

    from flows.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: seconds between tries for SQLite's write lock (see ``_begin_immediate``)
WRITE_LOCK_POLL_S = 0.002
PG_CONNECT_TIMEOUT_S = 10
#: the SQLite file and the files SQLite keeps next to it, all 0600
SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")

URL_HINT = ("set TOUCHPOINTS_DATABASE_URL to a reachable database, e.g. "
            "postgresql+psycopg://user:password@host:5432/touchpoints, "
            "or unset it to use SQLite in the data folder")


def normalise_url(url: str | URL) -> URL:
    """Parse a database URL; a bare ``postgresql://`` means psycopg 3 (the driver we ship)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(f"not a database URL: {url!s}", hint=URL_HINT) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def display_url(url: str | URL) -> str:
    """The URL with any password hidden, for messages."""
    return normalise_url(url).render_as_string(hide_password=True)


class Store:
    """An engine and a session factory for one database URL."""

    def __init__(self, url: str | URL, *, echo: bool = False) -> None:
        parsed = normalise_url(url)
        self.url: str = parsed.render_as_string(hide_password=False)
        self.dialect: str = parsed.get_backend_name()
        self.engine: Engine = _create_engine(parsed, echo=echo)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        readonly_engine = (self.engine.execution_options(sqlite_begin="DEFERRED")
                           if self.dialect == "sqlite" else self.engine)
        self._read_sessions = sessionmaker(readonly_engine, expire_on_commit=False)

    def __repr__(self) -> str:
        return f"Store({display_url(self.url)!r})"

    # ------------------------------------------------------------------ sessions
    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed when the block ends, rolled back if it
        raises. On SQLite the transaction takes the write lock when it begins."""
        yield from self._transaction(self._sessions, commit=True)

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A session for long reads (listing, ``audit verify``): on SQLite it does not take the
        write lock, so writers are not held up. Nothing is committed: the transaction ends
        when the block does (rows read stay usable, detached). Do not write in it."""
        yield from self._transaction(self._read_sessions, commit=False)

    def _transaction(self, factory: sessionmaker, *, commit: bool) -> Iterator[Session]:
        session = factory()
        try:
            with self.reporting_errors():
                try:
                    yield session
                    if commit:
                        session.commit()
                except BaseException:
                    session.rollback()
                    raise
        finally:
            session.close()

    @contextmanager
    def reporting_errors(self) -> Iterator[None]:
        """Turn errors of the surroundings (server gone, file locked or unreadable) into a
        StoreError that says what to do; other database errors pass through unchanged."""
        try:
            yield
        except (OperationalError, InterfaceError) as exc:
            if not is_environment_error(exc):
                raise
            raise store_error(self.url, exc) from exc

    # ------------------------------------------------------------------ schema
    def alembic_config(self) -> Config:
        """An Alembic config built in code: no alembic.ini is needed on disk."""
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        return config

    def head_revision(self) -> str | None:
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(self.alembic_config()).get_current_head()

    def current_revision(self) -> str | None:
        from alembic.migration import MigrationContext

        with self.reporting_errors(), self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def migrate(self, revision: str = "head") -> None:
        """Run Alembic ``upgrade`` to ``revision`` (concurrent callers queue on a lock)."""
        from alembic import command

        config = self.alembic_config()
        with self.reporting_errors(), self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

    def downgrade(self, revision: str) -> None:
        from alembic import command

        config = self.alembic_config()
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, revision)

    def migrate_if_needed(self) -> None:
        """Migrate to the newest schema unless the database is there already. A process that
        `serve` started knows the newest revision from SCHEMA_HEAD_ENV (checked against the
        migration scripts on disk), so it only reads the database's revision: no Alembic."""
        if self._at_stamped_head():
            return
        current, head = self.current_revision(), self.head_revision()
        if current == head:
            return
        from alembic.script import ScriptDirectory

        scripts = ScriptDirectory.from_config(self.alembic_config())
        known = {script.revision for script in scripts.walk_revisions()}
        if current is not None and current not in known:
            raise StoreError(
                f"the database {display_url(self.url)} is at schema revision {current}, "
                "which this version of Touchpoints does not know",
                hint="it was migrated by a newer Touchpoints: upgrade Touchpoints, "
                     "or point TOUCHPOINTS_DATABASE_URL at another database")
        self.migrate()

    def schema_stamp(self) -> str | None:
        """For SCHEMA_HEAD_ENV: the newest revision and the scripts' fingerprint, when this
        database is at that revision (else None: its children must check for themselves)."""
        head = self.head_revision()
        if head is None or self.current_revision() != head:
            return None
        return f"{head} {_scripts_fingerprint()}"

    def _at_stamped_head(self) -> bool:
        head, _, fingerprint = os.environ.get(SCHEMA_HEAD_ENV, "").partition(" ")
        if not head or fingerprint != _scripts_fingerprint():
            return False
        try:
            with self.engine.connect() as connection:
                rows = connection.exec_driver_sql("SELECT version_num FROM alembic_version").all()
        except DBAPIError:  # no such table yet, or unreadable: the full check says why
            return False
        return [row[0] for row in rows] == [head]

    def ping(self) -> None:
        """Raise StoreError unless the database answers."""
        with self.reporting_errors(), self.engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")

    def dispose(self) -> None:
        self.engine.dispose()


#: "<newest revision> <fingerprint of the migration scripts>", set by `serve` for the processes
#: it starts (it has just migrated), so they need not load Alembic to learn the newest revision
SCHEMA_HEAD_ENV = "TOUCHPOINTS_SCHEMA_HEAD"


def _scripts_fingerprint() -> str:
    """Names, sizes and modification times of the migration scripts: a changed or added
    script makes a stamp from before it worthless."""
    import hashlib

    digest = hashlib.sha256()
    try:
        entries = sorted(os.scandir(MIGRATIONS / "versions"), key=lambda entry: entry.name)
    except OSError:
        return ""
    for entry in entries:
        if entry.name.endswith(".py") and entry.is_file():
            status = entry.stat()
            digest.update(f"{entry.name}:{status.st_size}:{status.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]


def is_environment_error(exc: DBAPIError) -> bool:
    """True for errors of the surroundings rather than of the statement: the server is gone,
    the file cannot be opened or stays locked. Those become a StoreError with a hint;
    statement errors (a serialisation failure, a lock timeout) are left to the caller."""
    if exc.connection_invalidated or isinstance(exc, InterfaceError):
        return True
    orig = getattr(exc, "orig", None)
    if orig is None or type(orig).__module__.startswith("sqlite3"):
        return True
    sqlstate = getattr(orig, "sqlstate", None)
    return sqlstate is None or sqlstate.startswith(("08", "57P", "3D000", "28"))


def store_error(url: str, exc: BaseException) -> StoreError:
    """A StoreError saying what failed and what to do, from a driver error."""
    parsed = normalise_url(url)
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    reason = detail[0] if detail else type(exc).__name__
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if "no such table" in reason:
            return StoreError(f"the SQLite store {parsed.database} is not migrated: {reason}",
                              hint="open it with open_store(), which migrates it, or run any "
                                   "touchpoints command once")
        if "locked" in reason or "busy" in reason:
            return StoreError(f"the SQLite store {parsed.database} stayed locked: {reason}",
                              hint="another process held the write lock for over "
                                   f"{SQLITE_BUSY_TIMEOUT_MS // 1000}s; try again, or use "
                                   "PostgreSQL for heavy concurrent use")
        return StoreError(f"cannot use the SQLite store {parsed.database}: {reason}",
                          hint="check that the data folder (TOUCHPOINTS_DATA_DIR) exists and is "
                               f"writable, or {URL_HINT}")
    where = f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
    return StoreError(
        f"cannot reach the database {display_url(parsed)}: {reason}",
        hint=f"is PostgreSQL running on {where} and does database {parsed.database!r} exist? "
             f"Start it, or {URL_HINT}")


def _create_engine(url: URL, *, echo: bool) -> Engine:
    backend = url.get_backend_name()
    try:
        if backend == "sqlite":
            if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
                database = Path(url.database).expanduser()
                try:
                    database.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
                    private_sqlite_file(database)
                except OSError as exc:
                    raise StoreError(f"cannot create the folder {database.parent} for the SQLite "
                                     f"store: {exc.strerror}",
                                     hint="set TOUCHPOINTS_DATA_DIR to a writable folder") from None
            engine = create_engine(url, echo=echo,
                                   connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
            _make_sqlite_safe(engine)
            return engine
        connect_args = {}
        if backend == "postgresql" and "connect_timeout" not in url.query:
            connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
        return create_engine(url, echo=echo, pool_pre_ping=True, connect_args=connect_args)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise StoreError(f"cannot use the database URL {display_url(url)}: {exc}",
                         hint=URL_HINT) from None


def private_sqlite_file(database: Path) -> None:
    """Create the SQLite file 0600 before SQLite does (its -wal, -shm and -journal files then
    get the same mode), and narrow an existing file and its companions to 0600."""
    try:
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        pass
    for suffix in SQLITE_COMPANIONS:
        make_private(database.with_name(database.name + suffix))


def _make_sqlite_safe(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record) -> None:
        # pysqlite's own BEGIN handling is switched off; "begin" below emits ours.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        if mode == "IMMEDIATE":
            _begin_immediate(connection)
        else:
            connection.exec_driver_sql(f"BEGIN {mode}")


def _begin_immediate(connection) -> None:
    """``BEGIN IMMEDIATE``, waiting for the write lock in even steps of
    ``WRITE_LOCK_POLL_S``. SQLite's own busy handler backs off to 100 ms between tries, so a
    writer that has waited a while loses the lock to every newcomer, and the service's intake
    waited seconds behind the runs' short transactions; polling evenly, every writer (in every
    process) has the same chance. After ``SQLITE_BUSY_TIMEOUT_MS`` the error is SQLAlchemy's
    "database is locked", as before."""
    import sqlite3

    cursor = connection.connection.driver_connection.cursor()
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    try:
        cursor.execute("PRAGMA busy_timeout = 0")
        while time.monotonic() < deadline:
            try:
                cursor.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
            time.sleep(WRITE_LOCK_POLL_S)
        connection.exec_driver_sql("BEGIN IMMEDIATE")  # once more, raising SQLAlchemy's error
    finally:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()


# ---------------------------------------------------------------------- one Store per URL
_stores: dict[str, Store] = {}
_stores_lock = threading.Lock()


def open_store(settings: Settings | None = None) -> Store:
    """The Store for the configured database: creates the data folder, migrates the schema if
    needed (once per process and URL) and returns the same Store on later calls."""
    from flows.settings import get_settings

    settings = settings or get_settings()
    url = normalise_url(settings.store_url).render_as_string(hide_password=False)
    with _stores_lock:
        store = _stores.get(url)
        if store is not None:
            return store
        try:
            private_dir(settings.data_dir)  # 0700, an existing folder narrowed too
        except OSError as exc:
            raise StoreError(f"cannot create the data folder {settings.data_dir}: {exc.strerror}",
                             hint="set TOUCHPOINTS_DATA_DIR to a writable folder") from None
        store = Store(url)
        try:
            from flows.store.roles import migrate

            migrate(store, settings)
        except BaseException:
            store.dispose()
            raise
        _stores[url] = store
        return store


def adopt_store(store: Store) -> None:
    """Make ``open_store`` return this (already migrated) Store for its URL (tests use it)."""
    with _stores_lock:
        _stores[store.url] = store


def forget_store(url: str, *, dispose: bool = True) -> None:
    """Drop the cached Store for ``url``, if any, and dispose of its engine unless told not to."""
    key = normalise_url(url).render_as_string(hide_password=False)
    with _stores_lock:
        store = _stores.pop(key, None)
    if store is not None and dispose:
        store.dispose()


def close_stores() -> None:
    """Dispose of every cached Store (at shutdown, and between tests)."""
    with _stores_lock:
        stores = list(_stores.values())
        _stores.clear()
    for store in stores:
        store.dispose()
