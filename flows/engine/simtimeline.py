"""The timeline of a simulation: one entry per thing that happened, read from the audit rows
the engine wrote in the throwaway store (so it says what the engine did, not what we think
it did), plus the branch arms and skips read from the member's step results."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from flows.store.tables import AuditRow, Task

_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:\d\d|Z)?")


@dataclass
class Entry:
    at: datetime
    day: int
    local: str
    kind: str
    step: str | None = None
    #: a message's subject, a task's title, a branch arm's label, an event's type
    subject: str | None = None
    detail: str = ""
    category: str | None = None
    to: str | None = None
    #: a wait's end, a deferral's new time, a task's due time (local, like ``local``)
    until: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["at"] = self.at.isoformat()
        return {k: v for k, v in data.items() if v not in (None, "")}


@dataclass
class Timeline:
    start: datetime
    timezone: str
    entries: list[Entry] = field(default_factory=list)
    #: the last audit row already turned into entries
    seen: int = 0

    def local(self, moment: datetime) -> str:
        return moment.astimezone(ZoneInfo(self.timezone)).strftime("%a %d %b %Y %H:%M")

    def add(self, at: datetime, kind: str, **fields: Any) -> Entry:
        until = fields.pop("until", None)
        entry = Entry(at=at, day=(at - self.start).days, local=self.local(at), kind=kind,
                      until=self.local(until) if isinstance(until, datetime) else until,
                      **fields)
        self.entries.append(entry)
        return entry

    # ------------------------------------------------------------------ from the audit trail
    def mark(self, session) -> None:
        """Everything audited so far is history, not part of the simulation."""
        self.seen = session.scalar(select(AuditRow.seq).order_by(AuditRow.seq.desc()).limit(1)) or 0

    def drain(self, session) -> None:
        rows = session.scalars(select(AuditRow).where(AuditRow.seq > self.seen)
                               .order_by(AuditRow.seq)).all()
        for row in rows:
            self.seen = row.seq
            self._from_audit(session, row)

    def _from_audit(self, session, row: AuditRow) -> None:
        detail = row.detail or {}
        action, step = row.action, row.step
        if action == "journey.started":
            self.add(row.at, "started", detail=row.reason)
        elif action == "journey.refused":
            self.add(row.at, "refused", detail=row.reason)
        elif action == "email.sent":
            self.add(row.at, "message", step=step, subject=detail.get("subject"),
                     category=detail.get("category"), to=detail.get("to"))
        elif action in ("email.suppressed", "email.failed", "email.bounced"):
            self.add(row.at, action.split(".")[1], step=step, subject=detail.get("subject") or None,
                     category=detail.get("category"), to=detail.get("to"), detail=row.reason)
        elif action == "email.deferred":
            until = detail.get("until")
            self.add(row.at, "deferred", step=step, category=detail.get("category"),
                     to=detail.get("to"), detail=row.reason,
                     until=datetime.fromisoformat(until) if until else None)
        elif action == "handoff.created":
            task = session.get(Task, detail.get("task_id"))
            self.add(row.at, "task", step=step, subject=task.title if task else None,
                     detail=f"for {detail.get('team')}" + (f", owner {task.owner}"
                                                          if task and task.owner else ""),
                     until=task.due_at if task else None)
        elif action == "journey.waiting":
            found = _ISO.search(row.reason or "")
            until = datetime.fromisoformat(found.group(0)) if found else None
            if row.result == "waiting":  # wait_for: "for <event> until <time>"
                event = (row.reason or "").removeprefix("for ").split(" until ")[0]
                self.add(row.at, "wait_for", step=step, subject=event, until=until)
            else:
                self.add(row.at, "wait", step=step, until=until)
        elif action == "journey.event":
            self.add(row.at, "matched" if row.result == "matched" else "arrived", step=step,
                     detail=row.reason)
        elif action in ("journey.goal", "journey.exited"):
            self.add(row.at, "goal" if action == "journey.goal" else "exit", step=step,
                     detail=row.reason)
        elif action == "journey.holdout":
            self.add(row.at, "holdout", detail=row.reason)
        elif action == "journey.completed":
            self.add(row.at, "done", detail=row.reason)
        elif action == "journey.failed":
            self.add(row.at, "failed", step=detail.get("step") or step, detail=row.reason)
        elif action == "hold.started":
            self.add(row.at, "hold", step=step, detail=", ".join(detail.get("categories") or []))
        elif action == "hold.released":
            self.add(row.at, "release", step=step, detail=row.reason)
        elif action == "survey.answered":
            self.add(row.at, "answer", step=step, subject=detail.get("question"),
                     detail=row.reason)
        elif action in ("task.completed", "task.acknowledged"):
            self.add(row.at, action.split(".")[1], step=step, detail=row.reason)
        elif action == "event.received":
            self.add(row.at, "event", subject=detail.get("type"), detail=row.reason)
        elif action.startswith(("journey.", "email.")):
            self.add(row.at, action, step=step, detail=row.reason)

    # ------------------------------------------------------------------ views
    def as_list(self) -> list[dict[str, Any]]:
        return [e.as_dict() for e in self.entries]

    def pinned(self) -> list[tuple]:
        """(day, step, kind, subject): what the shipped touch points' tests compare."""
        return [(e.day, e.step, e.kind, e.subject) for e in self.entries]


def render_text(timeline: Timeline, *, title: str) -> str:
    """The timeline for people: a heading per moment (day and local time), then what happened
    at it, one line each: the step, what it did, and why (in brackets)."""
    lines = [title, f"times in {timeline.timezone}"]
    moment = None
    for e in timeline.entries:
        if (e.day, e.local) != moment:
            moment = (e.day, e.local)
            lines += ["", f"+{e.day}d  {e.local}"]
        what = e.kind + (f" [{e.category}]" if e.category else "")
        if e.subject:
            what += f": {e.subject}"
        if e.to and e.kind == "message":
            what += f" (to {e.to})"
        if e.until:
            what += (", due " if e.kind == "task" else " until ") + e.until
        if e.detail and e.kind != "message":
            what += f" ({e.detail})"
        lines.append(f"  {e.step or '-':<22} {what}")
    return "\n".join(line.rstrip() for line in lines)
