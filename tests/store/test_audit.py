"""The audit trail: hash-chained rows in seq order, and `verify` catching any change."""

from __future__ import annotations

import hashlib
import hmac
import multiprocessing
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from flows.store import audit, audit_verify
from flows.store.tables import AuditRow
from tests.store.support import past_the_guard

T0 = datetime(2026, 11, 23, 9, 30, 0, 123456, tzinfo=UTC)


def fill(store, count: int = 10) -> None:
    with store.session() as session:
        for i in range(count):
            audit.record(session, action="journey.started", result="started", actor=audit.SYSTEM,
                         touchpoint="sale", customer_id=f"C-{i}", reason=f"row {i + 1}",
                         at=T0 + timedelta(seconds=i), detail={"n": i})


def check(store) -> audit.VerifyResult:
    with store.read_session() as session:
        return audit.verify(session)


def test_the_hash_is_an_hmac_under_the_audit_key_of_the_previous_hash_and_the_canonical_json(store):
    with store.session() as session:
        row = audit.record(session, action="customers.imported", result="imported",
                           actor="cli:ops", reason="Zoë's file", at=T0,
                           detail={"b": 2, "a": [1, "x"], "when": date(2026, 1, 2)})
    expected_json = (
        '{"action":"customers.imported","actor":"cli:ops","at":"2026-11-23T09:30:00.123456+00:00",'
        '"customer_id":null,"detail":{"a":[1,"x"],"b":2,"when":"2026-01-02"},"flow_run_id":null,'
        '"journey_id":null,"reason":"Zoë\'s file","result":"imported","seq":1,"step":null,'
        '"touchpoint":null}')
    assert row.prev_hash == audit.GENESIS
    assert row.hash == hmac.new(audit.current_key(), (audit.GENESIS + expected_json).encode(),
                                hashlib.sha256).hexdigest()
    assert row.hash != hashlib.sha256((audit.GENESIS + expected_json).encode()).hexdigest()
    with store.session() as session:
        second = audit.record(session, action="x", result="ok", actor=audit.SYSTEM, at=T0)
        stored = session.get(AuditRow, 1)
        assert (second.seq, second.prev_hash) == (2, row.hash)
        assert stored.detail == {"b": 2, "a": [1, "x"], "when": "2026-01-02"}
        assert stored.at == T0


def test_an_untouched_chain_verifies(store):
    fill(store, 5)
    with store.session() as session:
        written = audit.record_many(session, [
            {"action": "email.sent", "result": "sent", "actor": audit.SYSTEM,
             "customer_id": f"C-{i}", "detail": {"i": i}} for i in range(20)])
    assert written == 20
    result = check(store)
    assert result.ok and result.checked == 25 and result.last_seq == 25
    with store.session() as session:
        assert result.last_hash == session.get(AuditRow, 25).hash


def test_an_empty_audit_table_verifies(store):
    result = check(store)
    assert result.ok and result.checked == 0 and result.last_hash is None


def test_record_many_writes_ten_thousand_rows_in_one_call(store):
    fill(store, 1)
    rows = [{"action": "email.sent", "result": "sent", "actor": audit.SYSTEM,
             "touchpoint": "outage", "step": "notify", "customer_id": f"C-{i:05d}",
             "journey_id": "J-1", "at": T0, "detail": {"recipient": i}} for i in range(10_000)]
    with store.session() as session:
        assert audit.record_many(session, rows) == 10_000
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(AuditRow)) == 10_001
        assert session.scalar(select(func.max(AuditRow.seq))) == 10_001
        last = session.get(AuditRow, 10_001)
        assert (last.customer_id, last.detail) == ("C-09999", {"recipient": 9999})
    result = check(store)
    assert result.ok and result.checked == 10_001


def test_verify_streams_in_batches_and_still_checks_every_row(store, monkeypatch):
    fill(store, 12)
    monkeypatch.setattr(audit_verify, "STREAM_BATCH", 5)
    assert check(store).checked == 12
    with past_the_guard(store) as connection:
        connection.exec_driver_sql("UPDATE audit SET reason = 'x' WHERE seq = 11")
    assert check(store).first_bad_seq == 11


def test_verify_names_an_edited_row(store):
    fill(store)
    with past_the_guard(store) as connection:
        connection.exec_driver_sql("UPDATE audit SET customer_id = 'C-999' WHERE seq = 4")
    result = check(store)
    assert (result.ok, result.problem, result.first_bad_seq, result.checked) == (False, "edited", 4, 3)
    assert "row 4 was edited" in result.message


def test_verify_names_an_edited_detail_and_an_edited_timestamp(store):
    fill(store)
    with past_the_guard(store) as connection:
        connection.exec_driver_sql("UPDATE audit SET detail = '{\"n\": 70}' WHERE seq = 7")
    assert (check(store).problem, check(store).first_bad_seq) == ("edited", 7)
    with past_the_guard(store) as connection:
        row = connection.execute(select(AuditRow.at).where(AuditRow.seq == 2)).scalar_one()
        connection.execute(AuditRow.__table__.update().where(AuditRow.seq == 2)
                           .values(at=row + timedelta(microseconds=1)))
    assert (check(store).problem, check(store).first_bad_seq) == ("edited", 2)


def test_verify_names_a_deleted_row(store):
    fill(store)
    with past_the_guard(store) as connection:
        connection.exec_driver_sql("DELETE FROM audit WHERE seq = 6")
    result = check(store)
    assert (result.problem, result.first_bad_seq) == ("deleted", 6)
    assert "row 6 is missing" in result.message


def test_verify_names_deleted_first_rows(store):
    fill(store)
    with past_the_guard(store) as connection:
        connection.exec_driver_sql("DELETE FROM audit WHERE seq <= 2")
    result = check(store)
    assert (result.problem, result.first_bad_seq) == ("deleted", 1)
    assert "rows 1 to 2 are missing" in result.message


def test_verify_catches_a_deletion_hidden_by_renumbering(store):
    fill(store)
    with past_the_guard(store) as connection:
        connection.exec_driver_sql("DELETE FROM audit WHERE seq = 5")
        for seq in range(6, 11):
            connection.exec_driver_sql(f"UPDATE audit SET seq = {seq - 1} WHERE seq = {seq}")
    result = check(store)
    assert (result.problem, result.first_bad_seq) == ("deleted", 5)


def _rewrite(store, seq: int, hasher, **changes) -> None:
    with past_the_guard(store) as connection:
        row = dict(connection.execute(select(AuditRow.__table__).where(AuditRow.seq == seq))
                   .mappings().one())
        row.update(changes)
        connection.execute(AuditRow.__table__.update().where(AuditRow.seq == seq).values(
            **changes, hash=hasher(row["prev_hash"], row)))


def test_a_row_rewritten_with_a_recomputed_plain_hash_is_named_at_itself_as_forged(store):
    fill(store)
    _rewrite(store, 3, audit.legacy_hash, reason="nothing happened")
    result = check(store)
    assert (result.problem, result.first_bad_seq, result.checked) == ("forged", 3, 2)
    assert "row 3 has a plain SHA-256 hash" in result.message


def test_a_row_rewritten_by_a_key_holder_is_named_at_itself_through_the_broken_link(store):
    """Someone holding the audit key edits row 3 and recomputes its hash: row 3 checks out
    alone, but row 4 was chained to a different row 3."""
    fill(store)
    _rewrite(store, 3, audit.row_hash, reason="nothing happened")
    result = check(store)
    assert (result.problem, result.first_bad_seq, result.checked) == ("edited", 3, 2)
    assert "row 3 was rewritten" in result.message and "audit key" in result.message


def test_a_forged_append_with_a_correct_plain_hash_is_named(store):
    fill(store)
    with store.session() as session:
        last = session.get(AuditRow, 10)
        forged = {"seq": 11, "at": T0, "action": "survey.answered", "result": "answered",
                  "actor": audit.SYSTEM, "reason": "", "detail": {}, "touchpoint": None,
                  "step": None, "customer_id": "C-1", "journey_id": None, "flow_run_id": None}
        session.add(AuditRow(**forged, prev_hash=last.hash,
                             hash=audit.legacy_hash(last.hash, forged)))
    result = check(store)
    assert (result.ok, result.problem, result.first_bad_seq) == (False, "forged", 11)


def test_a_replayed_copy_of_a_row_is_named_as_inserted(store):
    fill(store)
    with store.session() as session:
        row = session.get(AuditRow, 4)
        copy = {column.name: getattr(row, column.name) for column in AuditRow.__table__.columns}
        session.add(AuditRow(**{**copy, "seq": 11}))
    result = check(store)
    assert (result.problem, result.first_bad_seq) == ("inserted", 11)
    assert "repeats the entry written as row 4" in result.message


def test_after_a_key_rotation_old_rows_verify_under_the_previous_key_new_ones_under_the_new(store):
    audit.use_keys(["old secret"])
    try:
        fill(store, 3)
        audit.use_keys(["old secret", "new secret"])
        with store.session() as session:
            audit.record(session, action="x", result="ok", actor=audit.SYSTEM, at=T0)
        assert check(store).ok and check(store).checked == 4
        audit.use_keys(["new secret"])  # the old key dropped from the list too early
        assert (check(store).problem, check(store).first_bad_seq) == ("edited", 1)
    finally:
        audit.use_keys(None)


def test_verify_names_swapped_rows(store):
    fill(store)
    with past_the_guard(store) as connection:
        connection.exec_driver_sql("UPDATE audit SET seq = -1 WHERE seq = 3")
        connection.exec_driver_sql("UPDATE audit SET seq = 3 WHERE seq = 7")
        connection.exec_driver_sql("UPDATE audit SET seq = 7 WHERE seq = -1")
    result = check(store)
    assert (result.problem, result.first_bad_seq) == ("reordered", 3)
    assert "rows 3 and 7 were reordered" in result.message


def test_verify_names_an_inserted_row(store):
    fill(store)
    with past_the_guard(store) as connection:
        for seq in range(10, 4, -1):
            connection.exec_driver_sql(f"UPDATE audit SET seq = {seq + 1} WHERE seq = {seq}")
        prev = connection.execute(select(AuditRow.hash).where(AuditRow.seq == 4)).scalar_one()
        forged = {"seq": 5, "at": T0, "action": "survey.answered", "result": "answered",
                  "actor": audit.SYSTEM, "reason": "", "detail": {}, "touchpoint": None,
                  "step": None, "customer_id": "C-1", "journey_id": None, "flow_run_id": None}
        connection.execute(AuditRow.__table__.insert().values(
            **forged, prev_hash=prev, hash=audit.row_hash(prev, forged)))
    result = check(store)
    assert (result.problem, result.first_bad_seq) == ("inserted", 5)


@pytest.mark.postgres
def test_postgres_refuses_tampering_until_the_owner_disables_the_trigger(postgres_store):
    from sqlalchemy.exc import IntegrityError

    fill(postgres_store)
    with pytest.raises(IntegrityError, match="append-only"), \
            postgres_store.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE audit SET reason = 'x' WHERE seq = 2")
    assert check(postgres_store).ok
    with past_the_guard(postgres_store) as connection:
        connection.exec_driver_sql("UPDATE audit SET reason = 'x' WHERE seq = 2")
    assert (check(postgres_store).problem, check(postgres_store).first_bad_seq) == ("edited", 2)


def test_query_filters_and_keeps_the_newest_rows_oldest_first(store):
    fill(store, 6)
    with store.session() as session:
        audit.record(session, action="journey.cancelled", result="cancelled", actor="cli:ops",
                     touchpoint="renewal", customer_id="C-2")
        audit.record(session, action="customers.imported", result="imported", actor="cli:ops")
    with store.session() as session:
        assert [r.seq for r in audit.query(session, customer_id="C-2")] == [3, 7]
        assert [r.seq for r in audit.query(session, touchpoint="renewal")] == [7]
        assert [r.seq for r in audit.query(session, action="journey.*")] == [1, 2, 3, 4, 5, 6, 7]
        assert [r.seq for r in audit.query(session, action="journey.cancelled")] == [7]
        assert [r.seq for r in audit.query(session, limit=3)] == [6, 7, 8]


def test_record_refuses_naive_times_and_unknown_fields(store):
    with store.session() as session, pytest.raises(ValueError, match="aware"):
        audit.record(session, action="x", result="ok", actor=audit.SYSTEM,
                     at=datetime(2026, 1, 1))
    with store.session() as session, pytest.raises(TypeError, match="colour"):
        audit.record_many(session, [{"action": "x", "result": "ok", "actor": "system",
                                     "colour": "red"}])
    assert check(store).checked == 0


def _append(url: str, worker: int, count: int) -> None:
    from flows.store.db import Store

    store = Store(url)
    try:
        for i in range(count):
            with store.session() as session:
                audit.record(session, action="test.concurrent", result="ok",
                             actor=f"worker:{worker}", reason=str(i))
    finally:
        store.dispose()


def test_writers_in_several_processes_keep_one_unbroken_chain(store, monkeypatch, request):
    from flows.settings import reset_settings

    request.addfinalizer(reset_settings)
    # every process derives the same key from the environment (the parent's cached settings of
    # an earlier test must not decide it)
    monkeypatch.setenv("TOUCHPOINTS_AUDIT_KEY", "several-writers-" + "k" * 32)
    reset_settings()
    audit.use_keys(None)
    workers, each = 4, 15
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.starmap(_append, [(store.url, w, each) for w in range(workers)])
    result = check(store)
    assert result.ok and result.checked == workers * each
    with store.session() as session:
        actors = [r.actor for r in audit.query(session)]
    assert sorted(actors) == sorted(f"worker:{w}" for w in range(workers) for _ in range(each))
