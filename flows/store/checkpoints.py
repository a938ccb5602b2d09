"""Signed audit checkpoints, kept outside the database.

A checkpoint is ``{"seq": row count, "hash": head hash, "at": time, "legacy_rows": n, "sig":
HMAC}`` signed with the audit key. It is appended to ``<data>/audit-checkpoints.jsonl`` (0600 in
the 0700 data folder) and, when ``TOUCHPOINTS_AUDIT_CHECKPOINT_SINK`` is set, also sent to
syslog (``syslog://host:514``, ``syslog+tcp://host:601``, ``syslog:///dev/log``) and/or posted
as JSON to ``http(s)://...`` (several sinks: separate them with commas). A sink that fails is
logged and reported, never raised: the file is the checkpoint, sinks are copies out of reach of
someone who can write the data folder.

``touchpoints serve`` writes one at start, every ``TOUCHPOINTS_AUDIT_CHECKPOINT_SECONDS`` and at
every stop (``flows.service.checkpoints``); ``touchpoints audit checkpoint`` writes one on
demand; ``touchpoints audit verify`` checks the chain against the newest one whose signature
verifies.
"""

from __future__ import annotations

import hmac
import json
import logging
import logging.handlers
import os
import socket
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from flows.store import audit
from flows.store.tables import AuditRow, utcnow

log = logging.getLogger("touchpoints.audit")

CHECKPOINT_FILE = "audit-checkpoints.jsonl"
#: how much of the end of the file is read first to find the newest checkpoint
TAIL_BYTES = 64 * 1024
SINK_TIMEOUT_SECONDS = 5.0
SYSLOG_IDENT = "touchpoints-audit: "


@dataclass
class Written:
    """A checkpoint just written: its body, the file, and per sink None (sent) or the error."""

    body: dict[str, Any]
    path: Path
    sinks: dict[str, str | None] = field(default_factory=dict)
    switched_over: bool = False

    @property
    def failed_sinks(self) -> dict[str, str]:
        return {sink: error for sink, error in self.sinks.items() if error}


def checkpoint_path(settings) -> Path:
    return Path(settings.data_dir) / CHECKPOINT_FILE


def sign(body: dict[str, Any], key: bytes) -> str:
    """HMAC of every field but ``sig``, under the audit key (domain-separated from row hashes)."""
    payload = json.dumps({k: v for k, v in body.items() if k != "sig"}, sort_keys=True,
                         separators=(",", ":"))
    return hmac.new(key, b"checkpoint:" + payload.encode(), "sha256").hexdigest()


def signed(body: dict[str, Any], chain_keys: list[bytes]) -> bool:
    sig = str(body.get("sig", ""))
    return any(hmac.compare_digest(sign(body, key), sig) for key in chain_keys)


# --------------------------------------------------------------------------- writing
def make_checkpoint(session: Session, settings) -> dict[str, Any]:
    """The signed checkpoint of the chain's head as this session sees it."""
    chain_keys = audit.keys(settings)
    seq, digest = audit.head(session)
    body: dict[str, Any] = {"seq": seq, "hash": digest, "at": audit.iso_utc(utcnow()),
                            "legacy_rows": _legacy_rows(session, chain_keys)}
    body["sig"] = sign(body, chain_keys[-1])
    return body


def _legacy_rows(session: Session, chain_keys: list[bytes]) -> int:
    """How many unkeyed rows precede the switch-over (0: keyed from the first row)."""
    row = session.execute(select(*audit.COLUMNS).where(AuditRow.action == audit.REKEYED)
                          .order_by(AuditRow.seq).limit(1)).first()
    if row is None or audit.key_index(row.prev_hash, row._mapping, row.hash, chain_keys) is None:
        return 0
    return row.seq - 1


def write_checkpoint(store, settings) -> Written:
    """Record the switch-over if the chain still ends in legacy rows, then append a signed
    checkpoint of the head to the file and send it to the sinks. Raises only if the file
    cannot be written."""
    from flows.private import FILE_MODE, private_dir

    with store.session() as session:
        switched = audit.ensure_keyed(session)
        body = make_checkpoint(session, settings)
    folder = private_dir(Path(settings.data_dir))
    path = folder / CHECKPOINT_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(body, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return Written(body=body, path=path, sinks=publish(body, settings), switched_over=switched)


# --------------------------------------------------------------------------- reading
def read_latest(settings) -> tuple[dict[str, Any] | None, int]:
    """(the newest checkpoint whose signature verifies, or None; lines that did not verify).
    The end of the file is read first; the whole file only if no good line is there."""
    path = checkpoint_path(settings)
    if not path.exists():
        return None, 0
    chain_keys = audit.keys(settings)
    size = path.stat().st_size
    with path.open("rb") as handle:
        if size > TAIL_BYTES:
            handle.seek(size - TAIL_BYTES)
            tail = handle.read().split(b"\n", 1)[-1]  # the first line is cut: skip it
            best, bad = _best(tail, chain_keys)
            if best is not None:
                return best, bad
            handle.seek(0)
        return _best(handle.read(), chain_keys)


def latest_checkpoint(settings) -> dict[str, Any] | None:
    """The newest checkpoint whose signature verifies under an audit key, or None."""
    return read_latest(settings)[0]


def _best(data: bytes, chain_keys: list[bytes]) -> tuple[dict[str, Any] | None, int]:
    best, bad = None, 0
    for line in data.decode("utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            body = json.loads(line)
            good = isinstance(body, dict) and signed(body, chain_keys)
            seq = int(body["seq"]) if good else 0
        except (ValueError, KeyError, TypeError):
            good = False
        if not good:
            bad += 1
        elif best is None or seq >= int(best["seq"]):
            best = body
    return best, bad


# --------------------------------------------------------------------------- sinks
def sinks(settings) -> list[str]:
    value = getattr(settings, "audit_checkpoint_sink", None) or ""
    return [part.strip() for part in value.split(",") if part.strip()]


def display(sink: str) -> str:
    """The sink without its password, for logs and messages."""
    parts = urlsplit(sink)
    if parts.password is None:
        return sink
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def publish(body: dict[str, Any], settings) -> dict[str, str | None]:
    """Send the checkpoint to every configured sink; a failure is logged and returned."""
    results: dict[str, str | None] = {}
    for sink in sinks(settings):
        try:
            send(sink, body)
            results[display(sink)] = None
        except Exception as exc:  # noqa: BLE001 - a sink never stops the caller
            error = f"{type(exc).__name__}: {exc}"[:300]
            results[display(sink)] = error
            log.warning("could not send the audit checkpoint to %s: %s", display(sink), error)
    return results


def send(sink: str, body: dict[str, Any]) -> None:
    scheme = urlsplit(sink).scheme.lower()
    if scheme in ("syslog", "syslog+udp", "syslog+tcp"):
        _syslog(sink, body)
    elif scheme in ("http", "https"):
        _http(sink, body)
    else:
        raise ValueError(f"unknown checkpoint sink {display(sink)!r}: use syslog://host:port, "
                         "syslog+tcp://host:port, syslog:///dev/log or http(s)://...")


class _SysLog(logging.handlers.SysLogHandler):
    """SysLogHandler that raises instead of printing errors, with timeouts."""

    def createSocket(self) -> None:
        if isinstance(self.address, str):
            self.unixsocket = True
            self._connect_unixsocket(self.address)  # the stock handler swallows this error
        elif self.socktype == socket.SOCK_STREAM:
            self.unixsocket = False
            self.socket = socket.create_connection(self.address, timeout=SINK_TIMEOUT_SECONDS)
        else:
            super().createSocket()
        self.socket.settimeout(SINK_TIMEOUT_SECONDS)

    def handleError(self, record) -> None:
        raise  # noqa: PLE0704 - called inside emit's except block: re-raise its error


def _syslog(sink: str, body: dict[str, Any]) -> None:
    parts = urlsplit(sink)
    tcp = parts.scheme.lower() == "syslog+tcp"
    socktype = socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM
    if parts.hostname:
        address: Any = (parts.hostname, parts.port or (601 if tcp else 514))
    elif parts.path:
        address, socktype = unquote(parts.path), (socket.SOCK_STREAM if tcp else None)
    else:
        raise ValueError(f"the syslog sink {display(sink)!r} names no host and no socket path")
    handler = _SysLog(address=address, socktype=socktype)
    handler.ident = SYSLOG_IDENT
    if handler.socktype == socket.SOCK_STREAM:
        handler.append_nul = False  # stream: one message per line (RFC 6587 non-transparent)
    try:
        text = json.dumps(body, sort_keys=True)
        if handler.socktype == socket.SOCK_STREAM:
            text += "\n"
        handler.emit(logging.LogRecord(log.name, logging.INFO, __file__, 0, "%s", (text,), None))
    finally:
        handler.close()


def _http(sink: str, body: dict[str, Any]) -> None:
    parts = urlsplit(sink)
    headers = {"Content-Type": "application/json", "User-Agent": "touchpoints-audit"}
    if parts.username is not None:
        import base64

        user_pass = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(user_pass.encode()).decode()
        host = parts.hostname + (f":{parts.port}" if parts.port else "")
        sink = urlunsplit(parts._replace(netloc=host))
    request = urllib.request.Request(sink, data=json.dumps(body).encode(), headers=headers,
                                     method="POST")
    with urllib.request.urlopen(request, timeout=SINK_TIMEOUT_SECONDS) as response:
        if not 200 <= response.status < 300:
            raise OSError(f"HTTP {response.status}")
