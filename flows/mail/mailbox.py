"""The local mail catcher's mailbox: one ``.eml`` file per message plus its envelope."""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser
from pathlib import Path

from flows.errors import NotFoundError


@dataclass
class MailSummary:
    id: str
    received_at: str
    mail_from: str
    to: list[str]
    subject: str
    message_id: str

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class CaughtMessage:
    summary: MailSummary
    headers: list[tuple[str, str]]
    text: str
    html: str
    raw: bytes


class Mailbox:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)

    def store(self, raw: bytes, *, mail_from: str, rcpt_tos: list[str]) -> str:
        self.dir.mkdir(parents=True, exist_ok=True)
        mail_id = f"{time.time_ns():020d}-{secrets.token_hex(3)}"
        message = BytesParser(policy=policy.default).parsebytes(raw, headersonly=True)
        meta = {"id": mail_id, "received_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "mail_from": mail_from, "to": list(rcpt_tos), "subject": str(message.get("Subject", "")),
                "message_id": str(message.get("Message-ID", ""))}
        for suffix, data in ((".eml", raw), (".json", json.dumps(meta).encode())):
            tmp = self.dir / f".{mail_id}{suffix}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, self.dir / f"{mail_id}{suffix}")
        return mail_id

    def list(self, limit: int | None = None, to: str | None = None) -> list[MailSummary]:
        if not self.dir.exists():
            return []
        out = []
        for meta in sorted(self.dir.glob("*.json")):
            try:
                summary = MailSummary(**json.loads(meta.read_text()))
            except (ValueError, TypeError):
                continue
            if to and not any(to.lower() in t.lower() for t in summary.to):
                continue
            out.append(summary)
        return out[-limit:] if limit else out

    def get(self, mail_id: str) -> CaughtMessage:
        if "/" in mail_id or not (self.dir / f"{mail_id}.json").exists():
            raise NotFoundError(f"no caught message {mail_id!r}", hint="list them with `touchpoints mail list`")
        summary = MailSummary(**json.loads((self.dir / f"{mail_id}.json").read_text()))
        raw = (self.dir / f"{mail_id}.eml").read_bytes()
        message = BytesParser(policy=policy.default).parsebytes(raw)
        text = message.get_body(("plain",))
        html = message.get_body(("html",))
        return CaughtMessage(summary=summary, headers=[(k, str(v)) for k, v in message.items()],
                             text=text.get_content() if text else "", html=html.get_content() if html else "",
                             raw=raw)

    def clear(self) -> int:
        count = 0
        for path in self.dir.glob("*.*"):
            path.unlink()
            count += path.suffix == ".eml"
        return count
