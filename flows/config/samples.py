"""The sample data `touchpoints check` renders templates with.

It holds every name the engine documents (docs/architecture.md, "Expressions and templates"),
so a template that renders here under StrictUndefined can only fail at run time if real data
lacks something the catalogue example has.

The trigger is the catalogue example of the trigger's event. Triggers that are not an event get
the synthetic event the engine builds for them:

* date: type ``date.trigger``, data ``{field, date, fires_at}``
* inactivity: type ``inactivity.trigger``, data ``{last_contact}``
* schedule: type ``schedule``, data ``{schedule}`` (the touch point's name), no customer id
* count: type of the counted event, data ``{category, count, history}`` where ``history`` is a
  list of ``{id, occurred_at, data}`` (``category`` is the value of ``same`` in the example)
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from flows.steps.base import CustomerView

NOW = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
OCCURRED = "2026-01-01T09:00:00+00:00"

SAMPLE_CUSTOMER = CustomerView(
    id="C-0000", name="Sam Sample", email="sam@example.com", timezone="Europe/London",
    region="north", plan="Fibre 500", contract_start=date(2025, 1, 1),
    contract_end=date(2027, 1, 1), account_owner="owner@example.com",
    account_owner_name="Olive Owner", attributes={"company": "Sample Ltd"})

SAMPLE_LINKS = {
    "unsubscribe": "http://127.0.0.1:8000/u/sample",
    "preferences": "http://127.0.0.1:8000/p/sample",
    "survey": "http://127.0.0.1:8000/s/sample",
    "task": "http://127.0.0.1:8000/t/sample",
    "ack": "http://127.0.0.1:8000/t/sample?action=ack",
    "complete": "http://127.0.0.1:8000/t/sample?action=complete",
}

SAMPLE_TASK = {
    "id": "T-sample", "title": "Sample task", "body": "What to do.", "team": "sample-team",
    "due_at": "2026-01-02T09:00:00+00:00", "owner": "owner@example.com",
    "escalation": [{"after": 0, "to": "lead@example.com"}, {"after": 86400,
                                                            "to": "director@example.com"}],
}


def sample_event(event_type: str, data: dict[str, Any], *,
                 customer_id: str | None = SAMPLE_CUSTOMER.id) -> dict[str, Any]:
    return {"id": "evt-sample", "type": event_type, "customer_id": customer_id,
            "occurred_at": OCCURRED, "data": data}


def sample_trigger(trigger: Any, *, touchpoint: str,
                   examples: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The event that starts a journey of a touch point with this trigger."""
    kind = trigger.kind
    if kind == "event":
        return sample_event(trigger.event, dict(examples.get(trigger.event, {})))
    if kind == "count":
        example = dict(examples.get(trigger.event, {}))
        group = example.get(trigger.same, "sample") if trigger.same else None
        history = [{"id": f"evt-sample-{i + 1}", "occurred_at": OCCURRED, "data": dict(example)}
                   for i in range(trigger.count)]
        return sample_event(trigger.event, {"category": group, "count": trigger.count,
                                            "history": history})
    if kind == "date":
        field = trigger.date.field
        anchor = getattr(SAMPLE_CUSTOMER, field, None) or date(2027, 1, 1)
        return sample_event("date.trigger", {"field": field, "date": anchor.isoformat(),
                                             "fires_at": OCCURRED})
    if kind == "inactivity":
        return sample_event("inactivity.trigger", {"last_contact": "2025-12-01"})
    if kind == "schedule":
        return sample_event("schedule", {"schedule": touchpoint}, customer_id=None)
    return sample_event(f"{kind}.trigger", {})


def sample_context(*, company: dict[str, Any], trigger: dict[str, Any], touchpoint: str,
                   results: dict[str, Any]) -> dict[str, Any]:
    """Every documented name, with sample values."""
    return {
        "customer": SAMPLE_CUSTOMER.as_context(),
        "event": trigger,
        "trigger": trigger,
        "steps": results,
        "company": dict(company),
        "journey": {"id": "j-sample", "touchpoint": touchpoint},
        "links": dict(SAMPLE_LINKS),
        "task": dict(SAMPLE_TASK),
        "now": NOW,
    }


def company_sample(defaults: Any) -> dict[str, Any]:
    """``company`` from the parsed defaults, or placeholders when they did not parse."""
    if defaults is None:
        return {"name": "Sample Company", "sender": "Sample Company <hello@example.com>",
                "reply_to": "support@example.com", "postal_address": "1 Sample Street"}
    return {"name": defaults.company_name, "sender": defaults.sender,
            "reply_to": defaults.reply_to, "postal_address": defaults.postal_address}
