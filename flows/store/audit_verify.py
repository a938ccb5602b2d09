"""Verifying the audit chain: walk it in seq order (streamed, never all in memory) and name the
first bad row exactly.

A row is good when its stored hash is the HMAC, under an audit key, of its own content, its seq
and its ``prev_hash``, and ``prev_hash`` is the hash of the row before it. Without the key no
one can make a good row, so every change is found at the row it touched:

* edited: the row's content no longer matches its hash (named at the row itself);
* forged: the row carries the plain SHA-256 hash of a writer without the key;
* deleted: a gap in seq, or later rows renumbered to close it;
* reordered / inserted: the row's content was written with another seq, or the next row holds
  the entry written with this seq;
* truncated: the chain stops before the row count of the latest checkpoint (or of the head the
  operator kept, ``expect``).

Legacy rows (unkeyed, from before the switch-over, see ``flows.store.audit``) are accepted only
at the start of the chain and, when a checkpoint says how many there were, only that many.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from flows.store.audit import (
    COLUMNS,
    GENESIS,
    REKEYED,
    canonical,
    is_legacy,
    key_index,
    keys,
)
from flows.store.tables import AuditRow

#: how far around a bad row ``verify`` looks for where its content was written
REORDER_WINDOW = 1000
STREAM_BATCH = 2000


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str | None = None  # edited | forged | deleted | reordered | inserted | truncated
    message: str = ""
    last_seq: int | None = None
    last_hash: str | None = None
    legacy_rows: int = 0
    """Rows at the start written before keying (plain SHA-256), accepted as such."""
    checkpoint_seq: int | None = None
    """The row count of the checkpoint the chain was checked against."""

    def __bool__(self) -> bool:
        return self.ok


def _stream(session: Session, *, after: int = 0, upto: int | None = None) -> Iterator[Any]:
    stmt = select(*COLUMNS).where(AuditRow.seq > after).order_by(AuditRow.seq)
    if upto is not None:
        stmt = stmt.where(AuditRow.seq <= upto)
    # Core, not the ORM: rows are plain tuples, and the per-statement cost is lower
    return session.connection().execute(stmt.execution_options(yield_per=STREAM_BATCH))


def verify(session: Session, *, checkpoint: Mapping[str, Any] | None = None,
           expect: str | None = None, chain_keys: list[bytes] | None = None) -> VerifyResult:
    """Walk the whole chain and report the first bad row. With ``checkpoint`` (see
    ``flows.store.checkpoints.latest_checkpoint``) the chain must reach its row with its hash,
    so a truncated tail is found; ``expect`` is a head the operator kept (``SEQ:HASH`` or
    ``HASH``)."""
    chain_keys = chain_keys or keys()
    checked = key_at = legacy = 0
    keyed = False
    expected_seq, prev_hash, before_prev = 1, GENESIS, None
    want_seq, want_hash = parse_expect(expect)
    seen_expect = False
    anchor = (int(checkpoint["seq"]), str(checkpoint["hash"])) if checkpoint else None
    legacy_limit = (int(checkpoint["legacy_rows"]) if checkpoint and
                    checkpoint.get("legacy_rows") is not None else None)
    for row in _stream(session):
        fields = row._mapping
        seq = row.seq
        if seq != expected_seq:
            return _bad(checked, expected_seq, "deleted", _gap(expected_seq, seq))
        found = key_index(row.prev_hash, fields, row.hash, chain_keys, key_at)
        if found is None:
            legacy_ok = not keyed and (legacy_limit is None or seq <= legacy_limit)
            if not (legacy_ok and is_legacy(row.prev_hash, fields, row.hash)):
                return _diagnose(session, checked, row, chain_keys[key_at:], legacy_ok)
            legacy += 1
        if row.prev_hash != prev_hash:
            if seq == 1:
                return _bad(checked, 1, "edited", "row 1 does not start the chain (its "
                            "prev_hash is not the genesis hash): it was rewritten")
            if before_prev is not None and row.prev_hash == before_prev:
                return _bad(checked - 1, seq - 1, "inserted",
                            f"row {seq - 1} was inserted: row {seq} links past it to "
                            f"row {seq - 2}")
            return _bad(checked - 1, seq - 1, "edited",
                        f"row {seq - 1} was rewritten: row {seq} was chained to a different "
                        f"row {seq - 1}" + ("" if found is None else
                                            " (that takes the audit key: was it leaked?)"))
        if found is not None:
            if legacy and not keyed:
                problem = _switch_over_problem(row, legacy)
                if problem:
                    return _bad(checked, seq, "forged", problem)
            keyed, key_at = True, found
        if anchor and seq == anchor[0] and row.hash != anchor[1]:
            return _bad(checked, seq, "edited",
                        f"row {seq} is not the row the checkpoint of "
                        f"{checkpoint.get('at', '?')} signed: the chain up to it was rewritten")
        if want_hash and want_seq == seq and row.hash != want_hash:
            return _bad(checked, seq, "edited",
                        f"row {seq} is not the head you kept ({expect}): the chain up to it "
                        "was rewritten")
        if want_hash and row.hash == want_hash and want_seq in (None, seq):
            seen_expect = True
        checked += 1
        before_prev, prev_hash, expected_seq = prev_hash, row.hash, seq + 1
    last = expected_seq - 1
    if anchor and anchor[0] > last:
        return _bad(checked, last + 1, "truncated",
                    f"rows {last + 1} to {anchor[0]} are missing: the checkpoint of "
                    f"{checkpoint.get('at', '?')} signed {anchor[0]} rows (the newest rows were "
                    "deleted)")
    if want_hash and not seen_expect:
        return _bad(checked, last + 1, "truncated",
                    f"the head you kept ({expect}) is not in the chain: the newest rows were "
                    "deleted, or the chain was rewritten")
    message = f"audit trail intact: {checked} rows"
    if legacy:
        message += (f" ({legacy} written before keying, with plain SHA-256 hashes"
                    + (")" if keyed else "; the switch-over is recorded at the next write)"))
    return VerifyResult(ok=True, checked=checked, message=message,
                        last_seq=last if checked else None,
                        last_hash=prev_hash if checked else None, legacy_rows=legacy,
                        checkpoint_seq=anchor[0] if anchor else None)


def parse_expect(expect: str | None) -> tuple[int | None, str | None]:
    """``SEQ:HASH``, ``#SEQ:HASH`` or ``HASH`` as (seq or None, lower-case hash)."""
    if not expect:
        return None, None
    text = expect.strip().lstrip("#")
    if ":" in text:
        seq, _, digest = text.partition(":")
        if seq.strip().isdigit():
            return int(seq), digest.strip().lower()
    return None, text.lower()


def _switch_over_problem(row: Any, legacy: int) -> str | None:
    detail = row.detail or {}
    if (row.action == REKEYED and detail.get("legacy_rows") == legacy
            and detail.get("legacy_head") == row.prev_hash):
        return None
    return (f"rows 1 to {legacy} have unkeyed (legacy) hashes but row {row.seq}, the first "
            f"keyed row, is not the switch-over ({REKEYED}) recording them")


def _gap(expected: int, found: int) -> str:
    if found < expected:  # seq is the primary key, so only a broken database gets here
        return f"row {found} comes after row {expected - 1}: the rows are out of order"
    missing = (f"row {expected} is missing" if found == expected + 1 else
               f"rows {expected} to {found - 1} are missing")
    where = (f"the chain starts at row {found}" if expected == 1 else
             f"the chain jumps from row {expected - 1} to row {found}")
    return f"{missing}: deleted ({where})"


def _bad(checked: int, seq: int, problem: str, message: str) -> VerifyResult:
    return VerifyResult(ok=False, checked=max(checked, 0), first_bad_seq=seq, problem=problem,
                        message=message)


# --------------------------------------------------------------------------- diagnosis
class _Hasher:
    """Hashes one row's content as if it had been written with another seq: the canonical JSON
    is built once and the MACs are pre-keyed, so trying a thousand seqs is cheap."""

    def __init__(self, row: Any, chain_keys: list[bytes], legacy_ok: bool) -> None:
        data = dict(row._mapping)
        data["seq"] = 0
        before, _, after = canonical(data).rpartition(',"seq":0,')  # "seq" sorts after "result"
        start = (row.prev_hash + before + ',"seq":').encode("utf-8")
        self.rest = "," + after
        self.stored = row.hash
        self.macs = [hmac.new(key, start, hashlib.sha256) for key in chain_keys]
        if legacy_ok:
            self.macs.append(hashlib.sha256(start))

    def written_as(self, seq: int) -> bool:
        tail = f"{seq}{self.rest}".encode()
        for base in self.macs:
            mac = base.copy()
            mac.update(tail)
            if hmac.compare_digest(mac.hexdigest(), self.stored):
                return True
        return False


def _written_as(hasher: _Hasher, seq: int) -> int | None:
    """The seq a row's content was written with, within REORDER_WINDOW of where it is now."""
    for delta in range(1, REORDER_WINDOW + 1):
        for candidate in (seq + delta, seq - delta):
            if candidate >= 1 and hasher.written_as(candidate):
                return candidate
    return None


def _diagnose(session: Session, checked: int, row: Any, chain_keys: list[bytes],
              legacy_ok: bool) -> VerifyResult:
    """Row ``row.seq`` does not hash to its stored hash: say what happened to it."""
    seq = row.seq
    origin = _written_as(_Hasher(row, chain_keys, legacy_ok), seq)
    if origin is not None and origin < seq:
        there = session.execute(select(AuditRow.hash).where(AuditRow.seq == origin)).scalar()
        if there == row.hash:
            return _bad(checked, seq, "inserted",
                        f"row {seq} repeats the entry written as row {origin}: a copy was "
                        "inserted")
        # rows origin..seq-1 verified, so whoever inserted them holds the audit key
        return _bad(origin - 1, origin, "inserted",
                    f"row {seq} holds the entry written as row {origin}: {seq - origin} "
                    f"row(s) were inserted before it")
    if origin is not None:
        # The content of a later row sits here. Reordered if this row's own entry is further
        # on; deleted if it is nowhere (the rows after a deletion were renumbered).
        for later in _stream(session, after=seq, upto=seq + REORDER_WINDOW):
            if _Hasher(later, chain_keys, legacy_ok).written_as(seq):
                return _bad(checked, seq, "reordered",
                            f"rows {seq} and {later.seq} were reordered: row {seq} holds the "
                            f"entry written as row {origin}, and row {later.seq} the entry "
                            f"written as row {seq}")
        return _bad(checked, seq, "deleted",
                    f"the entry written as row {seq} is missing and later rows were "
                    f"renumbered: row {seq} holds the entry written as row {origin}")
    nxt = session.execute(select(*COLUMNS).where(AuditRow.seq == seq + 1)).first()
    if nxt is not None and _Hasher(nxt, chain_keys, legacy_ok).written_as(seq):
        return _bad(checked, seq, "inserted",
                    f"row {seq} was inserted: the entry written as row {seq} is now row "
                    f"{seq + 1} (the rows after it were renumbered)")
    if not legacy_ok and is_legacy(row.prev_hash, row._mapping, row.hash):
        return _bad(checked, seq, "forged",
                    f"row {seq} has a plain SHA-256 hash, not one made with the audit key: it "
                    "was written or rewritten by someone without the key")
    return _bad(checked, seq, "edited",
                f"row {seq} was edited: its content no longer matches its hash under the audit "
                "key (or it was forged by someone without the key)")
