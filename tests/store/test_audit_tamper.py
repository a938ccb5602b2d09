"""Property: whatever someone without the audit key does to the audit table (edit, delete,
reorder, insert, replay, truncate the tail, append forged rows with a correct plain hash,
recompute the chain), `verify` against the latest checkpoint finds it and names the first bad
row, every time.

One real store is written once (SQLite, through `record` and `record_many`); each example
restores an in-memory copy of it with the append-only triggers dropped, tampers with that copy
through SQL and verifies it through the same code path as `touchpoints audit verify`."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import bindparam, create_engine, select, update
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from flows.store import audit, audit_verify
from flows.store.db import Store
from flows.store.tables import AuditRow

SECRET = "tamper-test audit secret"
ROWS = 30
T0 = datetime(2026, 11, 23, 9, 30, 0, 123456, tzinfo=UTC)
TABLE = AuditRow.__table__
TEXT_COLUMNS = ("action", "touchpoint", "step", "customer_id", "journey_id", "flow_run_id",
                "result", "reason", "actor")
NOT_NULL = {"action", "result", "reason", "actor"}
HEX = st.binary(min_size=32, max_size=32).map(bytes.hex)  # a random 64-digit hash
PARKED = 10**9  # a seq no row has, for moving rows around


@dataclass(repr=False)
class Copy:
    engine: object
    raw: sqlite3.Connection
    rows: list[dict]  # the untouched rows, seq order
    checkpoint: dict


def _write_real_store(store: Store) -> None:
    with store.session() as session:
        for i in range(ROWS // 3):
            audit.record(session, action=("journey.started", "email.sent", "task.created")[i % 3],
                         result=("started", "sent", "created")[i % 3], actor=audit.SYSTEM,
                         touchpoint="sale" if i % 2 else None, step="welcome" if i % 4 else None,
                         customer_id=f"C-{i}", journey_id=f"J-{i // 2}",
                         flow_run_id=None if i % 5 else f"run-{i}",
                         reason=("", "to zoë@example.com", "Ångström's \"quote\"")[i % 3],
                         at=T0 + timedelta(seconds=i, microseconds=i),
                         detail={"n": i, "tags": ["a", i], "nested": {"ok": bool(i % 2)}})
    with store.session() as session:
        audit.record_many(session, [
            {"action": "email.suppressed", "result": "suppressed", "actor": f"api:key-{i % 3}",
             "touchpoint": "outage", "step": "notify", "customer_id": f"C-{i:03d}",
             "reason": "held: surveys", "detail": {"category": "surveys", "i": i}}
            for i in range(ROWS - ROWS // 3)])


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    window = audit_verify.REORDER_WINDOW
    audit_verify.REORDER_WINDOW = 2 * ROWS  # reaches every row of this store, and is faster
    audit.use_keys([SECRET])
    path = tmp_path_factory.mktemp("tamper") / "touchpoints.db"
    store = Store(f"sqlite:///{path}")
    try:
        store.migrate()
        _write_real_store(store)
        with store.read_session() as session:
            assert audit.verify(session).ok
            seq, head = audit.head(session)
        store.dispose()
        pristine = sqlite3.connect(":memory:")
        with sqlite3.connect(path) as disk:
            disk.backup(pristine)
        for name in ("audit_refuse_update", "audit_refuse_delete"):  # the guard, dropped
            pristine.execute(f"DROP TRIGGER IF EXISTS {name}")
        pristine.commit()
        raw = sqlite3.connect(":memory:", check_same_thread=False)
        engine = create_engine("sqlite://", creator=lambda: raw, poolclass=StaticPool)
        pristine.backup(raw)
        with engine.connect() as connection:
            rows = [dict(r) for r in connection.execute(select(TABLE).order_by(AuditRow.seq))
                    .mappings()]
        yield pristine, Copy(engine, raw, rows, {"seq": seq, "hash": head, "legacy_rows": 0})
    finally:
        audit.use_keys(None)
        audit_verify.REORDER_WINDOW = window


# --------------------------------------------------------------------------- mutations
def _renumber(connection, after: int, by: int) -> None:
    """Shift every row after ``after`` by ``by`` (through negative seqs: no key clash)."""
    connection.exec_driver_sql("UPDATE audit SET seq = -(seq + ?) WHERE seq > ?", (by, after))
    connection.exec_driver_sql("UPDATE audit SET seq = -seq WHERE seq < 0")


def _forged(seq: int, prev: str, data) -> dict:
    fields = {"seq": seq, "at": T0 + timedelta(days=data.draw(st.integers(0, 30))),
              "action": data.draw(st.sampled_from(["survey.answered", "email.sent"])),
              "result": "ok", "actor": "cli:mallory", "reason": "", "detail": {"forged": True},
              "touchpoint": None, "step": None, "customer_id": "C-1", "journey_id": None,
              "flow_run_id": None, "prev_hash": prev}
    fields["hash"] = (audit.legacy_hash(prev, fields) if data.draw(st.booleans())
                      else data.draw(HEX))
    return fields


def _edit(connection, rows, data):
    i = data.draw(st.integers(1, ROWS), label="row")
    row = rows[i - 1]
    column = data.draw(st.sampled_from((*TEXT_COLUMNS, "at", "detail", "prev_hash", "hash",
                                        "hash→plain")), label="column")
    if column == "hash→plain":  # its hash recomputed the way someone without the key would
        connection.execute(update(TABLE).where(AuditRow.seq == i).values(
            hash=audit.legacy_hash(row["prev_hash"], row)))
        return i, {"forged"}
    if column == "at":
        value = row["at"] + timedelta(microseconds=data.draw(
            st.integers(-10**9, 10**9).filter(bool)))
    elif column == "detail":
        value = data.draw(st.dictionaries(st.text(max_size=4), st.integers() | st.text(max_size=4),
                                          max_size=3).filter(lambda d: d != row["detail"]))
    elif column in ("prev_hash", "hash"):
        other = [r["hash"] for r in rows] + [audit.GENESIS]
        value = data.draw(st.sampled_from(other) | HEX)
    else:
        strategy = st.text(max_size=20)
        value = data.draw(strategy if column in NOT_NULL else st.none() | strategy)
    if value == row[column]:
        value = (value or "") + "x" if column not in ("at", "detail") else value
    if value == row[column]:
        return None
    connection.execute(update(TABLE).where(AuditRow.seq == i).values({column: value}))
    return i, {"edited"}


def _delete(connection, rows, data):
    i = data.draw(st.integers(1, ROWS), label="first")
    j = data.draw(st.integers(i, min(ROWS, i + 3)), label="last")
    connection.exec_driver_sql("DELETE FROM audit WHERE seq BETWEEN ? AND ?", (i, j))
    if j == ROWS:
        return i, {"truncated"}
    if data.draw(st.booleans(), label="renumber"):
        _renumber(connection, j, -(j - i + 1))
    return i, {"deleted"}


def _truncate(connection, rows, data):
    keep = data.draw(st.integers(0, ROWS - 1), label="keep")
    connection.exec_driver_sql("DELETE FROM audit WHERE seq > ?", (keep,))
    return keep + 1, {"truncated"}


def _reorder(connection, rows, data):
    i = data.draw(st.integers(1, ROWS), label="from")
    j = data.draw(st.integers(1, ROWS).filter(lambda j: j != i), label="to")
    sql = connection.exec_driver_sql
    if data.draw(st.booleans(), label="swap"):
        sql("UPDATE audit SET seq = ? WHERE seq = ?", (-PARKED, i))
        sql("UPDATE audit SET seq = ? WHERE seq = ?", (i, j))
        sql("UPDATE audit SET seq = ? WHERE seq = ?", (j, -PARKED))
    else:  # move row i to position j, the rows between shift by one
        sql("UPDATE audit SET seq = ? WHERE seq = ?", (-PARKED, i))
        if i < j:
            sql("UPDATE audit SET seq = -(seq - 1) WHERE seq BETWEEN ? AND ?", (i + 1, j))
        else:
            sql("UPDATE audit SET seq = -(seq + 1) WHERE seq BETWEEN ? AND ?", (j, i - 1))
        sql("UPDATE audit SET seq = ? WHERE seq = ?", (-j, -PARKED))
        sql("UPDATE audit SET seq = -seq WHERE seq < 0")
    return min(i, j), {"reordered"}


def _insert(connection, rows, data):
    i = data.draw(st.integers(1, ROWS + 1), label="at")
    prev = rows[i - 2]["hash"] if i > 1 else audit.GENESIS
    if data.draw(st.booleans(), label="replay") and i > 1:  # a copy of an older row
        k = data.draw(st.integers(1, i - 1), label="copy of")
        fields = {**rows[k - 1], "seq": i}
    else:
        fields = _forged(i, prev, data)
    _renumber(connection, i - 1, 1)
    connection.execute(TABLE.insert().values(fields))
    if "forged" in fields["detail"] and i == ROWS + 1:  # an append
        return i, {"forged"} if fields["hash"] == audit.legacy_hash(prev, fields) else {"edited"}
    return i, {"inserted"}


def _append(connection, rows, data):
    count = data.draw(st.integers(1, 3), label="appended")
    prev = rows[-1]["hash"]
    for seq in range(ROWS + 1, ROWS + 1 + count):
        fields = _forged(seq, prev, data)
        fields["hash"] = audit.legacy_hash(prev, fields)  # correct, but not keyed
        connection.execute(TABLE.insert().values(fields))
        prev = fields["hash"]
    return ROWS + 1, {"forged"}


def _recompute(connection, rows, data):
    """Rewrite the chain from row i on: edit it (or not) and recompute every later hash, with
    the plain hash or with a guessed key."""
    i = data.draw(st.integers(1, ROWS), label="from")
    guessed = data.draw(st.none() | st.text(min_size=1, max_size=8), label="guessed key")
    prev = rows[i - 2]["hash"] if i > 1 else audit.GENESIS
    edit = data.draw(st.booleans(), label="edit too")
    changed = []
    for seq in range(i, ROWS + 1):
        fields = dict(rows[seq - 1])
        if seq == i and edit:
            fields["reason"] += " (nothing happened)"
        fields["prev_hash"] = prev
        fields["hash"] = prev = (audit.legacy_hash(prev, fields) if guessed is None else
                                 audit.row_hash(prev, fields, audit.derive_key(guessed)))
        changed.append({"b_seq": seq, "b_reason": fields["reason"], "b_prev": fields["prev_hash"],
                        "b_hash": fields["hash"]})
    connection.execute(update(TABLE).where(AuditRow.seq == bindparam("b_seq")).values(
        reason=bindparam("b_reason"), prev_hash=bindparam("b_prev"), hash=bindparam("b_hash")),
        changed)
    return i, {"forged"} if guessed is None else {"edited"}


MUTATIONS = {"edit": _edit, "delete": _delete, "truncate": _truncate, "reorder": _reorder,
             "insert": _insert, "append": _append, "recompute": _recompute}


# --------------------------------------------------------------------------- the property
def test_the_untouched_copy_verifies_against_its_checkpoint(real):
    pristine, copy = real
    pristine.backup(copy.raw)
    with Session(copy.engine) as session:
        result = audit.verify(session, checkpoint=copy.checkpoint,
                              chain_keys=[audit.derive_key(SECRET)])
    assert result.ok and result.checked == ROWS and result.last_hash == copy.checkpoint["hash"]


@settings(max_examples=1000, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(MUTATIONS)), data=st.data())
def test_every_tampering_is_detected_at_the_first_bad_row(real, kind, data):
    pristine, copy = real
    pristine.backup(copy.raw)
    with copy.engine.begin() as connection:
        outcome = MUTATIONS[kind](connection, copy.rows, data)
    if outcome is None:  # the drawn edit changed nothing
        return
    first_bad, problems = outcome
    with Session(copy.engine) as session:
        result = audit_verify.verify(session, checkpoint=copy.checkpoint,
                                     chain_keys=[audit.derive_key(SECRET)])
    assert not result.ok, f"{kind} went unnoticed"
    assert (result.first_bad_seq, result.problem in problems) == (first_bad, True), \
        (kind, result)
    assert result.checked == first_bad - 1
