"""Helpers for the page and action tests: a launcher that records instead of running Prefect,
and rows for customers, waiting journeys, surveys and tasks."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from flows import clock
from flows.store.tables import AuditRow, Customer, Event, Journey, Member, Survey, Task

TEAM_ESCALATION = [{"after": 0.0, "to": "install-lead@northwind.example"},
                   {"after": 86400.0, "to": "ops-director@northwind.example"}]


class RecordingLauncher:
    """Records what the dispatcher would start or resume; runs nothing."""

    def __init__(self) -> None:
        self.started: list[dict[str, Any]] = []
        self.resumed: list[dict[str, Any]] = []

    def start(self, touchpoint: str, *, event: dict, customer_id: str | None, label: str,
              **unit: Any) -> Any:
        self.started.append({"touchpoint": touchpoint, "event": event, "customer_id": customer_id,
                             "label": label})
        return {}

    def resume(self, touchpoint: str, *, journey_id: str, pointer: str, mode: str, label: str,
               customer_id: str | None, continuation: str, **unit: Any) -> Any:
        self.resumed.append({"touchpoint": touchpoint, "journey_id": journey_id, "pointer": pointer,
                             "mode": mode, "customer_id": customer_id})
        return {}


def add_customer(engine, customer_id: str = "C-1001", *, name: str = "Ada Lovelace",
                 email: str = "ada@example.com") -> str:
    with engine.store.session() as session:
        if session.get(Customer, customer_id) is None:
            session.add(Customer(id=customer_id, name=name, email=email, timezone="Europe/London",
                                 region="north", plan="Fibre 500", account_owner="sam@northwind.example",
                                 account_owner_name="Sam Okafor", attributes={}))
    return customer_id


def add_waiting_journey(engine, customer_id: str, *, touchpoint: str = "sale",
                        pointer: str = "await_csat", waiting_for: str = "survey.answered",
                        results: dict | None = None) -> str:
    """A journey whose one member is parked at a wait_for step."""
    journey_id = uuid.uuid4().hex
    now = clock.now()
    with engine.store.session() as session:
        session.add(Journey(id=journey_id, touchpoint=touchpoint, entry_key=f"{customer_id}:{journey_id}",
                            entry_lock=False, customer_id=customer_id, trigger={}, status="active",
                            started_at=now))
        session.flush()
        session.add(Member(journey_id=journey_id, customer_id=customer_id, status="waiting",
                           pointer=pointer, waiting_for=waiting_for, due_at=now + timedelta(days=7),
                           results=results or {}, lane=""))
    return journey_id


def add_survey(engine, customer_id: str, *, question: str = "nps", choices: list | None = None,
               journey_id: str | None = None, step_id: str = "sale_csat",
               expires_at: datetime | None = None, text: str | None = None) -> str:
    survey_id = uuid.uuid4().hex
    now = clock.now()
    journey_id = journey_id or uuid.uuid4().hex
    with engine.store.session() as session:
        session.add(Survey(
            id=survey_id, key=f"{journey_id}:{step_id}:{customer_id}", journey_id=journey_id,
            touchpoint="sale", step_id=step_id, customer_id=customer_id, question=question,
            text=text or {"nps": "How likely are you to recommend Northwind Fibre to a friend?",
                          "csat": "How easy was it to join Northwind Fibre?"}.get(question, "Which?"),
            choices=choices or [], created_at=now, expires_at=expires_at or now + timedelta(days=14)))
    return survey_id


def add_task(engine, customer_id: str | None, *, team: str = "install", journey_id: str | None = None,
             step_id: str = "schedule_install", due_at: datetime | None = None,
             status: str = "open", title: str = "Schedule the install for Ada Lovelace",
             body: str = "Plan: Fibre 500\nWindow: next week", owner: str | None = None,
             escalations: list | None = None, created_at: datetime | None = None) -> str:
    task_id = f"T-{uuid.uuid4().hex[:10]}"
    now = clock.now()
    with engine.store.session() as session:
        session.add(Task(
            id=task_id, key=f"{journey_id or task_id}:{step_id}:{customer_id}", journey_id=journey_id,
            touchpoint="sale", step_id=step_id, customer_id=customer_id, team=team, owner=owner,
            title=title, body=body, status=status, due_at=due_at or now + timedelta(days=1),
            escalation_level=0,
            escalations=TEAM_ESCALATION if escalations is None else escalations,
            created_at=created_at or now))
    return task_id


def get(engine, model, key):
    with engine.store.session() as session:
        row = session.get(model, key)
        if row is not None:
            session.expunge(row)
        return row


def audit_rows(engine, action: str | None = None) -> list[AuditRow]:
    with engine.store.session() as session:
        query = select(AuditRow).order_by(AuditRow.seq)
        if action:
            query = query.where(AuditRow.action == action)
        rows = list(session.scalars(query))
        session.expunge_all()
        return rows


def events(engine, type: str | None = None) -> list[Event]:
    with engine.store.session() as session:
        query = select(Event).order_by(Event.received_at)
        if type:
            query = query.where(Event.type == type)
        rows = list(session.scalars(query))
        session.expunge_all()
        return rows


def member(engine, journey_id: str) -> Member:
    with engine.store.session() as session:
        row = session.scalar(select(Member).where(Member.journey_id == journey_id))
        session.expunge(row)
        return row


CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(html: str) -> str:
    found = CSRF_FIELD.search(html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def path_of(url: str) -> str:
    """/s/<token> from http://host/s/<token>."""
    return "/" + url.split("://", 1)[1].split("/", 1)[1]
