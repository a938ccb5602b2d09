"""Delivering messages over SMTP.

URLs: ``smtp://host:port`` (plain), ``smtp://user:pass@host:port?starttls=1`` (STARTTLS,
required), ``smtps://user:pass@host:port`` (implicit TLS); options ``timeout`` and ``verify=0``
(skip certificate checks, for self-signed test servers). A 4xx (or a refused connection) is
retried with exponential backoff; a 5xx raises a permanent DeliveryError at once.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import time
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit

from flows.errors import DeliveryError

TRUE = {"1", "true", "yes", "on"}


@dataclass
class SendResult:
    status: str
    code: int
    response: str


@dataclass
class SmtpConfig:
    host: str
    port: int
    username: str | None
    password: str | None
    implicit_tls: bool
    starttls: bool
    verify: bool
    timeout: float

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 30.0) -> "SmtpConfig":
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps"):
            raise DeliveryError(f"unsupported mail URL scheme {parts.scheme!r}",
                                hint="use smtp://host:port, smtp://user:pass@host:port?starttls=1 or smtps://…",
                                permanent=True)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        implicit = parts.scheme == "smtps"
        return cls(host=parts.hostname or "127.0.0.1", port=parts.port or (465 if implicit else 25),
                   username=unquote(parts.username) if parts.username else None,
                   password=unquote(parts.password) if parts.password else None,
                   implicit_tls=implicit, starttls=query.get("starttls", "0").lower() in TRUE,
                   verify=query.get("verify", "1").lower() in TRUE,
                   timeout=float(query.get("timeout", timeout)))

    def describe(self) -> str:
        mode = "smtps" if self.implicit_tls else ("smtp+starttls" if self.starttls else "smtp")
        return f"{mode}://{self.host}:{self.port}"


def _temporary(message: str, code: int | None = None) -> DeliveryError:
    return DeliveryError(message, code=code, permanent=False,
                         hint="the SMTP server may be down or busy; the send will be retried")


class SmtpSession:
    """One connection, reopened transparently when the server closed it."""

    def __init__(self, transport: "SmtpTransport") -> None:
        self.transport = transport
        self.client: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        cfg = self.transport.config
        context = ssl.create_default_context()
        if not cfg.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        try:
            if cfg.implicit_tls:
                client = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout, context=context)
            else:
                client = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
                client.ehlo()
                if cfg.starttls:
                    client.starttls(context=context)
                    client.ehlo()
            if cfg.username:
                client.login(cfg.username, cfg.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"SMTP login to {cfg.describe()} refused ({exc.smtp_code})",
                                code=exc.smtp_code, permanent=False,
                                hint="check the user and password in TOUCHPOINTS_SMTP_URL") from None
        except smtplib.SMTPNotSupportedError as exc:
            raise DeliveryError(f"{cfg.describe()}: {exc}", permanent=False,
                                hint="the server lacks STARTTLS or AUTH; check TOUCHPOINTS_SMTP_URL") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise _temporary(f"cannot connect to {cfg.describe()}: {exc}") from None
        return client

    def _send_once(self, message: EmailMessage) -> SendResult:
        if self.client is None:
            self.client = self._connect()
        try:
            refused = self.client.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            self.client = self._reset()
            code, text = next(iter(exc.recipients.values()))
            raise DeliveryError(f"recipient refused: {code} {text.decode(errors='replace')}",
                                code=code, permanent=code >= 500) from None
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
            self.client = self._reset()
            text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
            raise DeliveryError(f"{exc.smtp_code} {text}", code=exc.smtp_code,
                                permanent=exc.smtp_code >= 500) from None
        except (smtplib.SMTPServerDisconnected, ConnectionError, socket.timeout) as exc:
            self.client = None
            raise _temporary(f"connection lost: {exc}") from None
        if refused:
            code, text = next(iter(refused.values()))
            raise DeliveryError(f"recipient refused: {code} {text!r}", code=code, permanent=code >= 500)
        return SendResult(status="sent", code=250, response="queued")

    def _reset(self) -> smtplib.SMTP | None:
        try:
            self.client.rset()
            return self.client
        except (smtplib.SMTPException, OSError):
            return None

    def send(self, message: EmailMessage) -> SendResult:
        backoff = self.transport.backoff_seconds
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._send_once(message)
            except DeliveryError as exc:
                if exc.permanent or attempt >= self.transport.retries:
                    raise
                time.sleep(backoff)
                backoff *= 2

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.quit()
            except (smtplib.SMTPException, OSError):
                pass
            self.client = None


class SmtpTransport:
    def __init__(self, url: str, *, retries: int = 3, backoff_seconds: float = 2.0,
                 timeout: float = 30.0) -> None:
        self.config = SmtpConfig.from_url(url, timeout=timeout)
        self.retries = max(1, retries)
        self.backoff_seconds = backoff_seconds

    @contextmanager
    def session(self):
        session = SmtpSession(self)
        try:
            yield session
        finally:
            session.close()

    def send(self, message: EmailMessage) -> SendResult:
        with self.session() as session:
            return session.send(message)


def transport_from_settings(settings) -> SmtpTransport:
    if settings.embedded_mail:
        from flows.mail.catcher import ensure_running

        ensure_running(settings)
    return SmtpTransport(settings.effective_smtp_url, retries=settings.smtp_retries,
                         backoff_seconds=settings.smtp_backoff_seconds,
                         timeout=settings.smtp_timeout_seconds)
