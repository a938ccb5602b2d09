"""API keys: made once, stored as a hash, verified in constant time, revoked, audited; and the
`touchpoints keys` commands."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from flows import keys
from flows.errors import NotFoundError, StoreError, TouchpointsError
from flows.store.tables import ApiKey, AuditRow


@pytest.fixture
def session(store):
    """A session on SQLite and on PostgreSQL (the ``store`` fixture runs each test on both)."""
    with store.session() as session:
        yield session


def audit(session, action: str) -> list[AuditRow]:
    session.flush()
    return list(session.scalars(select(AuditRow).where(AuditRow.action == action)
                                .order_by(AuditRow.seq)))


def test_a_new_key_reads_tp_id_secret_and_only_its_hash_is_stored(session):
    key_id, full_key, hmac_secret = keys.create_key(session, "crm", actor="cli:admin")
    assert full_key.startswith(f"tp_{key_id}_") and len(full_key) > 50
    assert hmac_secret is None
    row = session.get(ApiKey, key_id)
    assert row.name == "crm" and row.revoked_at is None
    assert row.key_hash == hashlib.sha256(full_key.encode()).hexdigest()
    assert full_key not in json.dumps([row.key_hash, row.name, row.id, row.hmac_secret])


def test_making_a_key_is_audited_without_the_key(session):
    key_id, full_key, _ = keys.create_key(session, "billing", actor="cli:admin")
    [row] = audit(session, "apikey.created")
    assert (row.actor, row.detail["key_id"]) == ("cli:admin", key_id)
    assert full_key not in json.dumps(row.detail) + row.reason


def test_a_signing_key_also_gets_an_hmac_secret_stored_sealed(session):
    key_id, _, hmac_secret = keys.create_key(session, "monitoring", hmac=True, actor="cli:admin",
                                             secret_key="k1")
    assert hmac_secret.startswith("whsec_")
    stored = session.get(ApiKey, key_id).hmac_secret
    assert stored.startswith(keys.SEALED_PREFIX) and hmac_secret[6:] not in stored
    assert len(stored) <= 512  # the column's width (migration 0003)
    assert keys.open_secret(stored, key_id=key_id, secret_key="k1") == hmac_secret


def test_sealing_the_same_secret_twice_gives_two_different_texts():
    one = keys.seal_secret("whsec_x", key_id="0123456789ab", secret_key="k1")
    two = keys.seal_secret("whsec_x", key_id="0123456789ab", secret_key="k1")
    assert one != two  # a fresh nonce each time


@pytest.mark.parametrize("key_id, secret_key", [("0123456789ab", "another secret key"),
                                                ("ba9876543210", "k1")])
def test_a_sealed_secret_opens_only_with_its_secret_key_and_on_its_own_key(key_id, secret_key):
    sealed = keys.seal_secret("whsec_x", key_id="0123456789ab", secret_key="k1")
    with pytest.raises(StoreError) as caught:
        keys.open_secret(sealed, key_id=key_id, secret_key=secret_key)
    assert "secret key" in caught.value.hint and "whsec_x" not in caught.value.message


@pytest.mark.parametrize("garbage", ["tpenc1:", "tpenc1:!!!", "tpenc1:" + "A" * 40])
def test_a_damaged_sealed_secret_is_a_store_error_not_a_crash(garbage):
    with pytest.raises(StoreError):
        keys.open_secret(garbage, key_id="0123456789ab", secret_key="k1")


def clear_text_key(session, secret: str = "whsec_from_an_older_version") -> str:
    """A signing key as older versions stored it: the secret in the clear."""
    key_id, _, _ = keys.create_key(session, "legacy", actor="t")
    session.get(ApiKey, key_id).hmac_secret = secret
    session.flush()
    return key_id


def test_a_clear_text_secret_still_verifies_and_is_sealed_on_first_use(store):
    with store.session() as session:
        key_id = clear_text_key(session)
    assert keys.reveal_secret(store, key_id, "whsec_from_an_older_version",
                              secret_key="k1") == "whsec_from_an_older_version"
    with store.session() as session:
        stored = session.get(ApiKey, key_id).hmac_secret
    assert keys.is_sealed(stored)
    assert keys.reveal_secret(store, key_id, stored, secret_key="k1") == \
        "whsec_from_an_older_version"


def test_seal_clear_secrets_seals_the_clear_ones_and_leaves_sealed_ones(session):
    legacy = clear_text_key(session)
    sealed_id, _, _ = keys.create_key(session, "new", hmac=True, actor="t", secret_key="k1")
    before = session.get(ApiKey, sealed_id).hmac_secret
    assert keys.seal_clear_secrets(session, secret_key="k1") == 1
    assert keys.seal_clear_secrets(session, secret_key="k1") == 0
    assert session.get(ApiKey, sealed_id).hmac_secret == before
    assert keys.open_secret(session.get(ApiKey, legacy).hmac_secret, key_id=legacy,
                            secret_key="k1") == "whsec_from_an_older_version"


def test_keys_are_unique(session):
    made = {keys.create_key(session, f"k{i}", actor="t")[1] for i in range(20)}
    assert len(made) == 20


def test_a_key_verifies_and_a_wrong_one_does_not(session):
    key_id, full_key, _ = keys.create_key(session, "crm", actor="t")
    assert keys.verify_key(session, full_key).id == key_id
    assert keys.verify_key(session, f"  {full_key} ").id == key_id
    for wrong in [full_key[:-1] + ("a" if full_key[-1] != "a" else "b"), full_key + "x",
                  f"tp_{key_id}_", "tp_000000000000_" + "a" * 43, "", None, "Bearer " + full_key,
                  full_key.upper(), key_id]:
        assert keys.verify_key(session, wrong) is None, wrong


def test_a_revoked_key_no_longer_verifies_and_the_revocation_is_audited(session):
    key_id, full_key, _ = keys.create_key(session, "crm", actor="t")
    keys.revoke_key(session, key_id, actor="cli:admin", reason="leaked")
    assert keys.verify_key(session, full_key) is None
    [row] = audit(session, "apikey.revoked")
    assert (row.actor, row.reason) == ("cli:admin", "leaked")


def test_revoking_twice_is_harmless_and_audited_once(session):
    key_id, _, _ = keys.create_key(session, "crm", actor="t")
    first = keys.revoke_key(session, key_id, actor="t").revoked_at
    assert keys.revoke_key(session, key_id, actor="t").revoked_at == first
    assert len(audit(session, "apikey.revoked")) == 1


def test_a_key_can_be_revoked_by_its_id_or_by_the_whole_key(session):
    key_id, full_key, _ = keys.create_key(session, "crm", actor="t")
    assert keys.revoke_key(session, full_key, actor="t").id == key_id


def test_revoking_an_unknown_key_is_not_found(session):
    with pytest.raises(NotFoundError):
        keys.revoke_key(session, "0123456789ab", actor="t")
    with pytest.raises(NotFoundError):
        keys.revoke_key(session, "'; drop table api_keys", actor="t")


@pytest.mark.parametrize("name", ["", "   ", "x" * 201])
def test_a_key_needs_a_sensible_name(session, name):
    with pytest.raises(TouchpointsError):
        keys.create_key(session, name, actor="t")


def test_listed_keys_show_ids_names_and_status_but_no_secrets(session):
    a, _, _ = keys.create_key(session, "crm", actor="t")
    b, _, _ = keys.create_key(session, "monitoring", hmac=True, actor="t")
    keys.revoke_key(session, a, actor="t")
    rows = {r["id"]: r for r in keys.list_keys(session)}
    assert (rows[a]["status"], rows[b]["status"], rows[b]["hmac"]) == ("revoked", "active", True)
    assert set(rows[a]) == {"id", "name", "hmac", "created_at", "revoked_at", "status"}


# ---------------------------------------------------------------------- signatures
def test_a_signature_covers_the_timestamp_and_the_exact_body():
    now = int(time.time())
    signature = keys.sign("whsec_s", now, b'{"a":1}')
    assert keys.check_signature("whsec_s", timestamp=str(now), signature=signature,
                                body=b'{"a":1}') is None
    assert keys.check_signature("whsec_s", timestamp=str(now), signature=signature,
                                body=b'{"a": 1}') is not None
    assert keys.check_signature("whsec_s", timestamp=str(now + 1), signature=signature,
                                body=b'{"a":1}') is not None
    assert keys.check_signature("whsec_t", timestamp=str(now), signature=signature,
                                body=b'{"a":1}') is not None


def test_a_signature_is_the_documented_hmac_sha256():
    import hmac as std_hmac

    expected = std_hmac.new(b"whsec_s", b"1700000000." + b"body", hashlib.sha256).hexdigest()
    assert keys.sign("whsec_s", 1700000000, b"body") == f"sha256={expected}"


def test_a_signature_outside_the_tolerance_is_refused():
    old = int(time.time()) - 400
    signature = keys.sign("whsec_s", old, b"x")
    assert "300 s" in keys.check_signature("whsec_s", timestamp=str(old), signature=signature,
                                           body=b"x")
    assert keys.check_signature("whsec_s", timestamp=str(old), signature=signature, body=b"x",
                                tolerance=600) is None


# ---------------------------------------------------------------------- the CLI
@pytest.fixture
def cli(sqlite_store, monkeypatch):
    from flows.cli import _register_all, app
    from flows.cli import keys as keys_cli

    monkeypatch.setattr(keys_cli, "_store", lambda: sqlite_store)
    monkeypatch.setattr(keys_cli, "cli_actor", lambda: "cli:admin")
    _register_all()

    def invoke(*args: str):
        return CliRunner().invoke(app, list(args))
    return invoke


def test_keys_create_prints_the_key_once_with_a_warning(cli, sqlite_store):
    result = cli("keys", "create", "crm")
    assert result.exit_code == 0, result.output
    full_key = next(w for w in result.output.split() if w.startswith("tp_"))
    assert "only time" in result.output and "Store it" in result.output
    with sqlite_store.session() as session:
        assert keys.verify_key(session, full_key) is not None
    listed = cli("keys", "list")
    assert full_key not in listed.output and "crm" in listed.output


def test_keys_create_hmac_also_prints_the_signing_secret(cli):
    result = cli("keys", "create", "monitoring", "--hmac", "--json")
    made = json.loads(result.output)
    assert made["key"].startswith("tp_") and made["hmac_secret"].startswith("whsec_")


def test_the_database_file_does_not_hold_a_signing_secret(cli, sqlite_store):
    made = json.loads(cli("keys", "create", "monitoring", "--hmac", "--json").output)
    secret = made["hmac_secret"].encode()
    database = sqlite_store.engine.url.database
    files = [p for p in Path(database).parent.iterdir() if p.name.startswith(Path(database).name)]
    contents = b"".join(p.read_bytes() for p in files)  # the file and its -wal
    assert made["id"].encode() in contents and b"monitoring" in contents
    assert secret not in contents and secret[6:] not in contents


def test_keys_revoke_revokes_and_list_shows_it(cli, sqlite_store):
    made = json.loads(cli("keys", "create", "crm", "--json").output)
    result = cli("keys", "revoke", made["id"], "--reason", "rotated")
    assert result.exit_code == 0 and "revoked" in result.output
    rows = json.loads(cli("keys", "list", "--json").output)
    assert [(r["id"], r["status"]) for r in rows] == [(made["id"], "revoked")]
    with sqlite_store.session() as session:
        assert keys.verify_key(session, made["key"]) is None
        [row] = session.scalars(select(AuditRow).where(AuditRow.action == "apikey.revoked")).all()
        assert (row.actor, row.reason) == ("cli:admin", "rotated")


def test_keys_revoke_of_an_unknown_id_fails_with_a_hint(cli):
    result = cli("keys", "revoke", "0123456789ab")
    assert isinstance(result.exception, NotFoundError)
    assert "keys list" in result.exception.hint
