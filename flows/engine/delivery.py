"""Sending a batch's emails: recipients, consent, holds, holdouts, the contact policy, send
windows, the ledger, SMTP, the audit.

The ledger row (journey, step, customer, recipient) makes every send idempotent: a retried or
replayed task finds ``sent`` and sends nothing twice; the Message-ID comes from the same key.

Batch-shaped (:meth:`Deliverer.send_many`):

* the batch's ledger rows, suppressions, preferences and holds are read with one query each
  (flows/engine/consent.py), and the contact policy reads the ledger once (contact_policy.py);
* the emails that may go are sent in chunks of :data:`CHUNK_SIZE`. Right before a chunk's SMTP
  conversation one query re-reads which of its members are still ``active``: a member whose
  journey ended meanwhile (an ``exit_when`` event, a cancel) gets nothing, and no ledger row.
  Then its ledger rows are ``sending`` (with their Message-IDs) and **one commit** makes them
  durable, together with the audit rows and settled rows of everything decided before;
* the chunk goes over the batch's one SMTP connection; each email the server accepts is
  marked ``accepted`` at once in a tiny transaction of its own (:class:`_Accepted`), then the
  chunk's rows are settled (``sent``,
  ``bounced``, ``deferred``) and audited, committed with the next chunk's ``sending`` rows or,
  after the last chunk, by a final commit.

A crash during the conversation leaves ``sending`` only the email in flight: a re-driven run
sends it again with the same Message-ID (at most one duplicate per crash), and settles the
``accepted`` ones as sent without sending them again. An exception out of the SMTP loop itself (the run being cancelled) first
settles and commits what the chunk already delivered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, update
from sqlalchemy.orm.attributes import flag_modified

from flows.engine import consent
from flows.errors import DeliveryError, TemplateError
from flows.steps.base import Delivery, Member
from flows.steps.email import ENDED
from flows.store.tables import Customer, Suppression
from flows.store.tables import Delivery as Ledger

INTERNAL = "internal"
RETRY_TEMPORARY_AFTER = timedelta(minutes=15)
#: emails per SMTP conversation between two commits
CHUNK_SIZE = 100


#: a ledger row the SMTP server accepted, not yet settled and audited as ``sent``
ACCEPTED = "accepted"


#: one Core statement, compiled once (the ORM's bulk UPDATE costs 0.15 ms more per email)
_MARK_ACCEPTED = (Ledger.__table__.update()
                  .where(Ledger.__table__.c.key == bindparam("ledger_key"),
                         Ledger.__table__.c.status == "sending")
                  .values(status=ACCEPTED))


class _Accepted:
    """Marks each email the SMTP server accepted, at once and durably, on a connection of its
    own, in a transaction of its own: one small UPDATE (``sending`` → ``accepted``), the only write per email.
    A crash in the middle of a chunk then leaves ``sending`` only the email that was in flight,
    so a re-drive sends again at most one email per crash; the ``accepted`` ones it settles as
    sent without sending them. The chunk's session holds no lock meanwhile (its ``sending``
    rows were committed, and nothing is flushed during the conversation)."""

    def __init__(self, session) -> None:
        from sqlalchemy.engine import Engine

        bind = session.get_bind()
        self.engine = bind if isinstance(bind, Engine) else None
        self.connection = None

    def mark(self, key: str) -> None:
        if self.engine is None:  # a session bound to one connection: settled with the chunk
            return
        if self.connection is None:
            self.connection = self.engine.connect()
        with self.connection.begin():  # its own short transaction, committed at once
            self.connection.execute(_MARK_ACCEPTED, {"ledger_key": key})

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


@dataclass
class EmailRequest:
    """One email a step asks for (the keyword arguments of ``StepContext.send_email``)."""

    member: Member
    to: str
    template: str
    subject: str
    category: str
    step_id: str
    sender: str = "company"
    extra: dict[str, Any] = field(default_factory=dict)
    key: str | None = None


@dataclass
class _Plan:
    """One email on its way: its ledger key, recipient and, once decided, its outcome."""

    request: EmailRequest
    ledger_key: str
    address: str | None
    display: str
    message_id: str
    to_customer: bool
    transactional: bool
    row: Ledger | None = None
    delivery: Delivery | None = None   # set once it is settled (or needs no work)
    message: Any = None                # the EmailMessage, for the ones to send
    audit: dict[str, Any] | None = None  # its audit row, until written
    subject: str | None = None           # as rendered


def _stamp(row: Ledger, now: datetime) -> None:
    """``updated_at = now``, written even when it already holds ``now`` (an unchanged value is
    left out of the UPDATE, and the column's ``onupdate`` would put the wall clock there: the
    contact policy reads a sent row's ``updated_at`` as its send time)."""
    row.updated_at = now
    flag_modified(row, "updated_at")


class Deliverer:
    def __init__(self, engine) -> None:
        self.engine = engine

    # ------------------------------------------------------------------ recipients
    def _recipient(self, ctx, member: Member, to: str) -> tuple[str | None, str, str]:
        """(address or None, display name, why not) for customer / account_owner / team:x / email."""
        c = member.customer
        if to == "customer":
            return c.email, c.name, ""
        if to == "account_owner":
            if not c.account_owner:
                return None, "", "the customer has no account owner"
            return c.account_owner, c.account_owner_name or "", ""
        if to.startswith("team:"):
            team = ctx.config.teams[to.removeprefix("team:")]
            return team.email, f"{ctx.config.defaults.company_name} {to.removeprefix('team:')} team", ""
        name, address = parseaddr(to)
        return (address or None), name, "" if address else f"not an address: {to!r}"

    def _sender(self, ctx, member: Member, sender: str):
        """(From, Reply-To): structured ``Address`` objects for names from data."""
        from flows.mail.message import mailbox

        d = ctx.config.defaults
        if sender == "account_owner" and member.customer.account_owner:
            owner = mailbox(member.customer.account_owner_name or "", member.customer.account_owner)
            return owner, owner
        return d.sender, d.reply_to

    # ------------------------------------------------------------------ policy
    def _window_deferral(self, ctx, member: Member, category: str,
                         at: datetime | None = None) -> datetime | None:
        """When the send window next opens, if it is shut at ``at`` (default: now)."""
        cat = ctx.config.categories[category]
        window = ctx.config.defaults.send_window
        if cat.transactional or window is None:
            return None
        at = at or ctx.now
        tz = ZoneInfo(member.customer.timezone)
        opening = window.next_open(at, tz)
        return opening if opening > at else None

    def _policy(self, ctx, member: Member, category: str):
        """The control group and the contact policy on a non-transactional customer email:
        a :class:`flows.engine.contact_policy.Verdict`, or None to send it."""
        from flows.engine import contact_policy, holdouts

        if ctx.config.categories[category].transactional:
            return None
        if holdouts.is_held_out(ctx, member.customer.id):
            return contact_policy.Verdict("suppress", holdouts.REASON)
        if not ctx.config.defaults.contact_policy:
            return None
        return contact_policy.decide(ctx.config, contact_policy.for_batch(ctx, member.customer.id),
                                     customer_id=member.customer.id, category=category,
                                     now=ctx.now)

    # ------------------------------------------------------------------ one email
    def send(self, ctx, member: Member, *, to: str, template: str, subject: str, category: str,
             step_id: str, sender: str, extra: dict, key: str | None) -> Delivery:
        """Send one email: a batch of one."""
        return self.send_many(ctx, [EmailRequest(
            member=member, to=to, template=template, subject=subject, category=category,
            step_id=step_id, sender=sender, extra=dict(extra or {}), key=key)])[0]

    def _plan(self, ctx, request: EmailRequest) -> _Plan:
        from flows.mail.message import message_id_for

        member, to, category = request.member, request.to, request.category
        ledger_key = f"{ctx.journey_id}:{request.step_id}:{member.customer.id}:{request.key or to}"
        address, display, _ = self._recipient(ctx, member, to)
        to_customer = to == "customer"
        # staff and team mail never carries an unsubscribe link: only customers consent
        transactional = (category == INTERNAL or not to_customer
                         or ctx.config.categories[category].transactional)
        return _Plan(request=request, ledger_key=ledger_key, address=address, display=display,
                     message_id=message_id_for(ledger_key, ctx.config.defaults.sender),
                     to_customer=to_customer, transactional=transactional)

    def prepare(self, ctx, member: Member, *, plan: _Plan, reads: consent.Consent) -> _Plan:
        """Decide one email of the batch from the batch's reads: nothing to do (already sent),
        suppressed, deferred, or to send (``plan.message`` built). No query of its own."""
        request, category = plan.request, plan.request.category
        existing = reads.ledger.get(plan.ledger_key)
        if existing is not None and existing.status == ACCEPTED:
            # the SMTP server took it before a crash stopped the run settling it: record it as
            # sent now, without sending it again
            plan.row = existing
            return self._settle(ctx, plan, status="sent", reason="", action="email.sent")
        if existing is not None and existing.status in ("sent", "suppressed", "bounced"):
            status = "duplicate" if existing.status == "sent" else existing.status
            plan.delivery = Delivery(status=status, reason=existing.reason,
                                     message_id=existing.message_id, recipient=existing.recipient)
            return plan
        plan.row = existing
        if plan.address is None:
            _, _, why_not = self._recipient(ctx, member, request.to)
            return self._settle(ctx, plan, status="suppressed", reason=why_not,
                                action="email.suppressed")
        if plan.to_customer and category != INTERNAL:
            reason = reads.why_not(customer_id=member.customer.id, address=plan.address,
                                   category=category,
                                   transactional=ctx.config.categories[category].transactional)
            if reason:
                return self._settle(ctx, plan, status="suppressed", reason=reason,
                                    action="email.suppressed")
            verdict = self._policy(ctx, member, category)
            if verdict is not None and verdict.action == "suppress":
                return self._settle(ctx, plan, status="suppressed", reason=verdict.reason,
                                    action="email.suppressed")
            if verdict is not None:
                until = self._window_deferral(ctx, member, category, at=verdict.until)
                return self._settle(ctx, plan, status="deferred", reason=verdict.reason,
                                    action="email.deferred", until=until or verdict.until)
            until = self._window_deferral(ctx, member, category)
            if until is not None:
                return self._settle(ctx, plan, status="deferred",
                                    reason=f"outside the send window in {member.customer.timezone}",
                                    action="email.deferred", until=until)
            contacts = getattr(ctx, "contacts", None)
            if contacts is not None:  # the batch's later emails count this one
                contacts.record(member.customer.id, category, ctx.now)
        return plan

    def _build(self, ctx, plan: _Plan) -> None:
        """Render and build the message of an email that may go (or settle it as failed)."""
        from flows.mail.message import build_message, mailbox

        request, member = plan.request, plan.request.member
        unsubscribe = preferences = None
        if not plan.transactional:
            unsubscribe = ctx.link("unsubscribe", customer=member.customer.id,
                                   category=request.category)
            preferences = ctx.link("preferences", customer=member.customer.id)
        try:
            renderer = getattr(ctx, "renderer", None) or self.engine.renderer  # the version's
            rendered = renderer.render_email(request.template, request.subject,
                                             ctx.context(member, **request.extra))
        except TemplateError as exc:
            self._settle(ctx, plan, status="failed", reason=str(exc.message),
                         action="email.failed")
            return
        from_header, reply_to = self._sender(ctx, member, request.sender)
        plan.message = build_message(
            sender=from_header, to=mailbox(plan.display, plan.address), subject=rendered.subject,
            text=rendered.text, html=rendered.html, key=plan.ledger_key, reply_to=reply_to,
            transactional=plan.transactional, postal_address=ctx.config.defaults.postal_address,
            unsubscribe_url=unsubscribe, preferences_url=preferences)
        plan.subject = rendered.subject[:998]

    # ------------------------------------------------------------------ the ledger
    def _row(self, ctx, plan: _Plan) -> Ledger:
        if plan.row is None:
            request = plan.request
            plan.row = Ledger(key=plan.ledger_key, journey_id=ctx.journey_id,
                              step_id=request.step_id, customer_id=request.member.customer.id,
                              touchpoint=ctx.touchpoint.name, category=request.category,
                              recipient=plan.address or "", message_id=plan.message_id,
                              subject="", status="new", flow_run_id=ctx.flow_run_id,
                              created_at=ctx.now, updated_at=ctx.now)
            ctx.session.add(plan.row)
        if plan.subject is not None:
            plan.row.subject = plan.subject
        return plan.row

    def _settle(self, ctx, plan: _Plan, *, status: str, reason: str, action: str,
                until: datetime | None = None) -> _Plan:
        """The email's outcome, on its ledger row, with its audit row queued on the plan."""
        row = self._row(ctx, plan)
        row.status, row.reason = status, reason
        _stamp(row, ctx.now)
        plan.delivery = Delivery(status=status, reason=reason, message_id=row.message_id,
                                 recipient=row.recipient, until=until)
        plan.audit = dict(
            action=action, result=status, reason=reason, actor=getattr(ctx, "actor", "system"),
            touchpoint=ctx.touchpoint.name, step=getattr(ctx, "step_id", None),
            customer_id=plan.request.member.customer.id, journey_id=ctx.journey_id,
            flow_run_id=ctx.flow_run_id, at=ctx.now,
            detail={"to": row.recipient, "category": row.category, "message_id": row.message_id,
                    "subject": row.subject, **({"until": until.isoformat()} if until else {})})
        return plan

    # ------------------------------------------------------------------ the batch
    def send_many(self, ctx, requests: list[EmailRequest]) -> list[Delivery]:
        """Send a batch's emails (see the module docstring); one Delivery per request, in order."""
        plans = [self._plan(ctx, r) for r in requests]
        reads = consent.read(
            ctx.session, journey_id=ctx.journey_id, now=ctx.now,
            keys=[p.ledger_key for p in plans],
            addresses=[p.address for p in plans if p.address],
            consent_of=[(p.request.member.customer.id, p.request.category) for p in plans
                        if p.to_customer and not p.transactional])
        for plan in plans:
            self.prepare(ctx, plan.request.member, plan=plan, reads=reads)
        audited = [p for p in plans if p.audit is not None]  # audit rows not written yet
        to_send = [p for p in plans if p.delivery is None]
        suppressed = set(reads.suppressed)
        for start in range(0, len(to_send), CHUNK_SIZE):
            chunk = to_send[start:start + CHUNK_SIZE]
            for plan in chunk:
                self._build(ctx, plan)
                if plan.delivery is not None:  # the template failed
                    audited.append(plan)
            ready = [p for p in chunk if p.delivery is None]
            open_ids = consent.still_open(ctx.session, [p.request.member.id for p in ready])
            for plan in ready:
                if plan.request.member.id not in open_ids:
                    self._drop(ctx, plan)
            ready = [p for p in ready if p.delivery is None]
            for plan in ready:
                row = self._row(ctx, plan)
                row.status = "sending"
                _stamp(row, ctx.now)
            self._commit(ctx, audited)  # "sending" is durable before the SMTP conversation
            self._converse(ctx, ready, audited, suppressed)
        self._commit(ctx, audited)
        return [p.delivery for p in plans]

    def _drop(self, ctx, plan: _Plan) -> None:
        """The member's journey ended before its email went: nothing is sent, and no ledger
        row is written (the journey's end is audited where it ended)."""
        plan.message = None
        plan.delivery = Delivery(status=ENDED, reason="the journey ended before the email went out",
                                 message_id=None, recipient=plan.address)

    def _converse(self, ctx, ready: list[_Plan], audited: list, suppressed: set[str]) -> None:
        """The chunk's SMTP conversation over the batch's connection, then its settlement."""
        delivered: list[_Plan] = []
        accepted = _Accepted(ctx.session)
        try:
            for plan in ready:
                try:
                    ctx.mail_session().send(plan.message)
                except DeliveryError as exc:
                    self._failed_send(ctx, plan, exc, suppressed)
                else:
                    delivered.append(plan)
                    accepted.mark(plan.ledger_key)
                audited.append(plan)
                plan.message = None
        except BaseException:
            accepted.close()
            # cancelled mid-chunk: what went out is recorded before the run ends; the rest
            # stays "sending" and goes again (same Message-ID) when the run is driven again
            try:
                self._sent(ctx, delivered)
                self._commit(ctx, audited)
            except Exception:  # noqa: BLE001, S110 - the first error is the one to report
                pass
            raise
        accepted.close()
        self._sent(ctx, delivered)

    def _failed_send(self, ctx, plan: _Plan, exc: DeliveryError, suppressed: set[str]) -> None:
        if exc.permanent:
            address = plan.address.lower()
            if address not in suppressed:
                suppressed.add(address)
                ctx.session.add(Suppression(email=address, reason=f"bounced: {exc.message}",
                                            created_at=ctx.now))
            self._settle(ctx, plan, status="bounced", reason=exc.message, action="email.bounced")
            return
        self._settle(ctx, plan, status="deferred", reason=f"temporary SMTP failure: {exc.message}",
                     action="email.deferred", until=ctx.now + RETRY_TEMPORARY_AFTER)

    def _sent(self, ctx, delivered: list[_Plan]) -> None:
        for plan in delivered:
            self._settle(ctx, plan, status="sent", reason="", action="email.sent")
        customers = sorted({p.request.member.customer.id for p in delivered if p.to_customer})
        if customers:  # one statement for the chunk
            ctx.session.execute(update(Customer).where(Customer.id.in_(customers))
                                .values(last_contact_at=ctx.now)
                                .execution_options(synchronize_session=False))

    @staticmethod
    def _commit(ctx, audited: list) -> None:
        """Write the queued audit rows (one ``record_many``: the chain head read once, late in
        the transaction, as the audit lock wants) and commit."""
        from flows.store import audit

        flush = getattr(ctx, "flush_audit", None)
        if flush is not None:  # the step's own rows first, in the order they happened
            flush()
        rows = [p.audit for p in audited]
        audited.clear()
        if rows:
            audit.record_many(ctx.session, rows)
        ctx.session.commit()
