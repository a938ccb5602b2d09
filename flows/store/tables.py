"""SQLAlchemy models of the Touchpoints store (separate from Prefect's own database).

Changing a model means adding an Alembic migration under flows/store/migrations/versions.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes on SQLite and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320), index=True)
    timezone: Mapped[str] = mapped_column(String(64))
    region: Mapped[str | None] = mapped_column(String(64), index=True)
    plan: Mapped[str | None] = mapped_column(String(64))
    contract_start: Mapped[date | None] = mapped_column(Date)
    contract_end: Mapped[date | None] = mapped_column(Date)
    account_owner: Mapped[str | None] = mapped_column(String(320))
    account_owner_name: Mapped[str | None] = mapped_column(String(200))
    #: how the customer is greeted ("Lan" for "Nguyễn Thị Lan"); None: derived from the name
    preferred_name: Mapped[str | None] = mapped_column(String(200))
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    last_contact_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    __table_args__ = (
        # date-trigger scans: a range on the date column (flows/engine/trigger_scan.py)
        Index("ix_customers_contract_end", "contract_end"),
        Index("ix_customers_contract_start", "contract_start"),
        # inactivity scans: last contact, or creation for those never contacted
        Index("ix_customers_last_contact", "last_contact_at", "created_at"),
    )


class Preference(Base):
    """A customer's choice per email category. No row means subscribed."""

    __tablename__ = "preferences"
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    category: Mapped[str] = mapped_column(String(64), primary_key=True)
    subscribed: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(64), default="import")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Suppression(Base):
    """An address we must not mail again (hard bounce, complaint)."""

    __tablename__ = "suppressions"
    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    reason: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Hold(Base):
    """Holds a customer out of some categories, e.g. surveys during an open outage."""

    __tablename__ = "holds"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    categories: Mapped[list[Any]] = mapped_column(default=list)
    reason: Mapped[str] = mapped_column(String(500))
    source: Mapped[str] = mapped_column(String(200))  # "<journey_id>:<step_id>"
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    until: Mapped[datetime | None]  # None: until released
    __table_args__ = (UniqueConstraint("customer_id", "source", name="uq_hold_source"),)


class Event(Base):
    """The event inbox: stored durably before anything is dispatched."""

    __tablename__ = "events"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    type: Mapped[str] = mapped_column(String(128), index=True)
    customer_id: Mapped[str | None] = mapped_column(String(64), index=True)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    occurred_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    source: Mapped[str] = mapped_column(String(200), default="cli")
    status: Mapped[str] = mapped_column(String(32), default="received")  # received|dispatched|failed
    dispatched_at: Mapped[datetime | None]
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    __table_args__ = (
        Index("ix_events_status", "status", "received_at"),  # stuck events (redispatch, alerts)
        Index("ix_events_count", "customer_id", "type", "occurred_at"),  # count triggers
    )


class Journey(Base):
    """One run of a touch point: for one customer, or for a segment (e.g. one outage)."""

    __tablename__ = "journeys"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    touchpoint: Mapped[str] = mapped_column(String(128), index=True)
    entry_key: Mapped[str] = mapped_column(String(300))
    #: True while this journey blocks another with the same entry key (see entry rules)
    entry_lock: Mapped[bool] = mapped_column(Boolean, default=True)
    customer_id: Mapped[str | None] = mapped_column(String(64), index=True)
    trigger: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(32), default="active")  # active|done|cancelled
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    #: the content-addressed touch point version it started on (touchpoint_versions.digest)
    version: Mapped[str | None] = mapped_column(String(64))
    __table_args__ = (
        Index("uq_journey_entry", "touchpoint", "entry_key", unique=True,
              sqlite_where=text("entry_lock"), postgresql_where=text("entry_lock")),
    )


class Member(Base):
    """A recipient inside a journey and where they are in it."""

    __tablename__ = "members"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    journey_id: Mapped[str] = mapped_column(ForeignKey("journeys.id", ondelete="CASCADE"))
    customer_id: Mapped[str] = mapped_column(String(64), index=True)
    #: active|waiting|done|exited|cancelled|failed
    status: Mapped[str] = mapped_column(String(32), default="active")
    wave: Mapped[str | None] = mapped_column(String(64))
    lane: Mapped[str] = mapped_column(String(500), default="")
    pointer: Mapped[str | None] = mapped_column(String(64))  # step id it waits at
    resume_mode: Mapped[str] = mapped_column(String(8), default="after")  # after|at
    due_at: Mapped[datetime | None]
    waiting_for: Mapped[str | None] = mapped_column(String(128))  # event type
    match: Mapped[str | None] = mapped_column(Text)
    results: Mapped[dict[str, Any]] = mapped_column(default=dict)
    reason: Mapped[str | None] = mapped_column(String(500))
    #: "holdout" for a member kept in a touch point's control group; None: treated
    cohort: Mapped[str | None] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    __table_args__ = (
        UniqueConstraint("journey_id", "customer_id", name="uq_member"),
        Index("ix_member_select", "journey_id", "status", "wave"),
        Index("ix_member_waiting", "status", "waiting_for"),
        Index("ix_member_due", "status", "due_at"),  # overdue waits (alert checks)
    )


class Continuation(Base):
    """What resumes a parked journey, and when. The service turns these into scheduled
    Prefect flow runs (idempotency key = id), and catches up on the ones that fell due."""

    __tablename__ = "continuations"
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    journey_id: Mapped[str] = mapped_column(ForeignKey("journeys.id", ondelete="CASCADE"), index=True)
    touchpoint: Mapped[str] = mapped_column(String(128))
    pointer: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # wait|timeout|event|defer
    due_at: Mapped[datetime] = mapped_column(index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|scheduled|done|cancelled
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(300), default="")  # e.g. "C-1001 · wait_3d"
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WorkUnit(Base):
    """A unit of work that a flow run drives: a journey start, a resumption, or a wave of
    members walking the steps. The store, not Prefect, says where it stands: a unit is
    ``queued`` (no run yet), ``launched`` (a Prefect run was created for it), ``leased`` (a
    live run holds it until ``lease_expires_at``, renewed by its heartbeat) or ``done``. A unit
    whose lease expired, or whose run ended without finishing it, is driven again.
    Lease times are wall-clock time, never the journey clock."""

    __tablename__ = "work_units"
    id: Mapped[str] = mapped_column(String(300), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # start|resume|wave
    touchpoint: Mapped[str] = mapped_column(String(128))
    journey_id: Mapped[str | None] = mapped_column(String(64), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    label: Mapped[str] = mapped_column(String(300), default="")
    status: Mapped[str] = mapped_column(String(16), default="queued")
    due_at: Mapped[datetime | None]  # journey time: when the run should start
    owner: Mapped[str | None] = mapped_column(String(64))  # the flow run holding the lease
    lease_expires_at: Mapped[datetime | None]
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    launched_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_work_units_status", "status", "lease_expires_at"),)


class Delivery(Base):
    """The send ledger: one row per (journey, step, recipient[, key]) so nothing goes twice."""

    __tablename__ = "deliveries"
    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    journey_id: Mapped[str] = mapped_column(String(64), index=True)
    step_id: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[str | None] = mapped_column(String(64), index=True)
    touchpoint: Mapped[str] = mapped_column(String(128))
    category: Mapped[str] = mapped_column(String(64))
    recipient: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(998), default="")
    message_id: Mapped[str] = mapped_column(String(300))
    #: sending|accepted (taken by SMTP, not settled yet)|sent|suppressed|deferred|bounced|failed
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(500), default="")
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Task(Base):
    """A handoff task for a team, with an SLA."""

    __tablename__ = "tasks"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(400), unique=True)  # journey:step:customer
    journey_id: Mapped[str | None] = mapped_column(String(64), index=True)
    touchpoint: Mapped[str | None] = mapped_column(String(128))
    step_id: Mapped[str | None] = mapped_column(String(64))
    customer_id: Mapped[str | None] = mapped_column(String(64), index=True)
    team: Mapped[str] = mapped_column(String(64), index=True)
    owner: Mapped[str | None] = mapped_column(String(320))
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open|acknowledged|completed|cancelled
    due_at: Mapped[datetime]
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    escalations: Mapped[list[Any]] = mapped_column(default=list)  # [{after, to}] from the team
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(320))
    completed_at: Mapped[datetime | None]
    completed_by: Mapped[str | None] = mapped_column(String(320))
    outcome: Mapped[str | None] = mapped_column(Text)  # completion note, e.g. meeting minutes
    __table_args__ = (Index("ix_tasks_status", "status", "due_at"),)  # escalations, alert checks


class Survey(Base):
    """A survey invitation; its token is single-use."""

    __tablename__ = "surveys"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(400), unique=True)
    journey_id: Mapped[str] = mapped_column(String(64), index=True)
    touchpoint: Mapped[str] = mapped_column(String(128))
    step_id: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[str] = mapped_column(String(64), index=True)
    question: Mapped[str] = mapped_column(String(16))  # nps|csat|custom
    text: Mapped[str] = mapped_column(String(500))
    choices: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    answered_at: Mapped[datetime | None]
    score: Mapped[int | None] = mapped_column(Integer)
    answer: Mapped[str | None] = mapped_column(String(200))  # custom question choice
    comment: Mapped[str | None] = mapped_column(Text)


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # public prefix
    name: Mapped[str] = mapped_column(String(200))
    key_hash: Mapped[str] = mapped_column(String(128))
    hmac_secret: Mapped[str | None] = mapped_column(String(512))  # encrypted under the secret key
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class AuditRow(Base):
    """Append-only, hash-chained. On PostgreSQL a trigger refuses UPDATE and DELETE."""

    __tablename__ = "audit"
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                     autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    action: Mapped[str] = mapped_column(String(64), index=True)
    touchpoint: Mapped[str | None] = mapped_column(String(128), index=True)
    step: Mapped[str | None] = mapped_column(String(64))
    customer_id: Mapped[str | None] = mapped_column(String(64), index=True)
    journey_id: Mapped[str | None] = mapped_column(String(64))
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    result: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(200))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    __table_args__ = (Index("ix_audit_flow_run", "flow_run_id", "action"),)


class TouchpointVersion(Base):
    """One version of a touch point, content-addressed: its definition and templates as they
    were when a journey started on it. Journeys finish on their version by default."""

    __tablename__ = "touchpoint_versions"
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    touchpoint: Mapped[str] = mapped_column(String(128), index=True)
    definition: Mapped[dict[str, Any]] = mapped_column(default=dict)
    templates: Mapped[dict[str, Any]] = mapped_column(default=dict)  # path -> source
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TeamLink(Base):
    """A link that opens a team's task list; it expires and can be revoked."""

    __tablename__ = "team_links"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    team: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    created_by: Mapped[str] = mapped_column(String(200), default="")


class Alert(Base):
    """Throttle state of one kind of operations alert (e.g. failed members of a touch point):
    at most one email per window, carrying the count of what happened since the last one."""

    __tablename__ = "alerts"
    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    last_sent_at: Mapped[datetime | None]
    pending: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
