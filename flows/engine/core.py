"""The Engine: the loaded config, the store, the renderer, the signer and the mail transport
that one process uses to run touch points."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from flows.engine.delivery import Deliverer
from flows.engine.journeys import JourneyOps
from flows.links import signer_from_settings
from flows.settings import Settings, get_settings
from flows.templating import Renderer


class MailSession:
    """One SMTP connection for a batch, closed when the batch ends."""

    def __init__(self, transport) -> None:
        self._stack = ExitStack()
        self._session = self._stack.enter_context(transport.session())

    def send(self, message):
        return self._session.send(message)

    def close(self) -> None:
        self._stack.close()


class _Borrowed:
    """The shared session of :meth:`Engine.shared_mail`, lent to one batch: closing it is the
    scope's business, not the batch's."""

    def __init__(self, session: MailSession) -> None:
        self._session = session

    def send(self, message):
        return self._session.send(message)

    def close(self) -> None:
        return None


class Engine:
    def __init__(self, settings: Settings, config=None, store=None) -> None:
        from flows.config import load_config_fast as load_config  # no template check per run
        from flows.store.db import open_store

        self.settings = settings
        self.config = config if config is not None else load_config(settings.config_file)
        self.store = store if store is not None else open_store(settings)
        self.renderer = Renderer(settings.templates_dir)
        self.signer = signer_from_settings(settings)
        self.deliverer = Deliverer(self)
        self.journeys = JourneyOps(self)
        self._transport = None
        self._lock = threading.Lock()
        #: the service's loops report here (shown by /healthz): part -> {"ok": bool, ...}
        self.health: dict[str, dict] = {}
        self._shared = threading.local()

    def touchpoint(self, name: str):
        return self.config.touchpoint(name)

    def open_mail_session(self) -> MailSession | _Borrowed:
        from flows.mail.smtp import transport_from_settings

        shared = getattr(self._shared, "session", None)
        if shared is not None:
            return _Borrowed(shared)
        with self._lock:
            if self._transport is None:
                self._transport = transport_from_settings(self.settings)
        return MailSession(self._transport)

    @contextmanager
    def shared_mail(self) -> Iterator[None]:
        """Every batch of this thread sends over one SMTP connection until the block ends (a
        run of 50 journey starts: one connection, not two per journey). The connection opens
        at the first message."""
        if getattr(self._shared, "session", None) is not None:
            yield
            return
        session = self.open_mail_session()
        self._shared.session = session
        try:
            yield
        finally:
            self._shared.session = None
            session.close()


_current: Engine | None = None
_current_lock = threading.Lock()


def current_engine() -> Engine:
    """The process-wide engine for the current settings (flows call this)."""
    global _current
    with _current_lock:
        settings = get_settings()
        if _current is None or _current.settings != settings:
            _current = Engine(settings)
        return _current


def set_engine(engine: Engine | None) -> None:
    """Install an engine (tests, `serve`); None forgets it."""
    global _current
    with _current_lock:
        _current = engine
