"""Signed checkpoints outside the database: the file in the data folder, the syslog and HTTP
sinks (real sockets and a real HTTP server), and verify catching a truncated tail with them."""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from flows.store import audit, audit_verify, checkpoints
from tests.store.support import past_the_guard


def fill(store, count: int) -> None:
    with store.session() as session:
        audit.record_many(session, [{"action": "email.sent", "result": "sent",
                                     "actor": audit.SYSTEM, "customer_id": f"C-{i}"}
                                    for i in range(count)])


def lines(settings) -> list[dict]:
    return [json.loads(line) for line in
            checkpoints.checkpoint_path(settings).read_text().splitlines()]


def with_sink(settings, sink: str):
    return settings.model_copy(update={"audit_checkpoint_sink": sink})


def test_a_checkpoint_is_a_signed_line_in_a_private_file_of_the_data_folder(store, store_settings):
    fill(store, 3)
    written = checkpoints.write_checkpoint(store, store_settings)
    with store.read_session() as session:
        assert (written.body["seq"], written.body["hash"]) == audit.head(session)
    assert set(written.body) == {"seq", "hash", "at", "legacy_rows", "sig"}
    assert lines(store_settings) == [written.body]
    path = checkpoints.checkpoint_path(store_settings)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    fill(store, 2)
    newer = checkpoints.write_checkpoint(store, store_settings)
    assert checkpoints.latest_checkpoint(store_settings) == newer.body and newer.body["seq"] == 5


def test_lines_whose_signature_does_not_verify_are_ignored_and_counted(store, store_settings):
    fill(store, 2)
    good = checkpoints.write_checkpoint(store, store_settings).body
    forged = {**good, "seq": 99}  # a higher count, the old signature
    with checkpoints.checkpoint_path(store_settings).open("a") as handle:
        handle.write(json.dumps(forged) + "\nnot json\n")
    assert checkpoints.read_latest(store_settings) == (good, 2)


def test_the_newest_checkpoint_is_found_at_the_end_of_a_long_file(store, store_settings,
                                                                   monkeypatch):
    monkeypatch.setattr(checkpoints, "TAIL_BYTES", 300)
    for _ in range(6):
        fill(store, 1)
        last = checkpoints.write_checkpoint(store, store_settings).body
    assert checkpoints.checkpoint_path(store_settings).stat().st_size > 300
    assert checkpoints.latest_checkpoint(store_settings) == last


def test_verify_against_the_checkpoint_finds_rows_deleted_from_the_end(store, store_settings):
    fill(store, 6)
    checkpoint = checkpoints.write_checkpoint(store, store_settings).body
    with past_the_guard(store) as connection:
        connection.exec_driver_sql("DELETE FROM audit WHERE seq >= 5")
    with store.read_session() as session:
        assert audit_verify.verify(session).ok  # without the anchor the shorter chain is valid
        result = audit_verify.verify(session, checkpoint=checkpoint)
    assert (result.ok, result.problem, result.first_bad_seq) == (False, "truncated", 5)
    assert "rows 5 to 6 are missing" in result.message


def test_a_checkpoint_signed_with_a_previous_key_still_counts_after_rotation(
        store, store_settings, monkeypatch):
    fill(store, 2)
    first = checkpoints.write_checkpoint(store, store_settings).body
    rotated = store_settings.model_copy(update={
        "audit_key": "a brand new audit key",
        "audit_previous_keys": [store_settings.signing_key()]})
    assert checkpoints.latest_checkpoint(rotated) == first
    dropped = rotated.model_copy(update={"audit_previous_keys": []})
    assert checkpoints.read_latest(dropped) == (None, 1)


# --------------------------------------------------------------------------- sinks
class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.path, self.headers.get("Authorization"),
                                    self.headers.get("Content-Type"), json.loads(body)))
        self.send_response(204 if self.path != "/down" else 503)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def http_receiver():
    _Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", _Receiver.received
    server.shutdown()
    server.server_close()


def test_an_http_sink_receives_the_signed_checkpoint_as_json(store, store_settings, http_receiver):
    url, received = http_receiver
    fill(store, 2)
    sink = url.replace("http://", "http://ops:s%3Dcret@") + "/audit"
    written = checkpoints.write_checkpoint(store, with_sink(store_settings, sink))
    assert written.failed_sinks == {}
    assert list(written.sinks) == [sink.replace("s%3Dcret", "***")]
    [(path, auth, content_type, body)] = received
    assert (path, content_type, body) == ("/audit", "application/json", written.body)
    assert auth == "Basic b3BzOnM9Y3JldA=="  # ops:s=cret
    assert checkpoints.signed(body, audit.keys(store_settings))


def test_a_syslog_sink_over_udp_and_tcp_receives_the_checkpoint(store, store_settings):
    fill(store, 1)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(5)
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(1)
    tcp.settimeout(5)
    try:
        sinks = (f"syslog://127.0.0.1:{udp.getsockname()[1]}, "
                 f"syslog+tcp://127.0.0.1:{tcp.getsockname()[1]}")
        received_tcp: list[bytes] = []

        def accept():
            conn, _ = tcp.accept()
            with conn:
                conn.settimeout(5)
                while chunk := conn.recv(4096):
                    received_tcp.append(chunk)

        thread = threading.Thread(target=accept)
        thread.start()
        written = checkpoints.write_checkpoint(store, with_sink(store_settings, sinks))
        thread.join(10)
        assert written.failed_sinks == {}
        datagram = udp.recv(4096).decode()
        assert datagram.startswith("<14>touchpoints-audit: ") and datagram.endswith("\x00")
        assert json.loads(datagram.removeprefix("<14>touchpoints-audit: ").rstrip("\x00")) \
            == written.body
        line = b"".join(received_tcp).decode()
        assert line.endswith("\n")
        assert json.loads(line.removeprefix("<14>touchpoints-audit: ")) == written.body
    finally:
        udp.close()
        tcp.close()


def test_a_failing_sink_is_logged_and_reported_and_the_file_is_still_written(
        store, store_settings, http_receiver, caplog, tmp_path):
    url, _ = http_receiver
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    sinks = ", ".join([f"http://127.0.0.1:{port}/x", f"{url}/down", "ftp://example.com/",
                       f"syslog://{tmp_path / 'no-such-socket'}",  # syslog:///path: a socket
                       f"syslog+tcp://127.0.0.1:{port}"])
    fill(store, 1)
    with caplog.at_level(logging.WARNING, logger="touchpoints.audit"):
        written = checkpoints.write_checkpoint(store, with_sink(store_settings, sinks))
    assert lines(store_settings) == [written.body]
    assert len(written.failed_sinks) == 5
    assert "unknown checkpoint sink 'ftp://example.com/'" in written.failed_sinks["ftp://example.com/"]
    assert "503" in written.failed_sinks[f"{url}/down"]
    assert caplog.text.count("could not send the audit checkpoint to") == 5
