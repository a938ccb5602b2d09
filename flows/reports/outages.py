"""Outages and planned maintenance: how fast each customer heard from us.

For every touch point triggered by a declaring event (``outage.declared``,
``maintenance.scheduled``) the report reads, from the store alone:

* **notice**: seconds from the declaring event (the journey's trigger, ``occurred_at``) to the
  first customer email of that touch point going out (the delivery ledger's ``sent`` time);
* **updates**: customer emails of the touch points triggered by the revising event
  (``outage.updated``), per outage id and customer;
* **resolution**: seconds from the closing event (``outage.resolved``,
  ``maintenance.completed``: the event that answered the member's ``wait_for``, recorded in its
  results) to the first customer email after that wait going out.

Which steps those are comes from touchpoints.yaml, so renaming a step keeps the figures. Each
latency is a GROUP BY histogram of whole seconds; p50/p95 are nearest-rank percentiles of it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, func, literal, select
from sqlalchemy.orm import Session

from flows.config.models import iter_steps
from flows.reports.sql import latency, merged, seconds_between, week_label, week_start
from flows.store.tables import Delivery, Journey, Member

INCIDENT_LIMIT = 20  # incidents listed one by one, newest first; the totals count them all


@dataclass(frozen=True)
class Kind:
    declared: str
    resolved: str
    id_field: str
    updated: str | None = None


KINDS = {
    "outage": Kind(declared="outage.declared", updated="outage.updated",
                   resolved="outage.resolved", id_field="outage_id"),
    "maintenance": Kind(declared="maintenance.scheduled", resolved="maintenance.completed",
                        id_field="maintenance_id"),
}


@dataclass
class Spec:
    """The steps of one incident kind in touchpoints.yaml."""

    kind: str
    notices: list[tuple[str, str]] = field(default_factory=list)  # (touchpoint, step)
    resolutions: list[tuple[str, str, str]] = field(default_factory=list)  # (tp, wait, step)
    updates: list[tuple[str, list[str]]] = field(default_factory=list)  # (tp, steps)

    @property
    def touchpoints(self) -> set[str]:
        return {tp for tp, *_ in self.notices + self.resolutions + self.updates}


def _customer_emails(steps) -> list:
    return [s for s in steps if s.kind == "email" and getattr(s, "to", "customer") == "customer"]


def specs(config) -> dict[str, Spec]:
    """The incident kinds touchpoints.yaml handles, and the steps that notify customers."""
    out: dict[str, Spec] = {}
    for tp in config.touchpoints.values():
        event = getattr(tp.trigger, "event", None) if tp.trigger.kind == "event" else None
        for name, kind in KINDS.items():
            steps = list(iter_steps(tp.steps))
            if event == kind.declared:
                spec = out.setdefault(name, Spec(name))
                emails = _customer_emails(steps)
                if emails:
                    spec.notices.append((tp.name, emails[0].id))
                waits = [i for i, s in enumerate(steps)
                         if s.kind == "wait_for" and s.event == kind.resolved]
                if waits:
                    after = _customer_emails(steps[waits[0] + 1:])
                    if after:
                        spec.resolutions.append((tp.name, steps[waits[0]].id, after[0].id))
            elif kind.updated and event == kind.updated:
                emails = _customer_emails(steps)
                if emails:
                    out.setdefault(name, Spec(name)).updates.append(
                        (tp.name, [s.id for s in emails]))
    return out


def _incident_id(kind: Kind):
    return func.coalesce(Journey.trigger[("data", kind.id_field)].as_string(),
                         Journey.trigger[("id",)].as_string())


def _since(since) -> list:
    return [Journey.started_at >= since] if since is not None else []


def _incidents(session: Session, kind: Kind, touchpoint: str, since) -> dict[str, dict]:
    members = (select(func.count()).select_from(Member).where(Member.journey_id == Journey.id)
               .correlate(Journey).scalar_subquery())
    q = (select(_incident_id(kind), Journey.trigger[("occurred_at",)].as_string(), members)
         .where(Journey.touchpoint == touchpoint, *_since(since)))
    return {iid: {"id": iid, "touchpoint": touchpoint, "declared_at": declared,
                  "customers": n, "notified": 0, "notice": Counter(), "updates_sent": 0,
                  "max_updates_per_customer": 0, "resolved_at": None, "resolution": Counter()}
            for iid, declared, n in session.execute(q.execution_options(yield_per=1000))}


def _notice_histograms(session: Session, kind: Kind, touchpoint: str, step: str, since):
    inner = (select(_incident_id(kind).label("iid"), week_start(Journey.started_at).label("week"),
                    seconds_between(Journey.trigger[("occurred_at",)].as_string(),
                                    Delivery.updated_at).label("secs"))
             .select_from(Delivery).join(Journey, Journey.id == Delivery.journey_id)
             .where(Delivery.touchpoint == touchpoint, Delivery.step_id == step,
                    Delivery.status == "sent", Journey.touchpoint == touchpoint, *_since(since))
             .subquery())
    q = (select(inner.c.iid, inner.c.week, inner.c.secs, func.count())
         .group_by(inner.c.iid, inner.c.week, inner.c.secs))
    return session.execute(q.execution_options(yield_per=2000))


def _resolution_histograms(session: Session, kind: Kind, touchpoint: str, wait: str, step: str,
                           since):
    resolved_at = Member.results[(wait, "event", "occurred_at")].as_string()
    inner = (select(_incident_id(kind).label("iid"), resolved_at.label("resolved_at"),
                    seconds_between(resolved_at, Delivery.updated_at).label("secs"))
             .select_from(Delivery).join(Journey, Journey.id == Delivery.journey_id)
             .join(Member, and_(Member.journey_id == Delivery.journey_id,
                                Member.customer_id == Delivery.customer_id))
             .where(Delivery.touchpoint == touchpoint, Delivery.step_id == step,
                    Delivery.status == "sent", Journey.touchpoint == touchpoint,
                    resolved_at.is_not(None), *_since(since))
             .subquery())
    q = (select(inner.c.iid, func.min(inner.c.resolved_at), inner.c.secs, func.count())
         .group_by(inner.c.iid, inner.c.secs))
    return session.execute(q.execution_options(yield_per=2000))


def _updates(session: Session, kind: Kind, touchpoint: str, steps: list[str], since):
    iid = func.coalesce(Journey.trigger[("data", kind.id_field)].as_string(), literal(""))
    sent = (select(iid.label("iid"), Delivery.customer_id.label("cid"))
            .select_from(Delivery).join(Journey, Journey.id == Delivery.journey_id)
            .where(Delivery.touchpoint == touchpoint, Delivery.step_id.in_(steps),
                   Delivery.status == "sent", *_since(since)).subquery())
    per_customer = (select(sent.c.iid, sent.c.cid, func.count().label("n"))
                    .group_by(sent.c.iid, sent.c.cid).subquery())
    q = (select(per_customer.c.iid, func.count(), func.sum(per_customer.c.n),
                func.max(per_customer.c.n)).group_by(per_customer.c.iid))
    return session.execute(q)


def kind_report(session: Session, name: str, spec: Spec, since=None) -> dict[str, Any]:
    kind = KINDS[name]
    incidents: dict[str, dict] = {}
    weekly: dict[str, Counter] = {}
    for tp, step in spec.notices:
        incidents.update(_incidents(session, kind, tp, since))
        for iid, week, secs, n in _notice_histograms(session, kind, tp, step, since):
            entry = incidents.get(iid)
            if entry is not None:
                entry["notice"][max(secs, 0)] += n
                entry["notified"] += n
            weekly.setdefault(week_label(week), Counter())[max(secs, 0)] += n
    for tp, wait, step in spec.resolutions:
        for iid, resolved_at, secs, n in _resolution_histograms(session, kind, tp, wait, step,
                                                                since):
            entry = incidents.get(iid)
            if entry is not None:
                entry["resolution"][max(secs, 0)] += n
                entry["resolved_at"] = min(filter(None, [entry["resolved_at"], resolved_at]))
    updates_sent = 0
    for tp, steps in spec.updates:
        for iid, _customers, sent, most in _updates(session, kind, tp, steps, since):
            sent, most = int(sent or 0), int(most or 0)  # PostgreSQL sums bigints as numeric
            updates_sent += sent
            entry = incidents.get(iid)
            if entry is not None:
                entry["updates_sent"] += sent
                entry["max_updates_per_customer"] = max(entry["max_updates_per_customer"], most)
    told = sum(e["notified"] for e in incidents.values())
    total = {"incidents": len(incidents), "customers_notified": told,
             "notice": latency(merged(e["notice"] for e in incidents.values())),
             "resolution": latency(merged(e["resolution"] for e in incidents.values())),
             "updates_sent": updates_sent,
             "updates_per_customer": round(updates_sent / told, 2) if told else None}
    listed = sorted(incidents.values(), key=lambda e: e["declared_at"] or "", reverse=True)
    rows = []
    for e in listed[:INCIDENT_LIMIT]:
        rows.append({**e, "notice": latency(e["notice"]), "resolution": latency(e["resolution"]),
                     "updates_per_customer": round(e["updates_sent"] / e["notified"], 2)
                     if e["notified"] else None})
    return {"total": total, "incidents": rows,
            "weekly_notice": {week: latency(h) for week, h in sorted(weekly.items())}}


def report(session: Session, config, since=None, touchpoint=None) -> dict[str, Any]:
    """{kind: {total, incidents, weekly_notice}} for each incident kind touchpoints.yaml handles;
    ``touchpoint`` keeps the kinds that touch point takes part in."""
    out = {}
    for name, spec in specs(config).items():
        if touchpoint and touchpoint not in spec.touchpoints:
            continue
        out[name] = kind_report(session, name, spec, since)
    return out
