"""Group commit: concurrent callers' writes made in one transaction.

The service's intake answers each ``POST /api/events`` only once its event is committed. One
transaction per request means one write lock per request: on SQLite, 16 clients and the
service's own loops then queue on the database's busy handler, whose back-off sleeps grow to
100 ms, and the slowest requests wait seconds. :class:`GroupCommit` instead hands every write
to one writer thread, which takes whatever requests are waiting (up to ``max_batch``), writes
them in **one** transaction and commits, then answers each caller. While it commits, the next
requests gather, so batches grow with the load and no one waits for a timer.

Durability is unchanged: :meth:`GroupCommit.submit` returns only after the transaction that
holds the caller's write has committed; if the commit fails, every caller of the batch gets the
error (and nothing of theirs is stored). A failure of one item (an unknown customer, a
duplicate id racing in from another instance) is that item's alone: the batch function runs
each item in a savepoint of its own.

The writer thread starts with the first request and ends after ``idle_s`` without one, so an
idle service (and every test that builds a dispatcher) keeps no thread.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

#: requests written in one transaction at most
MAX_BATCH = 100
#: seconds the writer thread waits for work before it ends
IDLE_SECONDS = 2.0


class _Ticket:
    __slots__ = ("done", "error", "item", "result")

    def __init__(self, item: Any) -> None:
        self.item = item
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class GroupCommit:
    """``write(session, items)`` writes the items in the open transaction and returns one
    outcome per item: its result, or the exception to raise to its caller (the function rolls
    that item back itself, e.g. with a savepoint). ``session()`` opens the transaction and
    commits it when its block ends."""

    def __init__(self, session: Callable[[], AbstractContextManager],
                 write: Callable[[Any, Sequence[Any]], list[Any]], *, max_batch: int = MAX_BATCH,
                 idle_s: float = IDLE_SECONDS, name: str = "group-commit") -> None:
        self._session = session
        self._write = write
        self.max_batch = max(1, max_batch)
        self.idle_s = idle_s
        self.name = name
        self._pending: deque[_Ticket] = deque()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        #: (batches, items) written so far, for benchmarks and tests
        self.batches = 0
        self.items = 0

    def submit(self, item: Any) -> Any:
        """Write ``item`` with whatever else is waiting; its result once committed."""
        ticket = _Ticket(item)
        with self._wake:
            self._pending.append(ticket)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            else:
                self._wake.notify()
        ticket.done.wait()
        if ticket.error is not None:
            raise ticket.error
        return ticket.result

    def _run(self) -> None:
        try:
            while True:
                with self._wake:
                    if not self._pending:
                        self._wake.wait(self.idle_s)
                        if not self._pending:
                            self._thread = None
                            return
                    batch = [self._pending.popleft()
                             for _ in range(min(len(self._pending), self.max_batch))]
                self._commit(batch)
        except BaseException as exc:  # the thread is going: no caller may wait for it
            with self._wake:
                self._thread = None
                left = list(self._pending)
                self._pending.clear()
            for ticket in left:
                ticket.error = exc
            self._release(left)
            raise

    def _commit(self, batch: list[_Ticket]) -> None:
        outcomes: list[Any] = []
        try:
            with self._session() as session:
                outcomes = list(self._write(session, [t.item for t in batch]))
                if len(outcomes) != len(batch):
                    raise RuntimeError(f"{self.name}: {len(outcomes)} outcomes for "
                                       f"{len(batch)} items")
        except BaseException as exc:
            for ticket, outcome in zip(batch, outcomes + [None] * len(batch), strict=False):
                ticket.error = outcome if isinstance(outcome, BaseException) else exc
            if not isinstance(exc, Exception):
                self._release(batch)
                raise
        else:
            for ticket, outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    ticket.error = outcome
                else:
                    ticket.result = outcome
            self.batches += 1
            self.items += len(batch)
        self._release(batch)

    @staticmethod
    def _release(batch: list[_Ticket]) -> None:
        for ticket in batch:
            ticket.done.set()
