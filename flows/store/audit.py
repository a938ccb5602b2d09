"""The audit trail: append-only and hash-chained.

Every row carries ``hash = sha256(prev_hash + canonical JSON of its fields)`` where ``prev_hash``
is the hash of the row before it (``GENESIS`` for the first). Rows are numbered by ``seq``
(1, 2, 3, ...) inside a lock, so the chain order is the seq order:

* PostgreSQL: a transaction-level advisory lock (held until commit) serialises writers; a
  trigger installed by migration 0001 refuses UPDATE, DELETE and TRUNCATE on the table.
* SQLite: the store opens every write transaction with ``BEGIN IMMEDIATE``, which serialises
  writers; triggers refuse UPDATE and DELETE.

The lock is held until the writing transaction ends, so write audit rows late in a
transaction. ``verify`` walks the chain in seq order, streaming, and names the first bad row.
Anything that keeps the chain valid can only be an honest append: a forger would have to
rewrite every later row, which the head hash printed by ``touchpoints audit verify`` exposes
when it is kept elsewhere.

Keyed and anchored: the hash is ``HMAC-SHA256(audit key, prev_hash + canonical JSON)``. The
audit key is never in the database: it is ``TOUCHPOINTS_AUDIT_KEY``, else derived from the
secret key (``TOUCHPOINTS_SECRET_KEY`` or ``data/secret.key``). Someone who can write the
database but not read the key cannot make a row that verifies, so an edit, an insert or a forged
append is named at the row itself. Deleting the newest rows leaves a valid chain, so signed
checkpoints (row count, head hash, time; HMAC under the audit key) are appended to
``data/audit-checkpoints.jsonl`` by ``write_checkpoint``; ``verify`` checks the chain reaches the
latest one. Rotation: ``TOUCHPOINTS_AUDIT_PREVIOUS_KEYS`` lists old keys, oldest first; each row
must verify under a key no older than the row before it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import PurePath
from typing import Any
from uuid import UUID

from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from flows.store.tables import AuditRow, utcnow

SYSTEM = "system"
"""Actor of what the engine does on its own."""
API_PREFIX = "api:"
"""Actors of HTTP API calls: ``api:<key id>``."""
CLI_PREFIX = "cli:"
"""Actors of CLI commands: ``cli:<user>`` (see flows.cli._common.cli_actor)."""

GENESIS = "0" * 64
"""``prev_hash`` of the first row."""

#: pg_advisory_xact_lock key serialising audit writers ("tp-audit" in ASCII)
AUDIT_LOCK_KEY = 0x74702D6175646974

#: the fields covered by the hash, in the order of the canonical JSON (keys are sorted anyway)
HASHED_FIELDS = ("seq", "at", "action", "touchpoint", "step", "customer_id", "journey_id",
                 "flow_run_id", "result", "reason", "actor", "detail")
_ALLOWED = frozenset(HASHED_FIELDS) - {"seq"}

#: how far around a bad row ``verify`` looks for where its content was written
REORDER_WINDOW = 1000
STREAM_BATCH = 2000


def api_actor(key_id: str) -> str:
    return f"{API_PREFIX}{key_id}"


# --------------------------------------------------------------------------- hashing
def canonical(fields: Mapping[str, Any]) -> str:
    """The canonical JSON of a row's hashed fields: sorted keys, no spaces, UTF-8, and ``at``
    as an ISO-8601 UTC timestamp with microseconds."""
    data = {name: fields.get(name) for name in HASHED_FIELDS}
    data["at"] = iso_utc(data["at"])
    data["detail"] = data["detail"] or {}
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def row_hash(prev_hash: str, fields: Mapping[str, Any], key: bytes | None = None) -> str:
    """The keyed hash of a row; ``key`` defaults to the current audit key."""
    if key is None:
        key = current_key()
    return hmac.new(key, (prev_hash + canonical(fields)).encode("utf-8"),
                    hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------- keys
_KEY_LABEL = b"touchpoints audit chain v1"
_override: list[bytes] | None = None


def derive_key(secret: str) -> bytes:
    """The audit key made from a secret (the secret key or TOUCHPOINTS_AUDIT_KEY)."""
    return hmac.new(secret.encode("utf-8"), _KEY_LABEL, hashlib.sha256).digest()


def keys(settings=None) -> list[bytes]:
    """Audit keys, oldest first; the last is the one new rows are written with."""
    if _override is not None and settings is None:
        return list(_override)
    if settings is None:
        from flows.settings import get_settings

        settings = get_settings()
    current = settings.audit_key or settings.signing_key()
    return [derive_key(old) for old in settings.audit_previous_keys] + [derive_key(current)]


def current_key(settings=None) -> bytes:
    return keys(settings)[-1]


def use_keys(secrets_oldest_first: list[str] | None) -> None:
    """Pin the audit keys (tests, tools working on a copy); None goes back to the settings."""
    global _override
    _override = None if secrets_oldest_first is None else [derive_key(s) for s in
                                                            secrets_oldest_first]


def iso_utc(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("audit timestamps must be aware datetimes (UTC)")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (Decimal, UUID, PurePath)):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"audit detail holds a {type(value).__name__}, which is not JSON")


def _plain_detail(detail: Mapping[str, Any] | None) -> dict[str, Any]:
    """The detail as stored and read back: plain JSON (dates as ISO strings). Hashing this
    form means the hash recomputed from the database always matches."""
    if not detail:
        return {}
    return json.loads(json.dumps(dict(detail), default=_jsonable, allow_nan=False))


# --------------------------------------------------------------------------- writing
def record(session: Session, *, action: str, result: str, actor: str, reason: str = "",
           touchpoint: str | None = None, step: str | None = None,
           customer_id: str | None = None, journey_id: str | None = None,
           flow_run_id: str | None = None, detail: Mapping[str, Any] | None = None,
           at: datetime | None = None) -> AuditRow:
    """Append one audit row in the session's transaction and return it (flushed)."""
    [fields] = _chain(session, [{
        "action": action, "result": result, "actor": actor, "reason": reason,
        "touchpoint": touchpoint, "step": step, "customer_id": customer_id,
        "journey_id": journey_id, "flow_run_id": flow_run_id, "detail": detail, "at": at}])
    row = AuditRow(**fields)
    session.add(row)
    session.flush()
    return row


def record_many(session: Session, rows: Iterable[Mapping[str, Any]]) -> int:
    """Append many audit rows at once: one lock, one read of the last hash, a loop computing
    the hashes and one bulk insert. Each mapping takes the keyword arguments of ``record``.
    Returns how many rows were written."""
    prepared = _chain(session, rows)
    if prepared:
        session.execute(insert(AuditRow), prepared)
    return len(prepared)


def _normalise(row: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    unknown = set(row) - _ALLOWED
    if unknown:
        raise TypeError(f"unknown audit field(s): {', '.join(sorted(unknown))}")
    for name in ("action", "result", "actor"):
        if not row.get(name):
            raise ValueError(f"an audit row needs {name}")
    at = row.get("at") or now
    if at.tzinfo is None:
        raise ValueError("audit timestamps must be aware datetimes (UTC)")
    return {
        "at": at.astimezone(UTC),
        "action": str(row["action"]),
        "touchpoint": row.get("touchpoint"),
        "step": row.get("step"),
        "customer_id": row.get("customer_id"),
        "journey_id": row.get("journey_id"),
        "flow_run_id": row.get("flow_run_id"),
        "result": str(row["result"]),
        "reason": row.get("reason") or "",
        "actor": str(row["actor"]),
        "detail": _plain_detail(row.get("detail")),
    }


def _chain(session: Session, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    now = utcnow()
    prepared = [_normalise(row, now) for row in rows]
    if not prepared:
        return []
    _lock(session)
    last = session.execute(select(AuditRow.seq, AuditRow.hash)
                           .order_by(AuditRow.seq.desc()).limit(1)).first()
    seq, prev = (last.seq, last.hash) if last else (0, GENESIS)
    key = current_key()
    for fields in prepared:
        seq += 1
        fields["seq"] = seq
        fields["prev_hash"] = prev
        fields["hash"] = prev = row_hash(prev, fields, key)
    return prepared


def _lock(session: Session) -> None:
    """Serialise audit writers until this transaction ends (see the module docstring)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK_KEY})


# --------------------------------------------------------------------------- reading
def query(session: Session, *, customer_id: str | None = None, touchpoint: str | None = None,
          action: str | None = None, journey_id: str | None = None,
          limit: int | None = None) -> list[AuditRow]:
    """Audit rows matching every filter given, oldest first; with ``limit``, the newest
    ``limit`` of them. ``action`` ending in ``.`` or ``*`` matches a prefix (``journey.*``)."""
    stmt = select(AuditRow)
    if customer_id is not None:
        stmt = stmt.where(AuditRow.customer_id == customer_id)
    if touchpoint is not None:
        stmt = stmt.where(AuditRow.touchpoint == touchpoint)
    if journey_id is not None:
        stmt = stmt.where(AuditRow.journey_id == journey_id)
    if action is not None:
        if action.endswith(("*", ".")):
            prefix = action.rstrip("*")
            stmt = stmt.where(AuditRow.action.startswith(prefix, autoescape=True))
        else:
            stmt = stmt.where(AuditRow.action == action)
    if limit is not None:
        rows = list(session.scalars(stmt.order_by(AuditRow.seq.desc()).limit(limit)))
        rows.reverse()
        return rows
    return list(session.scalars(stmt.order_by(AuditRow.seq)))


# --------------------------------------------------------------------------- verifying
@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str | None = None  # edited | deleted | reordered | inserted
    message: str = ""
    last_seq: int | None = None
    last_hash: str | None = None

    def __bool__(self) -> bool:
        return self.ok


_COLUMNS = [AuditRow.__table__.c[name] for name in (*HASHED_FIELDS, "prev_hash", "hash")]


def _stream(session: Session, *, after: int = 0, upto: int | None = None) -> Iterator[Any]:
    stmt = select(*_COLUMNS).where(AuditRow.seq > after).order_by(AuditRow.seq)
    if upto is not None:
        stmt = stmt.where(AuditRow.seq <= upto)
    return session.execute(stmt.execution_options(yield_per=STREAM_BATCH))


def _match(prev: str, fields: Mapping[str, Any], stored: str, chain_keys: list[bytes],
           start: int) -> int | None:
    """Index of the first key from ``start`` under which the row hashes to ``stored``."""
    for index in range(start, len(chain_keys)):
        if hmac.compare_digest(row_hash(prev, fields, chain_keys[index]), stored):
            return index
    return None


def verify(session: Session, *, checkpoint: Mapping[str, Any] | None = None,
           expect: str | None = None, chain_keys: list[bytes] | None = None) -> VerifyResult:
    """Walk the whole chain in seq order (streamed, never all in memory) and report the first
    row that was edited, deleted, reordered or inserted. With ``checkpoint`` (see
    ``latest_checkpoint``) the chain must reach its row with its hash, so a truncated tail is
    found; ``expect`` is a head the operator kept (``HASH`` or ``SEQ:HASH``)."""
    chain_keys = chain_keys or keys()
    checked, key_index = 0, 0
    expected_seq, prev_hash, before_prev = 1, GENESIS, None
    seen_expect = False
    want_seq, want_hash = _parse_expect(expect)
    anchor = (int(checkpoint["seq"]), str(checkpoint["hash"])) if checkpoint else None
    for row in _stream(session):
        fields = row._mapping
        if row.seq != expected_seq:
            return _bad(checked, expected_seq, "deleted", _gap(expected_seq, row.seq))
        found = _match(row.prev_hash, fields, row.hash, chain_keys, key_index)
        if found is None:
            return _diagnose_content(session, checked, row, chain_keys[key_index:])
        key_index = found
        if row.prev_hash != prev_hash:
            if before_prev is not None and row.prev_hash == before_prev:
                return _bad(checked, row.seq - 1, "inserted",
                            f"row {row.seq - 1} was inserted: row {row.seq} links past it to "
                            f"row {row.seq - 2}")
            return _bad(checked, row.seq, "deleted",
                        f"row {row.seq} does not link to row {row.seq - 1}: rows between "
                        f"them were deleted, or row {row.seq - 1} was rewritten")
        if anchor and row.seq == anchor[0] and row.hash != anchor[1]:
            return _bad(checked, row.seq, "edited",
                        f"row {row.seq} is not the row the checkpoint signed")
        if want_hash and row.hash == want_hash and (want_seq is None or want_seq == row.seq):
            seen_expect = True
        checked += 1
        before_prev, prev_hash, expected_seq = prev_hash, row.hash, row.seq + 1
    last = expected_seq - 1
    if anchor and anchor[0] > last:
        return _bad(checked, last + 1, "deleted",
                    f"rows {last + 1} to {anchor[0]} are missing: the checkpoint of "
                    f"{checkpoint.get('at', '?')} signed {anchor[0]} rows (truncated tail)")
    if want_hash and not seen_expect:
        where = last + 1 if want_seq is None or want_seq > last else want_seq
        return _bad(checked, where, "deleted",
                    f"the head you kept ({expect}) is not in the chain: rows were deleted or "
                    "rewritten")
    return VerifyResult(ok=True, checked=checked, message=f"audit trail intact: {checked} rows",
                        last_seq=last if checked else None,
                        last_hash=prev_hash if checked else None)


def _parse_expect(expect: str | None) -> tuple[int | None, str | None]:
    if not expect:
        return None, None
    text_ = expect.strip().lstrip("#")
    if ":" in text_:
        seq, _, digest = text_.partition(":")
        if seq.strip().isdigit():
            return int(seq), digest.strip().lower()
    return None, text_.lower()


# --------------------------------------------------------------------------- checkpoints
CHECKPOINT_FILE = "audit-checkpoints.jsonl"


def _checkpoint_sig(body: Mapping[str, Any], key: bytes) -> str:
    payload = json.dumps({k: body[k] for k in ("seq", "hash", "at")}, sort_keys=True,
                         separators=(",", ":"))
    return hmac.new(key, b"checkpoint:" + payload.encode(), hashlib.sha256).hexdigest()


def head(session: Session) -> tuple[int, str]:
    last = session.execute(select(AuditRow.seq, AuditRow.hash)
                           .order_by(AuditRow.seq.desc()).limit(1)).first()
    return (last.seq, last.hash) if last else (0, GENESIS)


def write_checkpoint(store, settings) -> dict[str, Any]:
    """Append a signed checkpoint of the current head to data/audit-checkpoints.jsonl (0600).
    Cheap (one indexed read); the service calls it at an interval and at every stop."""
    from flows.private import FILE_MODE, private_dir

    with store.read_session() as session:
        seq, digest = head(session)
    body: dict[str, Any] = {"seq": seq, "hash": digest, "at": iso_utc(utcnow())}
    body["sig"] = _checkpoint_sig(body, current_key(settings))
    folder = private_dir(settings.data_dir)
    fd = os.open(folder / CHECKPOINT_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(body, sort_keys=True) + "\n")
    return body


def latest_checkpoint(settings) -> dict[str, Any] | None:
    """The newest checkpoint whose signature verifies under an audit key, or None."""
    path = settings.data_dir / CHECKPOINT_FILE
    if not path.exists():
        return None
    chain_keys = keys(settings)
    best = None
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            body = json.loads(line)
            good = any(hmac.compare_digest(_checkpoint_sig(body, k), str(body.get("sig", "")))
                       for k in chain_keys)
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        if good and (best is None or int(body["seq"]) >= int(best["seq"])):
            best = body
    return best


def _gap(expected: int, found: int) -> str:
    if found < expected:  # seq is the primary key, so only a broken database gets here
        return f"row {found} comes after row {expected - 1}: the rows are out of order"
    missing = (f"row {expected} is missing" if found == expected + 1 else
               f"rows {expected} to {found - 1} are missing")
    where = (f"the chain starts at row {found}" if expected == 1 else
             f"the chain jumps from row {expected - 1} to row {found}")
    return f"{missing}: deleted ({where})"


def _bad(checked: int, seq: int, problem: str, message: str) -> VerifyResult:
    return VerifyResult(ok=False, checked=checked, first_bad_seq=seq, problem=problem,
                        message=message)


def _written_as(row: Any, chain_keys: list[bytes]) -> int | None:
    """The seq a row's content was written with, if it lies within REORDER_WINDOW of where it
    is now (the hash covers seq, so only the original seq makes it match)."""
    fields = dict(row._mapping)
    for delta in range(1, REORDER_WINDOW + 1):
        for candidate in (row.seq + delta, row.seq - delta):
            if candidate < 1:
                continue
            fields["seq"] = candidate
            if _match(row.prev_hash, fields, row.hash, chain_keys, 0) is not None:
                return candidate
    return None


def _diagnose_content(session: Session, checked: int, row: Any,
                      chain_keys: list[bytes]) -> VerifyResult:
    """Row ``row.seq`` does not hash to its stored hash: an edit, or a row moved here."""
    origin = _written_as(row, chain_keys)
    if origin is None:
        return _bad(checked, row.seq, "edited",
                    f"row {row.seq} was edited: its content no longer matches its hash")
    if origin < row.seq:
        return _bad(checked, origin, "inserted",
                    f"row {row.seq} holds the entry written as row {origin}: "
                    f"{row.seq - origin} row(s) were inserted before it")
    # The content of a later row sits here. Reordered if this row's own entry is further on;
    # deleted if it is nowhere (the rows after a deletion were renumbered).
    for later in _stream(session, after=row.seq, upto=row.seq + REORDER_WINDOW):
        fields = dict(later._mapping)
        fields["seq"] = row.seq
        if _match(later.prev_hash, fields, later.hash, chain_keys, 0) is not None:
            return _bad(checked, row.seq, "reordered",
                        f"rows {row.seq} and {later.seq} were reordered: row {row.seq} holds "
                        f"the entry written as row {origin}, and row {later.seq} the entry "
                        f"written as row {row.seq}")
    return _bad(checked, row.seq, "deleted",
                f"the entry written as row {row.seq} is missing and later rows were "
                f"renumbered: row {row.seq} holds the entry written as row {origin}")
