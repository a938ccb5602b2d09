"""Delivering messages over SMTP.

URLs: ``smtp://host:port`` (plain), ``smtp://user:pass@host:port?starttls=1`` (STARTTLS,
required), ``smtps://user:pass@host:port`` (implicit TLS); options ``timeout`` (seconds) and
``verify=0`` (skip certificate checks, for self-signed test servers). User and password are
percent-decoded; the password is never logged or shown.

Failures:

* a 4xx reply, a refused connection, a timeout or a dropped connection is temporary: retried
  with exponential backoff, then ``DeliveryError(permanent=False)``;
* a 5xx reply to MAIL, RCPT or DATA is permanent: ``DeliveryError(permanent=True)`` at once
  (the caller records a bounce and suppresses the address);
* a refused login, a missing STARTTLS or AUTH, a certificate that does not verify, or a 530,
  534, 535 or 538 reply (login or TLS required) is a settings problem, not the recipient's:
  ``SmtpSetupError`` (temporary, not retried in the call, never a bounce).
"""

from __future__ import annotations

import base64
import copy
import io
import logging
import smtplib
import ssl
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.generator import BytesGenerator
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import getaddresses
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from flows.errors import DeliveryError, TouchpointsError

log = logging.getLogger(__name__)

TRUE, FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}
OPTIONS = {"starttls", "verify", "timeout"}
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
#: authentication and encryption replies (RFC 4954, RFC 3207): our settings, not the recipient
SETUP_CODES = {530, 534, 535, 538}
URL_HINT = "use smtp://host:port, smtp://user:pass@host:587?starttls=1 or smtps://user:pass@host:465"


@dataclass(frozen=True)
class SendResult:
    status: str
    code: int
    response: str


class SmtpSetupError(DeliveryError):
    """The server refused our login or TLS: fix TOUCHPOINTS_SMTP_URL. Never a bounce; the send
    stays temporary (``permanent=False``) and is not retried within the call."""


def _flag(query: dict[str, str], name: str, default: bool) -> bool:
    value = query.get(name)
    if value is None:
        return default
    if value.lower() in TRUE | FALSE:
        return value.lower() in TRUE
    raise TouchpointsError(f"mail URL option {name}={value!r} is not a yes/no value", hint=f"use {name}=1 or {name}=0")


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    username: str | None
    password: str | None = field(repr=False)
    implicit_tls: bool
    starttls: bool
    verify: bool
    timeout: float

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 30.0) -> SmtpConfig:
        """Parse a mail URL; a bad one raises TouchpointsError (a settings problem, never a bounce)."""
        parts = urlsplit(url.strip())
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise TouchpointsError(f"not a mail URL: {cls._redact(url)!r}", hint=URL_HINT)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        unknown = sorted(set(query) - OPTIONS)
        if unknown:
            raise TouchpointsError(f"unknown mail URL option {', '.join(unknown)}",
                                   hint="the options are starttls=1, verify=0 and timeout=SECONDS")
        try:
            port = parts.port
            seconds = float(query.get("timeout", timeout))
        except ValueError as exc:
            raise TouchpointsError(f"bad port or timeout in mail URL {cls._redact(url)!r}: {exc}",
                                   hint=URL_HINT) from None
        if seconds <= 0:
            raise TouchpointsError("the mail URL timeout must be more than 0 seconds", hint="e.g. timeout=30")
        implicit = parts.scheme == "smtps"
        starttls = _flag(query, "starttls", False)
        if implicit and starttls:
            raise TouchpointsError("smtps:// is already TLS; starttls=1 does not apply",
                                   hint="use smtps://host:465, or smtp://host:587?starttls=1")
        username = unquote(parts.username) if parts.username else None
        if username and not (implicit or starttls) and parts.hostname not in LOOPBACK:
            raise TouchpointsError(f"refusing to send the SMTP password to {parts.hostname} unencrypted",
                                   hint="add ?starttls=1 or use smtps://")
        return cls(host=parts.hostname, port=port or (465 if implicit else 25), username=username,
                   password=unquote(parts.password) if parts.password is not None else None,
                   implicit_tls=implicit, starttls=starttls, verify=_flag(query, "verify", True),
                   timeout=seconds)

    @staticmethod
    def _redact(url: str) -> str:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()

    def describe(self) -> str:
        """The server for messages and logs: no password."""
        mode = "smtps" if self.implicit_tls else ("smtp+starttls" if self.starttls else "smtp")
        user = f"{quote(self.username, safe='')}@" if self.username else ""
        return f"{mode}://{user}{self.host}:{self.port}"

    def tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _refusal(stage: str, code: int, reply: bytes | str) -> DeliveryError:
    if code in SETUP_CODES:
        return SmtpSetupError(f"{stage} refused: {code} {_text(reply)}", code=code,
                              hint="the server wants a login or TLS first: check TOUCHPOINTS_SMTP_URL")
    permanent = 500 <= code < 600
    hint = ("the server will not take this message; the address is treated as bounced" if permanent
            else "the server asked us to try again later")
    return DeliveryError(f"{stage} refused: {code} {_text(reply)}", code=code, permanent=permanent, hint=hint)


def _temporary(message: str) -> DeliveryError:
    return DeliveryError(message, permanent=False,
                         hint="the SMTP server may be down or busy; the send will be retried")


class _Disconnected(Exception):
    """The connection went away in the middle of a transaction."""


@dataclass
class _Envelope:
    sender: str
    recipients: list[str]
    data: bytes
    utf8: bool


def _addresses(message: EmailMessage, *names: str) -> list[str]:
    found: list[str] = []
    for name in names:
        for header in message.get_all(name, []):
            parsed = getattr(header, "addresses", None)  # registry headers are parsed already
            if parsed is not None:
                found += [a.addr_spec for a in parsed if a.username]
            else:
                found += [addr for _, addr in getaddresses([str(header)]) if addr]
    return found


def envelope_of(message: EmailMessage) -> _Envelope:
    """Envelope sender and recipients from the headers (Bcc is used, then left out of the data)."""
    sender = next(iter(_addresses(message, "Sender") or _addresses(message, "From")), "")
    recipients = _addresses(message, "To", "Cc", "Bcc")
    if not sender or not recipients:
        raise ValueError("a message needs a From address and at least one recipient")
    utf8 = not all(a.isascii() for a in [sender, *recipients])
    sendable = _without_bcc(message) if "Bcc" in message else message
    policy = sendable.policy
    if utf8 and isinstance(policy, EmailPolicy):
        policy = policy.clone(utf8=True)
    buffer = io.BytesIO()
    BytesGenerator(buffer, policy=policy).flatten(sendable, linesep="\r\n")
    return _Envelope(sender, recipients, buffer.getvalue(), utf8)


def _without_bcc(message: EmailMessage) -> EmailMessage:
    clone = copy.copy(message)  # shallow: deleting a header gives the clone its own list
    del clone["Bcc"]
    return clone


def _login(client: smtplib.SMTP, user: str, password: str) -> None:
    """AUTH as ``user``; smtplib handles ASCII credentials, UTF-8 ones (RFC 4616) go as PLAIN."""
    if user.isascii() and password.isascii():
        client.login(user, password)
        return
    client.ehlo_or_helo_if_needed()
    if not client.has_extn("auth"):
        raise smtplib.SMTPNotSupportedError("SMTP AUTH extension not supported by server.")
    if "PLAIN" not in client.esmtp_features["auth"].upper().split():
        raise SmtpSetupError("the server offers no AUTH PLAIN, needed for a non-ASCII user or password",
                             hint="use an ASCII user and password in TOUCHPOINTS_SMTP_URL")
    token = base64.b64encode(b"\0" + user.encode("utf-8") + b"\0" + password.encode("utf-8")).decode("ascii")
    code, reply = client.docmd("AUTH", f"PLAIN {token}")
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, reply)


class SmtpSession:
    """One connection for many sends, reopened when the server closed it."""

    def __init__(self, transport: SmtpTransport) -> None:
        self.transport = transport
        self.config = transport.config
        self.client: smtplib.SMTP | None = None

    # ------------------------------------------------------------ connection
    def _open(self) -> smtplib.SMTP:
        cfg = self.config
        client: smtplib.SMTP | None = None
        opened = False
        try:
            if cfg.implicit_tls:
                client = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout, context=cfg.tls_context())
            else:
                client = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
            client.ehlo_or_helo_if_needed()
            if cfg.starttls:
                if not client.has_extn("starttls"):
                    raise SmtpSetupError(f"{cfg.describe()} does not offer STARTTLS",
                                         hint="check the port, or drop starttls=1 if the server has no TLS")
                client.starttls(context=cfg.tls_context())
                client.ehlo()
            if cfg.username:
                _login(client, cfg.username, cfg.password or "")
            opened = True
        except (OSError, DeliveryError) as exc:  # smtplib and ssl errors are OSErrors
            raise self._connect_error(exc) from None
        finally:
            if not opened and client is not None:
                client.close()
        log.debug("connected to %s", cfg.describe())
        return client

    def _connect_error(self, exc: Exception) -> Exception:
        where = self.config.describe()
        if isinstance(exc, DeliveryError):
            return exc
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return SmtpSetupError(f"{where} refused the login for {self.config.username!r}: "
                                  f"{exc.smtp_code} {_text(exc.smtp_error)}", code=exc.smtp_code,
                                  hint="check the user and password in TOUCHPOINTS_SMTP_URL "
                                       "(percent-encode special characters)")
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return SmtpSetupError(f"{where} offers no AUTH on this connection",
                                  hint="most servers offer AUTH only after STARTTLS: add ?starttls=1")
        if isinstance(exc, ssl.SSLCertVerificationError):
            return SmtpSetupError(f"the TLS certificate of {where} does not verify: {exc.verify_message}",
                                  hint="use the server's real host name; verify=0 only for a test server")
        if isinstance(exc, ssl.SSLError):
            return SmtpSetupError(f"TLS with {where} failed: {exc.reason or exc}",
                                  hint="smtps:// needs a TLS port (465); STARTTLS ports use smtp://…?starttls=1")
        if isinstance(exc, smtplib.SMTPResponseException):
            return DeliveryError(f"{where} refused the connection: {exc.smtp_code} {_text(exc.smtp_error)}",
                                 code=exc.smtp_code, permanent=False,
                                 hint="the SMTP server is not accepting mail now; the send will be retried")
        if isinstance(exc, (OSError, smtplib.SMTPException)):
            return _temporary(f"cannot connect to {where}: {exc or type(exc).__name__}")
        return exc

    def _drop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    # ------------------------------------------------------------ transaction
    def _transaction(self, client: smtplib.SMTP, env: _Envelope) -> SendResult:
        try:
            mail_options: list[str] = []
            rcpt_options: list[str] = []
            if env.utf8:
                if not client.has_extn("smtputf8"):
                    raise DeliveryError(f"{self.config.describe()} cannot take non-ASCII addresses "
                                        f"({', '.join(env.recipients)}) without SMTPUTF8",
                                        code=553, permanent=True)
                mail_options = ["SMTPUTF8", "BODY=8BITMIME"]
            code, reply = client.mail(env.sender, mail_options)
            if code != 250:
                self._abort(client, code)
                raise _refusal("MAIL FROM", code, reply)
            refused = {}
            for rcpt in env.recipients:
                code, reply = client.rcpt(rcpt, rcpt_options)
                if code not in (250, 251):
                    refused[rcpt] = (code, reply)
            if len(refused) == len(env.recipients):
                codes = [c for c, _ in refused.values()]
                self._abort(client, 421 if 421 in codes else codes[0])
                code, reply = refused[env.recipients[0]]
                error = _refusal(f"RCPT TO {env.recipients[0]}", code, reply)
                if not isinstance(error, SmtpSetupError):
                    error.permanent = all(500 <= c < 600 for c in codes)
                raise error
            try:
                code, reply = client.data(env.data)
            except smtplib.SMTPDataError as exc:  # DATA itself was not answered with 354
                code, reply = exc.smtp_code, exc.smtp_error
            if code != 250:
                self._abort(client, code)
                raise _refusal("DATA", code, reply)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise _Disconnected(str(exc) or type(exc).__name__) from None
        for rcpt, (code, reply) in refused.items():
            log.warning("%s refused recipient %s: %s %s", self.config.describe(), rcpt, code, _text(reply))
        return SendResult(status="sent", code=code, response=_text(reply))

    def _abort(self, client: smtplib.SMTP, code: int) -> None:
        """Leave the connection ready for the next message, or drop it."""
        if code == 421:  # the server is closing the connection
            self._drop()
            return
        try:
            client.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()

    def _attempt(self, env: _Envelope) -> SendResult:
        reused = self.client is not None
        if self.client is None:
            self.client = self._open()
        try:
            return self._transaction(self.client, env)
        except _Disconnected as exc:
            self._drop()
            if not reused:
                raise _temporary(f"{self.config.describe()} dropped the connection: {exc}") from None
        # the server closed the connection while it sat idle: reconnect at once
        log.debug("reconnecting to %s", self.config.describe())
        self.client = self._open()
        try:
            return self._transaction(self.client, env)
        except _Disconnected as exc:
            self._drop()
            raise _temporary(f"{self.config.describe()} dropped the connection: {exc}") from None

    # ------------------------------------------------------------ public
    def send(self, message: EmailMessage) -> SendResult:
        """Send one message; retry temporary failures with exponential backoff."""
        env = envelope_of(message)
        delay = self.transport.backoff_seconds
        for attempt in range(1, self.transport.retries + 1):
            try:
                return self._attempt(env)
            except DeliveryError as exc:
                if exc.permanent or isinstance(exc, SmtpSetupError) or attempt >= self.transport.retries:
                    raise
                log.info("temporary SMTP failure (attempt %d of %d), retrying in %.2fs: %s",
                         attempt, self.transport.retries, delay, exc.message)
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")  # the loop returns or raises

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.quit()
            except (smtplib.SMTPException, OSError):
                pass
            finally:
                self._drop()


class SmtpTransport:
    """Delivery to one SMTP server. ``retries`` is the number of attempts for a temporary
    failure; ``backoff_seconds`` the first pause, doubling. Both default to the settings."""

    def __init__(self, url: str, *, retries: int | None = None, backoff_seconds: float | None = None,
                 timeout: float | None = None) -> None:
        if retries is None or backoff_seconds is None or timeout is None:
            from flows.settings import get_settings

            defaults = get_settings()
            retries = defaults.smtp_retries if retries is None else retries
            backoff_seconds = defaults.smtp_backoff_seconds if backoff_seconds is None else backoff_seconds
            timeout = defaults.smtp_timeout_seconds if timeout is None else timeout
        self.config = SmtpConfig.from_url(url, timeout=timeout)
        self.retries = max(1, int(retries))
        self.backoff_seconds = max(0.0, float(backoff_seconds))

    def __repr__(self) -> str:
        return f"SmtpTransport({self.config.describe()}, retries={self.retries})"

    @contextmanager
    def session(self):
        """``with transport.session() as s: s.send(msg)`` — one connection for many sends."""
        session = SmtpSession(self)
        try:
            yield session
        finally:
            session.close()

    def send(self, message: EmailMessage) -> SendResult:
        with self.session() as session:
            return session.send(message)

    def probe(self) -> None:
        """Connect (TLS and login as configured), NOOP and quit, once: ``DeliveryError`` when
        the server cannot be reached or refuses us (the service's SMTP check)."""
        session = SmtpSession(self)
        try:
            session.client = session._open()
            code, reply = session.client.noop()
            if code != 250:
                raise _temporary(f"{self.config.describe()} answered NOOP with {code} {_text(reply)}")
        except (smtplib.SMTPException, OSError) as exc:
            raise _temporary(f"{self.config.describe()} dropped the connection: {exc}") from None
        finally:
            session.close()


def transport_from_settings(settings) -> SmtpTransport:
    """The transport for ``settings.effective_smtp_url``; on embedded defaults the local mail
    catcher is started first unless one already listens."""
    if settings.embedded_mail:
        from flows.mail.catcher import ensure_running

        ensure_running(settings)
    return SmtpTransport(settings.effective_smtp_url, retries=settings.smtp_retries,
                         backoff_seconds=settings.smtp_backoff_seconds,
                         timeout=settings.smtp_timeout_seconds)
