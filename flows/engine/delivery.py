"""Sending one email: recipients, consent, holds, holdouts, the contact policy, send windows,
the ledger, SMTP, the audit.

The ledger row (journey, step, customer, recipient) makes every send idempotent: a retried or
replayed task finds ``sent`` and sends nothing twice; the Message-ID comes from the same key.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from email.utils import parseaddr
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select

from flows.errors import DeliveryError, TemplateError
from flows.steps.base import Delivery, Member
from flows.store.tables import Customer, Hold, Preference, Suppression
from flows.store.tables import Delivery as Ledger

INTERNAL = "internal"
RETRY_TEMPORARY_AFTER = timedelta(minutes=15)


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
    def _suppression(self, ctx, member: Member, address: str, category: str) -> str | None:
        """Why a customer email must not go out now, or None."""
        s = ctx.session
        bounced = s.get(Suppression, address.lower())
        if bounced is not None:
            return f"address suppressed: {bounced.reason}"
        cat = ctx.config.categories[category]
        if cat.transactional:
            return None
        pref = s.get(Preference, (member.customer.id, category))
        if pref is not None and not pref.subscribed:
            return f"customer unsubscribed from {category}"
        holds = s.scalars(select(Hold).where(
            Hold.customer_id == member.customer.id,
            ~Hold.source.like(f"{ctx.journey_id}:%"),
            or_(Hold.until.is_(None), Hold.until > ctx.now))).all()
        for hold in holds:
            if category in (hold.categories or []):
                return f"held out: {hold.reason}"
        return None

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

    # ------------------------------------------------------------------ ledger
    def _ledger(self, ctx, *, key: str, step_id: str, member: Member, category: str,
                address: str, message_id: str, subject: str = "") -> Ledger:
        row = ctx.session.get(Ledger, key)
        if row is None:
            row = Ledger(key=key, journey_id=ctx.journey_id, step_id=step_id,
                         customer_id=member.customer.id, touchpoint=ctx.touchpoint.name,
                         category=category, recipient=address, message_id=message_id,
                         subject=subject, status="new", flow_run_id=ctx.flow_run_id,
                         created_at=ctx.now, updated_at=ctx.now)
            ctx.session.add(row)
        return row

    def _finish(self, ctx, row: Ledger, member: Member, *, status: str, reason: str,
                action: str, until: datetime | None = None) -> Delivery:
        row.status, row.reason, row.updated_at = status, reason, ctx.now
        ctx.audit(action, customer_id=member.customer.id, result=status, reason=reason,
                  detail={"to": row.recipient, "category": row.category, "message_id": row.message_id,
                          "subject": row.subject, **({"until": until.isoformat()} if until else {})})
        ctx.session.commit()
        return Delivery(status=status, reason=reason, message_id=row.message_id,
                        recipient=row.recipient, until=until)

    # ------------------------------------------------------------------ send
    def send(self, ctx, member: Member, *, to: str, template: str, subject: str, category: str,
             step_id: str, sender: str, extra: dict, key: str | None) -> Delivery:
        from flows.mail.message import build_message, mailbox, message_id_for

        ledger_key = f"{ctx.journey_id}:{step_id}:{member.customer.id}:{key or to}"
        address, display, why_not = self._recipient(ctx, member, to)
        message_id = message_id_for(ledger_key, ctx.config.defaults.sender)
        existing = ctx.session.get(Ledger, ledger_key)
        if existing is not None and existing.status in ("sent", "suppressed", "bounced"):
            status = "duplicate" if existing.status == "sent" else existing.status
            return Delivery(status=status, reason=existing.reason, message_id=existing.message_id,
                            recipient=existing.recipient)
        row = self._ledger(ctx, key=ledger_key, step_id=step_id, member=member, category=category,
                           address=address or "", message_id=message_id)
        if address is None:
            return self._finish(ctx, row, member, status="suppressed", reason=why_not,
                                action="email.suppressed")
        to_customer = to == "customer"
        if to_customer and category != INTERNAL:
            reason = self._suppression(ctx, member, address, category)
            if reason:
                return self._finish(ctx, row, member, status="suppressed", reason=reason,
                                    action="email.suppressed")
            verdict = self._policy(ctx, member, category)
            if verdict is not None and verdict.action == "suppress":
                return self._finish(ctx, row, member, status="suppressed", reason=verdict.reason,
                                    action="email.suppressed")
            if verdict is not None:
                until = self._window_deferral(ctx, member, category, at=verdict.until)
                return self._finish(ctx, row, member, status="deferred", reason=verdict.reason,
                                    action="email.deferred", until=until or verdict.until)
            until = self._window_deferral(ctx, member, category)
            if until is not None:
                return self._finish(ctx, row, member, status="deferred",
                                    reason=f"outside the send window in {member.customer.timezone}",
                                    action="email.deferred", until=until)
        # staff and team mail never carries an unsubscribe link: only customers consent
        transactional = (category == INTERNAL or not to_customer
                         or ctx.config.categories[category].transactional)
        unsubscribe = preferences = None
        if not transactional:
            unsubscribe = ctx.link("unsubscribe", customer=member.customer.id, category=category)
            preferences = ctx.link("preferences", customer=member.customer.id)
        try:
            renderer = getattr(ctx, "renderer", None) or self.engine.renderer  # the version's
            rendered = renderer.render_email(template, subject, ctx.context(member, **extra))
        except TemplateError as exc:
            return self._finish(ctx, row, member, status="failed", reason=str(exc.message),
                                action="email.failed")
        from_header, reply_to = self._sender(ctx, member, sender)
        message = build_message(
            sender=from_header, to=mailbox(display, address), subject=rendered.subject,
            text=rendered.text, html=rendered.html, key=ledger_key, reply_to=reply_to,
            transactional=transactional, postal_address=ctx.config.defaults.postal_address,
            unsubscribe_url=unsubscribe, preferences_url=preferences)
        row.subject, row.status, row.updated_at = rendered.subject[:998], "sending", ctx.now
        ctx.session.commit()  # the ledger says "sending" before the SMTP conversation starts
        try:
            ctx.mail_session().send(message)
        except DeliveryError as exc:
            if exc.permanent:
                if ctx.session.get(Suppression, address.lower()) is None:
                    ctx.session.add(Suppression(email=address.lower(), reason=f"bounced: {exc.message}",
                                                created_at=ctx.now))
                return self._finish(ctx, row, member, status="bounced", reason=exc.message,
                                    action="email.bounced")
            return self._finish(ctx, row, member, status="deferred",
                                reason=f"temporary SMTP failure: {exc.message}",
                                action="email.deferred", until=ctx.now + RETRY_TEMPORARY_AFTER)
        if to_customer:
            customer = ctx.session.get(Customer, member.customer.id)
            if customer is not None:
                customer.last_contact_at = ctx.now
            contacts = getattr(ctx, "contacts", None)
            if contacts is not None:  # the batch's later emails count this one
                contacts.record(member.customer.id, category, ctx.now)
        return self._finish(ctx, row, member, status="sent", reason="", action="email.sent")
