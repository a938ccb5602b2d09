"""The audit trail: append-only and hash-chained.

Every row carries ``hash = HMAC-SHA256(audit key, prev_hash + canonical JSON of its fields)``
where ``prev_hash`` is the hash of the row before it (``GENESIS`` for the first). Rows are
numbered by ``seq`` (1, 2, 3, ...) inside a lock, so the chain order is the seq order:

* PostgreSQL: a transaction-level advisory lock (held until commit) serialises writers; a
  trigger installed by migration 0001 refuses UPDATE, DELETE and TRUNCATE on the table.
* SQLite: the store opens every write transaction with ``BEGIN IMMEDIATE``, which serialises
  writers; triggers refuse UPDATE and DELETE.

The lock is held until the writing transaction ends, so write audit rows late in a transaction.

The audit key is never in the database: it is ``TOUCHPOINTS_AUDIT_KEY``, else derived from the
secret key (``TOUCHPOINTS_SECRET_KEY`` or ``data/secret.key``). Someone who can write the
database but not read the key cannot make a row that verifies, so an edit, an insert or a forged
append is named at the row itself (``flows.store.audit_verify``). Deleting the newest rows
leaves a valid chain: signed checkpoints kept outside the database catch that
(``flows.store.checkpoints``). Rotation: ``TOUCHPOINTS_AUDIT_PREVIOUS_KEYS`` lists old keys,
oldest first; each row must verify under a key no older than the row before it.

Stores from before keying hold *legacy* rows, hashed ``sha256(prev_hash + canonical JSON)``.
The first write after the upgrade (or the first checkpoint) appends an ``audit.rekeyed`` row,
keyed, whose detail records the legacy row count and head: the switch-over. Legacy rows are
accepted only before it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import PurePath
from typing import Any
from uuid import UUID

from sqlalchemy import func, insert, select, text
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
REKEYED = "audit.rekeyed"
"""Action of the switch-over row: the first keyed row after legacy (unkeyed) rows."""

#: pg_advisory_xact_lock key serialising audit writers ("tp-audit" in ASCII)
AUDIT_LOCK_KEY = 0x74702D6175646974

#: the fields covered by the hash, in the order of the canonical JSON (keys are sorted anyway)
HASHED_FIELDS = ("seq", "at", "action", "touchpoint", "step", "customer_id", "journey_id",
                 "flow_run_id", "result", "reason", "actor", "detail")
_ALLOWED = frozenset(HASHED_FIELDS) - {"seq"}
COLUMNS = [AuditRow.__table__.c[name] for name in (*HASHED_FIELDS, "prev_hash", "hash")]

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


def legacy_hash(prev_hash: str, fields: Mapping[str, Any]) -> str:
    """The unkeyed hash rows had before the chain was keyed (and a forger without the key
    would compute)."""
    return hashlib.sha256((prev_hash + canonical(fields)).encode("utf-8")).hexdigest()


def key_index(prev_hash: str, fields: Mapping[str, Any], stored: str,
              chain_keys: list[bytes], start: int = 0) -> int | None:
    """Index of the first key from ``start`` under which the row hashes to ``stored``."""
    for index in range(start, len(chain_keys)):
        if hmac.compare_digest(row_hash(prev_hash, fields, chain_keys[index]), stored):
            return index
    return None


def is_legacy(prev_hash: str, fields: Mapping[str, Any], stored: str) -> bool:
    return hmac.compare_digest(legacy_hash(prev_hash, fields), stored)


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
    *switch_over, fields = _chain(session, [{
        "action": action, "result": result, "actor": actor, "reason": reason,
        "touchpoint": touchpoint, "step": step, "customer_id": customer_id,
        "journey_id": journey_id, "flow_run_id": flow_run_id, "detail": detail, "at": at}])
    if switch_over:
        session.execute(insert(AuditRow), switch_over)
    row = AuditRow(**fields)
    session.add(row)
    session.flush()
    return row


def record_many(session: Session, rows: Iterable[Mapping[str, Any]]) -> int:
    """Append many audit rows at once: one lock, one read of the last hash, a loop computing
    the hashes and one bulk insert. Each mapping takes the keyword arguments of ``record``.
    Returns how many rows were written."""
    rows = list(rows)
    prepared = _chain(session, rows)
    if prepared:
        session.execute(insert(AuditRow), prepared)
    return len(rows)


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
    last = _last_row(session)
    seq, prev = (last.seq, last.hash) if last else (0, GENESIS)
    if last is not None and _ends_legacy(session, last, keys()):
        prepared.insert(0, _switch_over(last, now))
    key = current_key()
    for fields in prepared:
        seq += 1
        fields["seq"] = seq
        fields["prev_hash"] = prev
        fields["hash"] = prev = row_hash(prev, fields, key)
    return prepared


def _last_row(session: Session) -> Any:
    return session.execute(select(*COLUMNS).order_by(AuditRow.seq.desc()).limit(1)).first()


def _ends_legacy(session: Session, last: Any, chain_keys: list[bytes]) -> bool:
    """The chain is still all legacy: its newest row has the unkeyed hash of older versions, and
    so has its first (a plain row after keyed ones is a forgery, not a switch-over point)."""
    if key_index(last.prev_hash, last._mapping, last.hash, chain_keys) is not None or \
            not is_legacy(last.prev_hash, last._mapping, last.hash):
        return False
    first = session.execute(select(*COLUMNS).order_by(AuditRow.seq).limit(1)).first()
    return key_index(first.prev_hash, first._mapping, first.hash, chain_keys) is None


def _switch_over(last: Any, now: datetime) -> dict[str, Any]:
    return _normalise({"action": REKEYED, "result": "rekeyed", "actor": SYSTEM,
                       "reason": "the audit chain is keyed from here on",
                       "detail": {"legacy_rows": last.seq, "legacy_head": last.hash,
                                  "scheme": "hmac-sha256"}}, now)


def ensure_keyed(session: Session) -> bool:
    """Record the switch-over now if the chain ends in legacy rows; True if it wrote one."""
    _lock(session)
    last = _last_row(session)
    if last is None or not _ends_legacy(session, last, keys()):
        return False
    fields = _switch_over(last, utcnow())
    fields["seq"], fields["prev_hash"] = last.seq + 1, last.hash
    fields["hash"] = row_hash(last.hash, fields)
    session.execute(insert(AuditRow), [fields])
    return True


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
    stmt = _filtered(select(AuditRow), customer_id=customer_id, touchpoint=touchpoint,
                     action=action, journey_id=journey_id)
    if limit is not None:
        rows = list(session.scalars(stmt.order_by(AuditRow.seq.desc()).limit(limit)))
        rows.reverse()
        return rows
    return list(session.scalars(stmt.order_by(AuditRow.seq)))


def count(session: Session, *, customer_id: str | None = None, touchpoint: str | None = None,
          action: str | None = None, journey_id: str | None = None) -> int:
    """How many rows ``query`` would return without a limit."""
    stmt = _filtered(select(func.count()).select_from(AuditRow), customer_id=customer_id,
                     touchpoint=touchpoint, action=action, journey_id=journey_id)
    return int(session.scalar(stmt) or 0)


def head(session: Session) -> tuple[int, str]:
    """(row count, hash of the newest row): the anchor to keep; (0, GENESIS) when empty."""
    last = session.execute(select(AuditRow.seq, AuditRow.hash)
                           .order_by(AuditRow.seq.desc()).limit(1)).first()
    return (last.seq, last.hash) if last else (0, GENESIS)


def _filtered(stmt, *, customer_id, touchpoint, action, journey_id):
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
    return stmt


# The verifier and the checkpoints live in their own modules; these names stay importable
# from here (``audit.verify``, ``audit.write_checkpoint``).
_MOVED = {"verify": "audit_verify", "VerifyResult": "audit_verify",
          "write_checkpoint": "checkpoints", "latest_checkpoint": "checkpoints"}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(f"flows.store.{_MOVED[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


