"""Housekeeping runs on one instance at a time.

On PostgreSQL the lock is a session advisory lock held on a connection of its own: it goes
when the holder's connection does (a killed instance frees it at once), and a standby instance
takes it at its next try. On SQLite, whose store lives on one machine, it is an exclusive
``flock`` on a file next to the database, freed by the kernel when the holder dies.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
from pathlib import Path

from sqlalchemy import text

log = logging.getLogger("touchpoints.service")

#: the advisory lock key: the first 8 bytes of a hash of the name, as a signed bigint
LOCK_KEY = int.from_bytes(hashlib.sha256(b"touchpoints.housekeeping").digest()[:8], "big",
                          signed=True)


class HousekeepingLock:
    """``held()`` takes the lock when it is free and says whether this instance has it."""

    def __init__(self, store) -> None:
        self.store = store
        self._connection = None
        self._file: int | None = None

    @property
    def _postgres(self) -> bool:
        return self.store.engine.dialect.name == "postgresql"

    def held(self) -> bool:
        return self._held_postgres() if self._postgres else self._held_file()

    # ------------------------------------------------------------------ PostgreSQL
    def _held_postgres(self) -> bool:
        if self._connection is not None:
            try:  # still ours while the session that took it is alive
                self._connection.execute(text("SELECT 1"))
                return True
            except Exception as exc:
                log.warning("the housekeeping lock's connection was lost (%s); trying again", exc)
                self._drop_connection()
        connection = self.store.engine.connect()
        try:
            got = connection.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                     {"key": LOCK_KEY}).scalar()
            connection.commit()
        except Exception:
            connection.close()
            raise
        if not got:
            connection.close()
            return False
        self._connection = connection
        log.info("this instance runs housekeeping (advisory lock %s)", LOCK_KEY)
        return True

    def _drop_connection(self) -> None:
        try:
            self._connection.invalidate()  # never back to the pool with the lock on it
        except Exception:
            pass
        self._connection = None

    # ------------------------------------------------------------------ SQLite
    def _lock_path(self) -> Path:
        database = self.store.engine.url.database or "touchpoints.db"
        return Path(f"{database}.housekeeping.lock")

    def _held_file(self) -> bool:
        if self._file is not None:
            return True
        path = self._lock_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            return False
        self._file = handle
        return True

    def release(self) -> None:
        if self._connection is not None:
            try:
                self._connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
                self._connection.commit()
                self._connection.close()
            except Exception:
                self._drop_connection()
            self._connection = None
        if self._file is not None:
            os.close(self._file)
            self._file = None
