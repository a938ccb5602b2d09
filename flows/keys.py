"""API keys for the systems that call the HTTP API (CRM, billing, network monitoring).

A key reads ``tp_<id>_<secret>``: ``id`` is public (shown in ``touchpoints keys list`` and used
as the audit actor ``api:<id>``), ``secret`` is 256 random bits. Only a SHA-256 hash of the full
key is stored, and it is compared in constant time. A key made with ``hmac=True`` also carries
a signing secret: every request made with it must then be signed (see flows/web/auth.py).

The server recomputes signatures, so it must be able to read the signing secret: it is kept
*sealed*, AES-256-GCM under a key derived (HKDF-SHA256) from the secret key
(``TOUCHPOINTS_SECRET_KEY`` or ``<data>/secret.key``), with the key id as associated data (a
sealed secret copied onto another key's row does not open), stored as
``tpenc1:<base64url(nonce | ciphertext)>``. Secrets stored in the clear by older versions still
verify, and are sealed on first use (``reveal_secret``) or by ``seal_clear_secrets`` (at
``serve`` start). Changing the secret key makes sealed secrets unreadable: make new keys then.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac as _hmac
import os
import re
import secrets
from datetime import datetime

from sqlalchemy import select, update

from flows import clock
from flows.errors import NotFoundError, StoreError, TouchpointsError
from flows.store.tables import ApiKey

PREFIX = "tp_"
HMAC_PREFIX = "whsec_"
_ID_RE = re.compile(r"^[0-9a-f]{12}$")
_KEY_RE = re.compile(r"^tp_([0-9a-f]{12})_([A-Za-z0-9_-]{20,200})$")
#: hash of a key nobody holds: verify_key compares against it when the id is unknown, so an
#: unknown id costs the same time as a wrong secret
_DUMMY_HASH = hashlib.sha256(b"tp_000000000000_not-a-key").hexdigest()


SEALED_PREFIX = "tpenc1:"
_SEAL_INFO = b"touchpoints api key signing secrets v1"
_NONCE_BYTES = 12


def _secret_key(secret_key: str | None) -> str:
    if secret_key:
        return secret_key
    from flows.settings import get_settings

    return get_settings().signing_key()


def _aead(secret_key: str | None):
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.hashes import SHA256
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    raw = _secret_key(secret_key).encode("utf-8")
    return AESGCM(HKDF(algorithm=SHA256(), length=32, salt=None, info=_SEAL_INFO).derive(raw))


def is_sealed(stored: str | None) -> bool:
    return isinstance(stored, str) and stored.startswith(SEALED_PREFIX)


def seal_secret(hmac_secret: str, *, key_id: str, secret_key: str | None = None) -> str:
    """The stored form of a signing secret: encrypted, bound to its key id."""
    nonce = os.urandom(_NONCE_BYTES)
    sealed = _aead(secret_key).encrypt(nonce, hmac_secret.encode("utf-8"), key_id.encode())
    return SEALED_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii").rstrip("=")


def open_secret(stored: str, *, key_id: str, secret_key: str | None = None) -> str:
    """The signing secret from its stored form; a clear one (older versions) as it is."""
    if not is_sealed(stored):
        return stored
    from cryptography.exceptions import InvalidTag

    body = stored[len(SEALED_PREFIX):]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        return _aead(secret_key).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:],
                                         key_id.encode()).decode("utf-8")
    except (InvalidTag, ValueError, binascii.Error):
        raise StoreError(f"the signing secret of API key {key_id} cannot be decrypted",
                         hint="the secret key (TOUCHPOINTS_SECRET_KEY or <data>/secret.key) is "
                              "not the one it was sealed with: restore that key, or revoke the "
                              f"API key (`touchpoints keys revoke {key_id}`) and make a new one") \
            from None


def reveal_secret(store, key_id: str, stored: str | None, *,
                  secret_key: str | None = None) -> str | None:
    """The clear signing secret of a key (None if it has none). One still stored in the clear
    is sealed now, in its own transaction (only if nobody changed it meanwhile)."""
    if not stored:
        return None
    secret = open_secret(stored, key_id=key_id, secret_key=secret_key)
    if not is_sealed(stored):
        with store.session() as session:
            session.execute(update(ApiKey).where(ApiKey.id == key_id, ApiKey.hmac_secret == stored)
                            .values(hmac_secret=seal_secret(secret, key_id=key_id,
                                                            secret_key=secret_key)))
    return secret


def seal_clear_secrets(session, *, secret_key: str | None = None) -> int:
    """Seal every signing secret still stored in the clear; returns how many there were."""
    rows = session.scalars(select(ApiKey).where(ApiKey.hmac_secret.is_not(None))).all()
    count = 0
    for row in rows:
        if not is_sealed(row.hmac_secret):
            row.hmac_secret = seal_secret(row.hmac_secret, key_id=row.id, secret_key=secret_key)
            count += 1
    return count


def hash_key(full_key: str) -> str:
    return hashlib.sha256(full_key.encode("utf-8")).hexdigest()


def parse_key(presented: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, else None."""
    match = _KEY_RE.match(presented.strip()) if isinstance(presented, str) else None
    return (match.group(1), match.group(2)) if match else None


def actor_for(key_id: str) -> str:
    """The audit actor of requests made with this key."""
    return f"api:{key_id}"


def create_key(session, name: str, *, hmac: bool = False, actor: str,
               secret_key: str | None = None) -> tuple[str, str, str | None]:
    """Make a key. Returns (key id, full key, HMAC secret or None); the full key and the HMAC
    secret are shown this once (only a hash of the key is kept, and the HMAC secret sealed
    under ``secret_key``, default the configured secret key)."""
    from flows.store import audit

    name = (name or "").strip()
    if not name or len(name) > 200:
        raise TouchpointsError("a key needs a name of 1 to 200 characters",
                               hint="name it after the system that uses it, e.g. `crm`")
    key_id = secrets.token_hex(6)
    while session.get(ApiKey, key_id) is not None:  # 48 bits: a clash is very unlikely
        key_id = secrets.token_hex(6)
    full_key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    hmac_secret = f"{HMAC_PREFIX}{secrets.token_urlsafe(32)}" if hmac else None
    now = clock.now()
    stored = seal_secret(hmac_secret, key_id=key_id, secret_key=secret_key) if hmac else None
    session.add(ApiKey(id=key_id, name=name, key_hash=hash_key(full_key), hmac_secret=stored,
                       created_at=now, revoked_at=None))
    session.flush()
    audit.record(session, action="apikey.created", result="created", actor=actor,
                 reason=f"API key {key_id} ({name})" + (" with HMAC signing" if hmac else ""),
                 detail={"key_id": key_id, "name": name, "hmac": bool(hmac)}, at=now)
    return key_id, full_key, hmac_secret


def revoke_key(session, key_id: str, *, actor: str, reason: str = "") -> ApiKey:
    """Revoke a key; requests made with it are refused from now on. Revoking twice is harmless."""
    from flows.store import audit

    parsed = parse_key(key_id) if isinstance(key_id, str) else None
    if parsed is not None:  # the whole key pasted instead of its id
        key_id = parsed[0]
    row = session.get(ApiKey, key_id) if isinstance(key_id, str) and _ID_RE.match(key_id) else None
    if row is None:
        raise NotFoundError(f"no API key {key_id!r}", hint="list them with `touchpoints keys list`")
    if row.revoked_at is not None:
        return row
    now = clock.now()
    row.revoked_at = now
    audit.record(session, action="apikey.revoked", result="revoked", actor=actor,
                 reason=reason or f"API key {row.id} ({row.name}) revoked",
                 detail={"key_id": row.id, "name": row.name}, at=now)
    return row


def verify_key(session, presented: str | None) -> ApiKey | None:
    """The live key row for a presented key, or None (malformed, unknown, wrong or revoked)."""
    parsed = parse_key(presented) if presented else None
    if parsed is None:
        return None
    key_id, _ = parsed
    row = session.get(ApiKey, key_id)
    expected = row.key_hash if row is not None else _DUMMY_HASH
    good = _hmac.compare_digest(expected.encode(), hash_key(presented.strip()).encode())
    if row is None or not good or row.revoked_at is not None:
        return None
    return row


def list_keys(session) -> list[dict]:
    rows = session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)).all()
    return [{"id": r.id, "name": r.name, "hmac": bool(r.hmac_secret), "created_at": r.created_at,
             "revoked_at": r.revoked_at,
             "status": "revoked" if r.revoked_at is not None else "active"} for r in rows]


# ---------------------------------------------------------------------- request signatures
SIGNATURE_HEADER = "X-Touchpoints-Signature"
TIMESTAMP_HEADER = "X-Touchpoints-Timestamp"
DEFAULT_TOLERANCE_SECONDS = 300


def sign(hmac_secret: str, timestamp: int | str, body: bytes) -> str:
    """The ``X-Touchpoints-Signature`` value for a body sent at ``timestamp`` (unix seconds)."""
    digest = _hmac.new(hmac_secret.encode("utf-8"), f"{timestamp}.".encode() + body,
                       hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def check_signature(hmac_secret: str, *, timestamp: str | None, signature: str | None,
                    body: bytes, now: datetime | None = None,
                    tolerance: int = DEFAULT_TOLERANCE_SECONDS) -> str | None:
    """None when the signature is good, else why it is not (safe to show to the caller)."""
    if not timestamp or not signature:
        return (f"this API key signs its requests: send {TIMESTAMP_HEADER} (unix seconds) and "
                f"{SIGNATURE_HEADER}: sha256=<hex>")
    timestamp = timestamp.strip()
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return f"{TIMESTAMP_HEADER} must be whole unix seconds, e.g. 1767225600"
    now_ts = int((now or datetime.now().astimezone()).timestamp())
    if abs(now_ts - int(timestamp)) > tolerance:
        return (f"{TIMESTAMP_HEADER} is more than {tolerance} s away from the server's clock; "
                "sign with the current time (and check the sender's clock)")
    expected = sign(hmac_secret, timestamp, body)
    if not _hmac.compare_digest(expected.encode(), signature.strip().encode("utf-8", "replace")):
        return f"{SIGNATURE_HEADER} does not match the body"
    return None
