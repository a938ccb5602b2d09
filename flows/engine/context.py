"""The template/expression context and the StepContext a run function receives."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flows.config.contracts import typed_event, typed_results
from flows.steps.base import CustomerView, Delivery, Member
from flows.templating import evaluate, render_text


class LazyLinks(Mapping):
    """A member's links, each signed when something first reads it: most emails (every
    transactional one) use none, and signing two per member was 2% of a fan-out's CPU."""

    def __init__(self, make: dict[str, Callable[[], str]]) -> None:
        self._make = dict(make)
        self._values: dict[str, str] = {}

    def __getitem__(self, key: str) -> str:
        if key not in self._values:
            self._values[key] = self._make.pop(key)()  # KeyError for a link it does not have
        return self._values[key]

    def __contains__(self, key: object) -> bool:
        return key in self._values or key in self._make

    def __iter__(self) -> Iterator[str]:
        yield from self._values
        yield from list(self._make)

    def __len__(self) -> int:
        return len(self._values) + len(self._make)

    def update(self, values: Mapping[str, str]) -> None:
        for key, value in values.items():
            self._make.pop(key, None)
            self._values[key] = value


def company_context(config) -> dict[str, Any]:
    d = config.defaults
    return {"name": d.company_name, "sender": d.sender, "reply_to": d.reply_to,
            "postal_address": d.postal_address}


def build_context(*, config, customer: CustomerView | None, event: dict | None,
                  trigger: dict | None, results: dict | None, journey_id: str, touchpoint: str,
                  now: datetime, links: dict | None = None, typed_trigger: dict | None = None,
                  **extra: Any) -> dict[str, Any]:
    """The names an ops lead may use (docs/architecture.md, "Expressions and templates").
    ``typed_trigger``: ``typed_event(config, trigger)`` made once for a whole batch (templates
    run in an immutable sandbox, so its members can share it)."""
    typed = typed_trigger if typed_trigger is not None else typed_event(config, trigger or {})
    ctx: dict[str, Any] = {
        "customer": customer.as_context() if customer else {},
        "event": typed if (event or trigger) is trigger else typed_event(config, event or {}),
        "trigger": typed,
        "steps": typed_results(config, results),
        "company": company_context(config),
        "journey": {"id": journey_id, "touchpoint": touchpoint},
        "links": links if isinstance(links, LazyLinks) else dict(links or {}),
        "now": now,
    }
    for key, value in extra.items():
        if key == "links":
            ctx["links"].update(value)
        else:
            ctx[key] = value
    return ctx


@dataclass
class EngineContext:
    """Implements flows.steps.base.StepContext for one batch of one step."""

    engine: Any
    touchpoint: Any
    step_id: str
    journey_id: str
    trigger: dict[str, Any]
    flow_run_id: str | None
    now: datetime
    session: Any
    actor: str = "system"
    #: the templates of the journey's version (None: the engine's, the current ones)
    renderer: Any = None
    #: the batch's customers and its control-group ones (flows/engine/contact_policy.py reads
    #: the ledger once for all of them; flows/engine/holdouts.py)
    customer_ids: tuple[str, ...] = ()
    holdouts: frozenset[str] = frozenset()
    contacts: Any = field(default=None, repr=False)
    _mail_session: Any = field(default=None, repr=False)
    #: audit rows of the batch not yet written: one ``record_many`` for all of them (one read
    #: of the chain head) when the batch is applied, or before any commit inside the step
    _audit_rows: list = field(default_factory=list, repr=False)
    #: continuation ids the batch already parked members at (flows/engine/journeys.py ``park``)
    parked: set = field(default_factory=set, repr=False)
    _typed_trigger: Any = field(default=None, repr=False)  # made once for the batch

    @property
    def config(self):
        return self.engine.config

    def context(self, member: Member, **extra: Any) -> dict[str, Any]:
        customer = member.customer.id
        links = LazyLinks({
            "unsubscribe": lambda: self.link("unsubscribe", customer=customer),
            "preferences": lambda: self.link("preferences", customer=customer)})
        links.update(extra.pop("links", {}) or {})
        if self._typed_trigger is None:
            self._typed_trigger = typed_event(self.config, self.trigger or {})
        return build_context(config=self.config, customer=member.customer, event=self.trigger,
                             trigger=self.trigger, results=member.results,
                             journey_id=self.journey_id, touchpoint=self.touchpoint.name,
                             now=self.now, links=links, typed_trigger=self._typed_trigger,
                             **extra)

    def render(self, text: str, member: Member, *, header: bool = False, **extra: Any) -> str:
        return render_text(text, self.context(member, **extra), header=header)

    def evaluate(self, expression: str, member: Member, **extra: Any) -> Any:
        return evaluate(expression, self.context(member, **extra))

    def link(self, purpose: str, **claims: Any) -> str:
        return self.engine.signer.url(purpose, **claims)

    def audit(self, action: str, *, customer_id: str | None, result: str, reason: str = "",
              detail: dict[str, Any] | None = None) -> None:
        """Queue an audit row in the batch's transaction; :meth:`flush_audit` writes the queue
        (the engine calls it before every commit, so a row never outlives its rollback)."""
        self._audit_rows.append({
            "action": action, "result": result, "reason": reason, "actor": self.actor,
            "touchpoint": self.touchpoint.name, "step": self.step_id, "customer_id": customer_id,
            "journey_id": self.journey_id, "flow_run_id": self.flow_run_id,
            "detail": detail or {}, "at": self.now})

    def flush_audit(self) -> int:
        """Write the queued audit rows with one ``record_many``; how many were written."""
        from flows.store import audit

        rows, self._audit_rows = self._audit_rows, []
        return audit.record_many(self.session, rows) if rows else 0

    def drop_audit(self) -> None:
        """Forget the queued rows: their transaction was rolled back."""
        self._audit_rows = []

    def send_email(self, member: Member, *, to: str, template: str, subject: str, category: str,
                   step_id: str, sender: str = "company", extra: dict[str, Any] | None = None,
                   key: str | None = None) -> Delivery:
        return self.engine.deliverer.send(self, member, to=to, template=template, subject=subject,
                                          category=category, step_id=step_id, sender=sender,
                                          extra=dict(extra or {}), key=key)

    def send_emails(self, requests: list[dict[str, Any]]) -> list[Delivery]:
        """Send a batch's emails at once, one Delivery per request in order; a request holds
        ``member`` and the keyword arguments of :meth:`send_email`. One query per lookup for
        the batch, one commit per chunk of SMTP sends (flows/engine/delivery.py)."""
        from flows.engine.delivery import EmailRequest

        return self.engine.deliverer.send_many(self, [EmailRequest(**r) for r in requests])

    def mail_session(self):
        """One SMTP connection for the whole batch, opened on first use."""
        if self._mail_session is None:
            self._mail_session = self.engine.open_mail_session()
        return self._mail_session

    def close(self) -> None:
        if self._mail_session is not None:
            self._mail_session.close()
            self._mail_session = None
