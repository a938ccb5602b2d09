"""The local mail catcher's mailbox: one ``<id>.eml`` file per message and a ``<id>.json``
sidecar with its envelope and summary.

Ids are ``<arrival time in ns, 20 digits>-<6 hex>``, so sorting names sorts by arrival. Each
file is written to a hidden temporary name, created 0600 (messages hold customer data), and
renamed into place; the sidecar is written last, so a message is listed only once both files
are complete. The mailbox folder is 0700.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import asdict, dataclass
from email import policy
from email.errors import MessageError
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from flows.errors import NotFoundError
from flows.private import private_dir, write_private

MAIL_ID = re.compile(r"^[0-9]{20}-[0-9a-f]{6}$")
LIST_HINT = "list the caught messages with `touchpoints mail list`"


@dataclass(frozen=True)
class MailSummary:
    id: str
    received_at: str  # ISO 8601, UTC
    mail_from: str  # envelope sender
    to: list[str]  # envelope recipients
    subject: str
    message_id: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CaughtMessage:
    summary: MailSummary
    headers: list[tuple[str, str]]  # decoded, in order
    text: str  # the text/plain part, "\n" line ends ("" if none)
    html: str  # the text/html part, "\n" line ends ("" if none)
    raw: bytes  # exactly as received

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key.lower() == name.lower()), None)


def _parse(raw: bytes, *, headersonly: bool = False) -> EmailMessage:
    return BytesParser(policy=policy.default).parsebytes(raw, headersonly=headersonly)


def _decoded(message: EmailMessage, name: str, raw: str) -> str:
    try:
        if not raw.isascii():  # raw UTF-8 (SMTPUTF8) arrives as surrogate escapes
            raw = raw.encode("ascii", "surrogateescape").decode("utf-8", "replace")
        value = str(message.policy.header_fetch_parse(name, raw))
    except (MessageError, ValueError, TypeError, IndexError, AttributeError, LookupError):
        # a malformed header from a foreign sender: keep it as it came
        value = raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return " ".join(value.split())


def _headers(message: EmailMessage) -> list[tuple[str, str]]:
    return [(name, _decoded(message, name, raw)) for name, raw in message.raw_items()]


def _header(message: EmailMessage, name: str) -> str:
    return next((value for key, value in _headers(message) if key.lower() == name.lower()), "")


def _part_text(message: EmailMessage, subtype: str) -> str:
    part = message.get_body((subtype,))
    if part is None or part.get_content_type() != f"text/{subtype}":
        return ""
    try:
        text = part.get_content()
    except (LookupError, ValueError, AssertionError):  # unknown charset or broken encoding
        text = (part.get_payload(decode=True) or b"").decode("utf-8", "replace")
    return text.replace("\r\n", "\n")


class Mailbox:
    def __init__(self, directory: Path | str) -> None:
        self.dir = Path(directory)

    def store(self, raw: bytes, *, mail_from: str, rcpt_tos: list[str]) -> str:
        """Keep one received message; returns its id."""
        private_dir(self.dir)
        arrived = time.time_ns()
        mail_id = f"{arrived:020d}-{secrets.token_hex(3)}"
        headers = _parse(raw, headersonly=True)
        summary = MailSummary(
            id=mail_id,
            received_at=time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(arrived / 1e9))
            + f".{arrived // 1_000_000 % 1000:03d}Z",
            mail_from=mail_from or "", to=[str(r) for r in rcpt_tos],
            subject=_header(headers, "Subject"), message_id=_header(headers, "Message-ID"))
        write_private(self.dir / f"{mail_id}.eml", raw)
        write_private(self.dir / f"{mail_id}.json", json.dumps(summary.as_dict()).encode("utf-8"))
        return mail_id

    def _summary(self, path: Path) -> MailSummary | None:
        try:
            return MailSummary(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):  # removed meanwhile, or not ours
            return None

    def list(self, limit: int | None = None, to: str | None = None) -> list[MailSummary]:
        """Caught messages, newest last; ``to`` keeps those with a recipient containing it
        (case-insensitive); ``limit`` keeps the newest ``limit``."""
        if not self.dir.is_dir():
            return []
        out = []
        for path in sorted(self.dir.glob("*.json")):
            if not MAIL_ID.match(path.stem):
                continue
            summary = self._summary(path)
            if summary is None:
                continue
            if to and not any(to.lower() in rcpt.lower() for rcpt in summary.to):
                continue
            out.append(summary)
        if limit is not None:
            out = out[-limit:] if limit > 0 else []
        return out

    def get(self, mail_id: str) -> CaughtMessage:
        mail_id = mail_id.strip()
        missing = NotFoundError(f"no caught message with id {mail_id!r}", hint=LIST_HINT)
        if not MAIL_ID.match(mail_id):
            raise missing
        summary = self._summary(self.dir / f"{mail_id}.json")
        try:
            raw = (self.dir / f"{mail_id}.eml").read_bytes()
        except OSError:
            raw = None
        if summary is None or raw is None:
            raise missing
        message = _parse(raw)
        return CaughtMessage(summary=summary, headers=_headers(message), text=_part_text(message, "plain"),
                             html=_part_text(message, "html"), raw=raw)

    def clear(self) -> int:
        """Delete every caught message; returns how many there were."""
        if not self.dir.is_dir():
            return 0
        count = 0
        for path in self.dir.iterdir():
            if (path.suffix in (".eml", ".json") and MAIL_ID.match(path.stem)) or path.suffix == ".tmp":
                count += path.suffix == ".eml"
                path.unlink(missing_ok=True)
        return count

