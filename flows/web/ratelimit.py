"""Failed authentications: limited per key id and per client address, audited in aggregate.

A window opens at a subject's first failure and lasts ``window_s`` seconds. Subjects are a key
id that exists in the store (revoked keys included) and a client address (IPv6 by its /64,
since one host holds a whole /64). Within a window

* the first ``per_key`` failures naming a key id are answered 401, later ones 429;
* an address with ``per_address`` failures is answered 429 before its key is even looked up;
  so a flood against a public key id from one address cannot lock the key's owner out: the
  key's own limit only changes the answer to a *failed* attempt, a right key still passes;
* every 429 carries ``Retry-After``: the seconds until the window closes.

Auditing: each failure is counted under exactly one subject, its key id when the key exists,
else its address. The first failure of a window writes one ``auth.failed`` row with count 1 at
once (so an attack is visible while it happens); the window's close writes one more with the
rest of the count (if any). Rows carry ``detail={"count", "window_s", "since", ...}``; over
all rows the counts add up to the number of failures, at most two rows per subject and window.

The table is in memory and bounded by ``max_subjects``: expired windows are closed first, and
when it is still full a new subject's failures go to one shared overflow window (counted and
audited, never limiting), so no input grows it without limit. Windows close on the next
failure after their end, on :meth:`FailedAuthLimiter.due` (the app calls it periodically) and
all at once on :meth:`FailedAuthLimiter.drain` (the app's shutdown). Rows that could not be
written are kept (bounded, collapsing into one row) and written with the next batch.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flows import clock

OVERFLOW = ("overflow", "*")
MAX_REASONS = 5
MAX_UNWRITTEN = 1000


def address_subject(host: str | None) -> str:
    """The limiting unit of a client address: IPv4 as is, IPv6 by its /64."""
    host = (host or "unknown")[:64]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return str(address)


@dataclass
class _Window:
    kind: str
    name: str
    started: float               # monotonic
    started_at: datetime         # wall clock, for the audit
    failures: int = 0            # every failure of the subject (what the limit counts)
    audited: int = 0             # failures counted under this subject
    written: int = 0             # of those, already in an audit row
    reasons: Counter = field(default_factory=Counter)

    def row(self, window_s: float, count: int, *, closing: bool) -> dict[str, Any]:
        who = {"key": "key_id", "address": "address"}.get(self.kind, "subject")
        actor = f"api:{self.name}" if self.kind == "key" else "anonymous"
        detail = {"count": count, "window_s": window_s, "since": self.started_at.isoformat(),
                  who: self.name, "reasons": dict(self.reasons.most_common(MAX_REASONS)),
                  "window": "closed" if closing else "open"}
        what = {"key": f"API key {self.name}", "address": f"address {self.name}"}.get(
            self.kind, "addresses beyond the limiter's table")
        return {"action": "auth.failed", "result": "refused", "actor": actor,
                "reason": f"{count} failed authentication(s) with {what}", "detail": detail}


class FailedAuthLimiter:
    def __init__(self, *, window_s: float = 60.0, per_key: int = 10, per_address: int = 30,
                 max_subjects: int = 10_000, monotonic=time.monotonic) -> None:
        self.window_s = float(window_s)
        self.per_key = max(int(per_key), 1)
        self.per_address = max(int(per_address), 1)
        self.max_subjects = max(int(max_subjects), 2)
        self._monotonic = monotonic
        self._windows: dict[tuple[str, str], _Window] = {}
        self._unwritten: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._windows)

    # ------------------------------------------------------------------ windows
    def _expired(self, window: _Window, now: float) -> bool:
        return now - window.started >= self.window_s

    def _close(self, key, window: _Window, rows: list) -> None:
        del self._windows[key]
        rest = window.audited - window.written
        if rest > 0:
            rows.append(window.row(self.window_s, rest, closing=True))

    def _live(self, key, rows: list) -> _Window | None:
        """The subject's open window, closing it first if it has run out."""
        window = self._windows.get(key)
        if window is not None and self._expired(window, self._monotonic()):
            self._close(key, window, rows)
            return None
        return window

    def _window(self, key, now: float, rows: list) -> _Window:
        window = self._live(key, rows)
        if window is not None:
            return window
        if len(self._windows) >= self.max_subjects:
            for old_key, old in list(self._windows.items()):
                if self._expired(old, now):
                    self._close(old_key, old, rows)
        if len(self._windows) >= self.max_subjects and key != OVERFLOW:
            return self._window(OVERFLOW, now, rows)
        window = _Window(kind=key[0], name=key[1], started=now, started_at=clock.now())
        self._windows[key] = window
        return window

    def _retry_after(self, window: _Window, now: float) -> int:
        return max(int(window.started + self.window_s - now + 0.999), 1)

    # ------------------------------------------------------------------ the checks
    def blocked(self, address: str) -> int | None:
        """Seconds to wait when the address is over its limit (before any lookup), else None."""
        with self._lock:
            window = self._live(("address", address_subject(address)), self._unwritten)
            if window is None or window.failures < self.per_address:
                return None
            return self._retry_after(window, self._monotonic())

    def failure(self, *, address: str, key_id: str | None, reason: str,
                blocked: bool = False) -> tuple[int | None, list[dict[str, Any]]]:
        """Count one failed authentication. ``key_id`` is the id of a key that exists (None
        otherwise); ``blocked`` marks a request refused by :meth:`blocked` unchecked. Returns
        (seconds to wait, or None when the answer is a plain 401; audit rows to write now)."""
        now = self._monotonic()
        with self._lock:
            rows, self._unwritten = self._unwritten, []
            addr = self._window(("address", address_subject(address)), now, rows)
            key = self._window(("key", key_id), now, rows) if key_id and not blocked else None
            addr.failures += 1
            if key is not None:
                key.failures += 1
            audited = key if key is not None else addr
            audited.audited += 1
            if len(audited.reasons) < MAX_REASONS or reason in audited.reasons:
                audited.reasons[reason] += 1
            if audited.written == 0:
                audited.written = 1
                rows.append(audited.row(self.window_s, 1, closing=False))
            waits = []
            if addr is not self._windows.get(OVERFLOW) and addr.failures > self.per_address:
                waits.append(self._retry_after(addr, now))
            if key is not None and key is not self._windows.get(OVERFLOW) \
                    and key.failures > self.per_key:
                waits.append(self._retry_after(key, now))
            if blocked:
                waits.append(self._retry_after(addr, now))
            return (max(waits) if waits else None), rows

    # ------------------------------------------------------------------ flushing
    def due(self) -> list[dict[str, Any]]:
        """Close every window that has run out; the audit rows to write."""
        now = self._monotonic()
        with self._lock:
            rows, self._unwritten = self._unwritten, []
            for key, window in list(self._windows.items()):
                if self._expired(window, now):
                    self._close(key, window, rows)
            return rows

    def drain(self) -> list[dict[str, Any]]:
        """Close every window now (shutdown); the audit rows to write."""
        with self._lock:
            rows, self._unwritten = self._unwritten, []
            for key, window in list(self._windows.items()):
                self._close(key, window, rows)
            return rows

    def unwritten(self, rows: list[dict[str, Any]]) -> None:
        """Rows that could not be written: kept for the next batch, bounded (collapsed into one
        row with the summed count when too many pile up), so no count is lost."""
        with self._lock:
            self._unwritten.extend(rows)
            if len(self._unwritten) > MAX_UNWRITTEN:
                total = sum(r["detail"]["count"] for r in self._unwritten)
                self._unwritten = [{
                    "action": "auth.failed", "result": "refused", "actor": "anonymous",
                    "reason": f"{total} failed authentication(s) (audit rows collapsed after "
                              "the store was unavailable)",
                    "detail": {"count": total, "window_s": self.window_s, "collapsed": True}}]


def write_rows(store, limiter: FailedAuthLimiter, rows: list[dict[str, Any]], log) -> None:
    """Append the rows to the audit chain; on failure hand them back to the limiter."""
    if not rows:
        return
    from flows.store import audit

    try:
        with store.session() as session:
            audit.record_many(session, rows)
    except Exception:  # auditing a refusal must not turn a 401 into a 500
        log.exception("could not audit %d failed-authentication row(s); kept for later", len(rows))
        limiter.unwritten(rows)
