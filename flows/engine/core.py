"""The Engine: the loaded config, the store, the renderer, the signer and the mail transport
that one process uses to run touch points."""

from __future__ import annotations

import threading
from contextlib import ExitStack

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

    def touchpoint(self, name: str):
        return self.config.touchpoint(name)

    def open_mail_session(self) -> MailSession:
        from flows.mail.smtp import transport_from_settings

        with self._lock:
            if self._transport is None:
                self._transport = transport_from_settings(self.settings)
        return MailSession(self._transport)


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
