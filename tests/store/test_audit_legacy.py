"""Stores written before the audit chain was keyed: their plain SHA-256 rows verify as legacy
rows, the first keyed write records the switch-over (`audit.rekeyed`, with the legacy row count
and head), and from there on a plain hash is a forgery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from flows.store import audit, audit_verify, checkpoints
from flows.store.tables import AuditRow
from tests.store.support import past_the_guard

T0 = datetime(2025, 3, 1, 8, 0, 0, 654321, tzinfo=UTC)


def write_legacy_rows(store, count: int) -> str:
    """Rows as versions before the keyed chain wrote them: sha256(prev_hash + canonical)."""
    prev = audit.GENESIS
    with store.session() as session:
        for seq in range(1, count + 1):
            fields = {"seq": seq, "at": T0 + timedelta(minutes=seq), "action": "email.sent",
                      "result": "sent", "actor": audit.SYSTEM, "reason": f"legacy {seq}",
                      "touchpoint": "sale", "step": "welcome", "customer_id": f"C-{seq}",
                      "journey_id": None, "flow_run_id": None, "detail": {"old": True}}
            digest = audit.legacy_hash(prev, fields)
            session.add(AuditRow(**fields, prev_hash=prev, hash=digest))
            prev = digest
    return prev


def check(store, **kwargs) -> audit_verify.VerifyResult:
    with store.read_session() as session:
        return audit_verify.verify(session, **kwargs)


def add_row(store, **kwargs) -> None:
    with store.session() as session:
        audit.record(session, action="journey.started", result="started", actor=audit.SYSTEM,
                     **kwargs)


def test_a_store_of_legacy_rows_verifies_and_says_it_is_not_keyed_yet(store):
    write_legacy_rows(store, 5)
    result = check(store)
    assert (result.ok, result.checked, result.legacy_rows) == (True, 5, 5)
    assert "5 written before keying" in result.message
    assert "switch-over is recorded at the next write" in result.message


def test_the_first_keyed_write_records_the_switch_over_with_the_legacy_head(store):
    legacy_head = write_legacy_rows(store, 4)
    add_row(store, customer_id="C-9")
    with store.session() as session:
        rekeyed, first = session.get(AuditRow, 5), session.get(AuditRow, 6)
        assert (rekeyed.action, rekeyed.prev_hash) == (audit.REKEYED, legacy_head)
        assert rekeyed.detail == {"legacy_rows": 4, "legacy_head": legacy_head,
                                  "scheme": "hmac-sha256"}
        assert rekeyed.hash == audit.row_hash(legacy_head, rekeyed.__dict__)
        assert (first.customer_id, first.prev_hash) == ("C-9", rekeyed.hash)
    add_row(store)  # only once
    with store.session() as session:
        assert len(audit.query(session, action=audit.REKEYED)) == 1
    result = check(store)
    assert (result.ok, result.checked, result.legacy_rows) == (True, 7, 4)
    assert "(4 written before keying, with plain SHA-256 hashes)" in result.message


def test_record_many_on_a_legacy_store_counts_only_its_own_rows(store):
    write_legacy_rows(store, 2)
    with store.session() as session:
        assert audit.record_many(session, [{"action": "x", "result": "ok",
                                            "actor": "system"}] * 3) == 3
    assert check(store).checked == 6


def test_a_checkpoint_of_a_legacy_store_records_the_switch_over_and_how_many_rows_were_legacy(
        store, store_settings):
    write_legacy_rows(store, 3)
    written = checkpoints.write_checkpoint(store, store_settings)
    assert written.switched_over and written.body["legacy_rows"] == 3
    assert written.body["seq"] == 4
    assert not checkpoints.write_checkpoint(store, store_settings).switched_over
    result = check(store, checkpoint=checkpoints.latest_checkpoint(store_settings))
    assert (result.ok, result.legacy_rows, result.checkpoint_seq) == (True, 3, 4)


def test_after_the_switch_over_a_plain_hash_is_a_forgery_and_legacy_edits_are_named(store):
    write_legacy_rows(store, 4)
    add_row(store)
    with store.session() as session:
        last = session.get(AuditRow, 6)
        forged = {"seq": 7, "at": T0, "action": "survey.answered", "result": "answered",
                  "actor": audit.SYSTEM, "reason": "", "detail": {}, "touchpoint": None,
                  "step": None, "customer_id": "C-1", "journey_id": None, "flow_run_id": None}
        session.add(AuditRow(**forged, prev_hash=last.hash,
                             hash=audit.legacy_hash(last.hash, forged)))
    assert (check(store).problem, check(store).first_bad_seq) == ("forged", 7)
    with past_the_guard(store) as connection:
        connection.exec_driver_sql("DELETE FROM audit WHERE seq = 7")
        connection.exec_driver_sql("UPDATE audit SET reason = 'changed' WHERE seq = 2")
    assert (check(store).problem, check(store).first_bad_seq) == ("edited", 2)


def test_legacy_rows_rewritten_with_their_hashes_recomputed_break_the_link_to_the_switch_over(
        store):
    """Legacy rows carry no key, so a rewrite of them with recomputed plain hashes is found
    where it meets the keyed chain: the switch-over recorded the legacy head."""
    write_legacy_rows(store, 4)
    add_row(store)
    with past_the_guard(store) as connection:
        rows = [dict(r) for r in connection.execute(
            select(AuditRow.__table__).where(AuditRow.seq <= 4).order_by(AuditRow.seq)).mappings()]
        prev = rows[1]["hash"]
        for row in rows[2:]:
            row["reason"] = "rewritten"
            row["prev_hash"], row["hash"] = prev, audit.legacy_hash(prev, {**row, "prev_hash": prev})
            prev = row["hash"]
            connection.execute(AuditRow.__table__.update().where(AuditRow.seq == row["seq"])
                               .values(reason="rewritten", prev_hash=row["prev_hash"],
                                       hash=row["hash"]))
    result = check(store)
    assert (result.ok, result.problem, result.first_bad_seq) == (False, "edited", 4)
    assert "row 4 was rewritten" in result.message


def test_with_a_checkpoint_of_a_keyed_chain_a_chain_recomputed_without_the_key_fails_at_row_1(
        store, store_settings):
    for i in range(3):
        add_row(store, customer_id=f"C-{i}")
    checkpoint = checkpoints.write_checkpoint(store, store_settings).body
    assert checkpoint["legacy_rows"] == 0
    with past_the_guard(store) as connection:
        rows = [dict(r) for r in connection.execute(
            select(AuditRow.__table__).order_by(AuditRow.seq)).mappings()]
        prev = audit.GENESIS
        for row in rows:
            row["prev_hash"], row["hash"] = prev, audit.legacy_hash(prev, row)
            prev = row["hash"]
            connection.execute(AuditRow.__table__.update().where(AuditRow.seq == row["seq"])
                               .values(prev_hash=row["prev_hash"], hash=row["hash"]))
    result = check(store, checkpoint=checkpoints.latest_checkpoint(store_settings))
    assert (result.ok, result.problem, result.first_bad_seq) == (False, "forged", 1)
    # Without any checkpoint it looks like a store from before keying, and says so:
    unanchored = check(store)
    assert unanchored.ok and unanchored.legacy_rows == 3 and "before keying" in unanchored.message


def test_a_keyed_row_after_legacy_rows_must_be_the_switch_over(store):
    legacy_head = write_legacy_rows(store, 2)
    with store.session() as session:
        fields = {"seq": 3, "at": T0, "action": "journey.started", "result": "started",
                  "actor": audit.SYSTEM, "reason": "", "detail": {}, "touchpoint": None,
                  "step": None, "customer_id": None, "journey_id": None, "flow_run_id": None}
        session.add(AuditRow(**fields, prev_hash=legacy_head,
                             hash=audit.row_hash(legacy_head, fields)))
    result = check(store)
    assert (result.ok, result.problem, result.first_bad_seq) == (False, "forged", 3)
    assert "not the switch-over" in result.message


def test_a_plain_row_forged_onto_a_keyed_chain_is_not_taken_for_a_switch_over_point(store):
    add_row(store)
    with store.session() as session:
        last = session.get(AuditRow, 1)
        forged = {"seq": 2, "at": T0, "action": "survey.answered", "result": "answered",
                  "actor": audit.SYSTEM, "reason": "", "detail": {}, "touchpoint": None,
                  "step": None, "customer_id": "C-1", "journey_id": None, "flow_run_id": None}
        session.add(AuditRow(**forged, prev_hash=last.hash,
                             hash=audit.legacy_hash(last.hash, forged)))
    add_row(store)
    with store.session() as session:
        assert audit.query(session, action=audit.REKEYED) == []
    assert (check(store).problem, check(store).first_bad_seq) == ("forged", 2)
