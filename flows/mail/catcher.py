"""The local mail catcher for embedded mode: a real SMTP server on 127.0.0.1 that stores every
message in the mailbox folder, where `touchpoints mail list` and the web app read it."""

from __future__ import annotations

import atexit
import socket
import threading

from aiosmtpd.controller import Controller

from flows.mail.mailbox import Mailbox

_lock = threading.Lock()
_running: "Catcher | None" = None


class _Handler:
    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    async def handle_DATA(self, server, session, envelope):
        self.mailbox.store(envelope.original_content or envelope.content, mail_from=envelope.mail_from,
                           rcpt_tos=list(envelope.rcpt_tos))
        return "250 Message accepted for delivery"


class Catcher:
    def __init__(self, settings) -> None:
        self.settings = settings
        self.mailbox = Mailbox(settings.mailbox_dir)
        self.controller = Controller(_Handler(self.mailbox), hostname="127.0.0.1",
                                     port=settings.catcher_port, server_hostname="touchpoints-catcher")

    def start(self) -> "Catcher":
        self.controller.start()
        return self

    def stop(self) -> None:
        try:
            self.controller.stop()
        except (AssertionError, RuntimeError):  # already stopped
            pass


def listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def ensure_running(settings) -> Catcher | None:
    """Start an in-process catcher unless one already listens (e.g. the service's)."""
    global _running
    with _lock:
        if _running is not None or listening(settings.catcher_port):
            return _running
        catcher = Catcher(settings)
        try:
            catcher.start()
        except (OSError, RuntimeError):  # another process won the race to bind: use that one
            return None
        _running = catcher
        atexit.register(catcher.stop)
        return catcher
