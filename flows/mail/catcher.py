"""The local mail catcher for embedded mode: a real SMTP server on 127.0.0.1 that keeps every
message in the mailbox folder, where `touchpoints mail list` and the web app read it.

``touchpoints serve`` (and ``touchpoints mail catcher``) run one in the foreground with
``Catcher(settings).start()``. A process that sends mail on embedded defaults calls
``ensure_running(settings)`` first: it uses the catcher that already listens, or starts one in
a daemon thread for the life of the process.
"""

from __future__ import annotations

import atexit
import logging
import socket
import threading
from typing import Self

from aiosmtpd.controller import Controller

from flows.errors import ServiceError
from flows.mail.mailbox import Mailbox

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
SERVER_NAME = "touchpoints-catcher"

_lock = threading.Lock()
_running: dict[int, Catcher] = {}  # in-process catchers by port


class _Handler:
    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content or b""
        try:
            mail_id = self.mailbox.store(raw, mail_from=envelope.mail_from or "",
                                         rcpt_tos=list(envelope.rcpt_tos))
        except OSError as exc:
            log.error("the mail catcher could not store a message in %s: %s", self.mailbox.dir, exc)
            return "451 4.3.0 Could not store the message, try again later"
        return f"250 2.0.0 Message accepted as {mail_id}"


class _BoundController(Controller):
    """An aiosmtpd Controller serving a socket bound beforehand: a taken port fails at once,
    in the caller's thread, instead of after the controller's start-up timeout."""

    def __init__(self, handler, sock: socket.socket, **kwargs) -> None:
        host, port = sock.getsockname()[:2]
        super().__init__(handler, hostname=host, port=port, **kwargs)
        self._sock = sock

    def _create_server(self):
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)


def listening(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    """Whether something accepts connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class Catcher:
    """The catcher on 127.0.0.1:``settings.catcher_port`` storing into ``settings.mailbox_dir``
    (port 0 picks a free port; ``port`` tells which)."""

    def __init__(self, settings) -> None:
        self.port: int = settings.catcher_port
        self.mailbox = Mailbox(settings.mailbox_dir.resolve())
        self._controller: _BoundController | None = None

    @property
    def url(self) -> str:
        return f"smtp://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> Catcher:
        """Listen, or raise ServiceError if the port is taken."""
        if self._controller is not None:
            return self
        self.mailbox.dir.mkdir(parents=True, exist_ok=True)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # not SO_REUSEPORT: one owner
        try:
            sock.bind((HOST, self.port))
            sock.listen(64)
        except OSError as exc:
            sock.close()
            raise ServiceError(f"the mail catcher cannot listen on {HOST}:{self.port}: {exc.strerror or exc}",
                               hint="another program uses that port: stop it, or set "
                                    "TOUCHPOINTS_CATCHER_PORT to a free port") from None
        self.port = sock.getsockname()[1]
        controller = _BoundController(_Handler(self.mailbox), sock, server_hostname=SERVER_NAME)
        try:
            controller.start()
        except BaseException:
            controller.stop(no_assert=True)
            sock.close()
            raise
        self._controller = controller
        log.info("mail catcher listening on %s, storing in %s", self.url, self.mailbox.dir)
        return self

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop(no_assert=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def ensure_running(settings) -> Catcher | None:
    """Make sure a catcher listens on 127.0.0.1:``settings.catcher_port``.

    Returns the catcher this process started (now, or on an earlier call), or None when
    another process's catcher listens already, including one that won a race to bind.
    """
    port = settings.catcher_port
    with _lock:
        mine = _running.get(port)
        if mine is not None and mine.running:
            return mine
        if listening(port):
            return None
        catcher = Catcher(settings)
        try:
            catcher.start()
        except ServiceError:
            if listening(port):  # another process bound it between our check and our bind
                return None
            raise
        _running[port] = catcher
        atexit.register(catcher.stop)
        return catcher
