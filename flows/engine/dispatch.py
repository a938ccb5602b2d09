"""Events in: store them durably, wake journeys that wait for them, start the touch points
they trigger. Starting and resuming go through a launcher: in-process here, or scheduled
Prefect flow runs of served deployments in the service."""

from __future__ import annotations

import difflib
import threading
from contextlib import contextmanager
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select, update

from flows import clock
from flows.engine.context import build_context
from flows.engine.goals import at_intake
from flows.engine.intake import admit, entry_refusals, refuse_bad_data
from flows.engine.journeys import continuation_id
from flows.engine.matching import answered_results, event_dict, matches
from flows.errors import NotFoundError, TouchpointsError
from flows.store.tables import Continuation, Customer, Event, Journey, Member
from flows.templating import evaluate


class Launcher(Protocol):
    def start(self, touchpoint: str, *, event: dict, customer_id: str | None, label: str) -> Any: ...

    def resume(self, touchpoint: str, *, journey_id: str, pointer: str, mode: str, label: str,
               customer_id: str | None, continuation: str) -> Any: ...


@dataclass
class EmitResult:
    event_id: str
    duplicate: bool = False
    started: list[dict] = field(default_factory=list)
    resumed: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    #: the outbox told the starts the entry rule will refuse apart already (in ``skipped``)
    entries_checked: bool = False

    def as_dict(self) -> dict:
        return {"event_id": self.event_id, "duplicate": self.duplicate, "started": self.started,
                "resumed": self.resumed, "skipped": self.skipped}


def _duplicate(existing: Event) -> EmitResult:
    """The answer to an event id stored before: the same lists, nothing started again."""
    previous = existing.result or {}
    return EmitResult(event_id=existing.id, duplicate=True, started=previous.get("started", []),
                      resumed=previous.get("resumed", []))


def unknown_customer(customer_id: str) -> NotFoundError:
    return NotFoundError(f"unknown customer {customer_id!r}",
                         hint="import it with `touchpoints customers import FILE`")


def _label(touchpoint, event: dict, customer_id: str | None) -> str:
    if customer_id:
        return customer_id
    data = event.get("data") or {}
    key = touchpoint.entry.key
    if key:
        try:
            return str(evaluate(key, {"event": event, "trigger": event}))
        except Exception:  # the label is cosmetic; the key is checked at entry
            pass
    for name in ("outage_id", "maintenance_id", "id"):
        if name in data:
            return str(data[name])
    return event.get("id", "event")


class Dispatcher:
    """Events in. ``outbox=True`` (the service's intake): the event and the units of work it
    asks for are stored in one transaction and the call returns without touching Prefect; the
    service's unit driver launches them. ``outbox=False`` (the CLI, tests): the same units are
    launched here and now, through the launcher."""

    def __init__(self, engine, launcher: Launcher, *, outbox: bool = False) -> None:
        self.engine = engine
        self.launcher = launcher
        self.outbox = outbox
        self._inbox = None
        self._inbox_lock = threading.Lock()

    @property
    def inbox(self):
        """The outbox's writer: concurrent events stored in one transaction, each caller
        answered once it is committed (flows/engine/groupcommit.py)."""
        from flows.engine.groupcommit import GroupCommit

        with self._inbox_lock:
            if self._inbox is None:
                self._inbox = GroupCommit(lambda: self.engine.store.session(), self._write_batch,
                                          name="intake-writer")
            return self._inbox

    # ------------------------------------------------------------------ validation
    def check_type(self, event_type: str) -> None:
        known = self.engine.config.event_types()
        if event_type not in known:
            close = difflib.get_close_matches(event_type, list(known), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "declare it under events: in touchpoints.yaml"
            raise TouchpointsError(f"unknown event type {event_type!r}", hint=hint)

    # ------------------------------------------------------------------ intake
    def emit(self, *, type: str, customer_id: str | None = None, data: dict | None = None,
             event_id: str | None = None, occurred_at: datetime | None = None,
             source: str = "cli", actor: str = "system") -> EmitResult:
        self.check_type(type)
        refuse_bad_data(self.engine, type=type, data=data, event_id=event_id,
                        customer_id=customer_id, source=source, actor=actor)
        now = clock.now()
        event_id = event_id or f"evt-{uuid.uuid4().hex}"
        item = {"type": type, "customer_id": customer_id, "data": data, "event_id": event_id,
                "occurred_at": occurred_at, "source": source, "actor": actor, "now": now}
        if self.outbox:  # stored with the units it asks for; answered once committed
            return self.inbox.submit(item)
        retry = None
        with self.engine.store.session() as session:
            existing = session.get(Event, event_id)
            if existing is None:
                plan, _ = self._record(session, **item)
            else:
                previous = existing.result or {}
                if existing.status == "received" and previous.get("plan"):
                    retry = previous["plan"]  # stored, but launching failed last time
                result = _duplicate(existing)
        if existing is not None:  # launching happens outside the event's transaction
            return self._launch(event_id, retry, duplicate=True) if retry else result
        return self._launch(event_id, plan)

    def _write_batch(self, session, items: list[dict]) -> list:
        """The outbox's batch, in the writer's transaction (flows/engine/outbox.py)."""
        from flows.engine.outbox import write_batch

        return write_batch(self, session, items)

    def _record(self, session, *, type: str, customer_id: str | None, data: dict | None,
                event_id: str, occurred_at: datetime | None, source: str, actor: str,
                now: datetime, batch=None) -> tuple[dict, EmitResult | None]:
        """Store a new event with the units it asks for; in outbox mode, also the answer.
        ``batch`` (the outbox's :class:`~flows.engine.outbox.Batch`): what the batch read up
        front, and where its audit rows, new units and entry checks gather."""
        from flows.store import audit

        if customer_id is not None and session.get(Customer, customer_id) is None:
            raise unknown_customer(customer_id)
        row = Event(id=event_id, type=type, customer_id=customer_id, data=data or {},
                    occurred_at=occurred_at or now, received_at=now, source=source,
                    status="dispatched" if self.outbox else "received",  # outbox: durable
                    dispatched_at=now if self.outbox else None)         # with its units
        early = batch is None or batch.counts(type)  # a count trigger counts this event too
        if early:
            session.add(row)
            session.flush()
        event = event_dict(row)
        received = {"action": "event.received", "result": "stored", "actor": actor,
                    "customer_id": customer_id, "reason": f"{type} from {source}",
                    "detail": {"event_id": event_id, "type": type}, "at": now}
        if batch is not None and batch.defer_audit(type):
            batch.audit.append(received)
        else:
            audit.record(session, **received)
        if customer_id:
            session.get(Customer, customer_id).last_contact_at = now
        ended = at_intake(self.engine, session, event, now)  # exit_when, then updates:
        wakes = self._wake(session, event, now) if batch is None or batch.waits(type) else []
        starts, skipped = self._starts(session, event, now)
        self._queue_units(session, event_id, starts, wakes, batch)
        plan = {"starts": starts, "wakes": wakes, "skipped": skipped}
        row.result = {"started": [s["touchpoint"] for s in starts],
                      "resumed": [w["journey_id"] for w in wakes], "plan": plan,
                      "ended": [e["journey_id"] for e in ended]}
        if not early:  # one INSERT with everything, no UPDATE after it
            session.add(row)
        if not self.outbox:
            return plan, None
        answer = EmitResult(event_id=event_id, skipped=list(skipped), resumed=wakes,
                            entries_checked=True)
        if batch is None:
            batch_entries = [(start, event) for start in starts]
            reasons = entry_refusals(session, self.engine, batch_entries)
            admit(answer, batch_entries, reasons)
        else:  # told apart for the whole batch at its end, one query per touch point
            batch.entries.append((answer, [(start, event) for start in starts]))
        return plan, answer

    @staticmethod
    def _queue_units(session, event_id: str, starts: list[dict], wakes: list[dict],
                     batch=None) -> None:
        """The outbox: one unit per journey start and per woken journey, in the event's own
        transaction, so an accepted event always starts its journeys, whatever crashes."""
        from flows.engine import units
        from flows.engine.redrive import resume_unit_id, start_unit_id

        for start in starts:
            start["unit_id"] = start_unit_id(start["touchpoint"], event_id)
            params = {"event": start["event"], "customer_id": start["customer_id"]}
            if batch is not None and batch.new_unit(start["unit_id"]):
                batch.add_start_unit(session, id=start["unit_id"], touchpoint=start["touchpoint"],
                                     label=start["label"], params=params)
                continue
            units.queue(session, id=start["unit_id"], kind="start", touchpoint=start["touchpoint"],
                        label=start["label"], params=params)
        for wake in wakes:
            wake["unit_id"] = resume_unit_id(wake["continuation"])
            units.queue(session, id=wake["unit_id"], kind="resume", touchpoint=wake["touchpoint"],
                        journey_id=wake["journey_id"], label=wake["label"],
                        params={"journey_id": wake["journey_id"], "pointer": wake["pointer"],
                                "mode": "after", "customer_id": wake["customer_id"],
                                "continuation": wake["continuation"]})
            session.execute(update(Continuation).where(Continuation.id == wake["continuation"])
                            .values(status="scheduled"))

    def _launch(self, event_id: str, plan: dict, *, duplicate: bool = False) -> EmitResult:
        """Start and resume what a stored event asked for, then mark it dispatched. Safe to
        repeat: starts are guarded by entry rules (and run idempotency keys in the service),
        resumes only claim members that are still due."""
        starts, wakes = plan.get("starts", []), plan.get("wakes", [])
        result = EmitResult(event_id=event_id, duplicate=duplicate, skipped=plan.get("skipped", []))
        for wake in wakes:
            if not self._take(wake.get("unit_id")):
                continue  # another caller launched it already
            with self._giving_back(wake.get("unit_id")):
                self.launcher.resume(wake["touchpoint"], journey_id=wake["journey_id"],
                                     pointer=wake["pointer"], mode="after", label=wake["label"],
                                     customer_id=wake["customer_id"],
                                     continuation=wake["continuation"], unit_id=wake.get("unit_id"))
            result.resumed.append(wake)
        for start in starts:
            if not self._take(start.get("unit_id")):
                continue
            with self._giving_back(start.get("unit_id")):
                outcome = self.launcher.start(start["touchpoint"], event=start["event"],
                                              customer_id=start["customer_id"],
                                              label=start["label"],
                                              unit_id=start.get("unit_id")) or {}
            entry = {k: v for k, v in start.items() if k != "event"}
            if outcome.get("refused"):  # run here and now: we know the entry rule said no
                result.skipped.append({**entry, "reason": outcome["refused"]})
            else:
                result.started.append({**entry, **{k: v for k, v in outcome.items()
                                                   if k in ("journey_id", "flow_run_id")}})
        with self.engine.store.session() as session:
            stored = session.get(Event, event_id)
            stored.status, stored.dispatched_at = "dispatched", clock.now()
        return result

    def _take(self, unit_id: str | None) -> bool:
        """Mark a queued unit launched before launching it, so two callers never launch the
        same unit (a repeated post of an event whose launch is still under way)."""
        from flows.engine.units import wall_now
        from flows.store.tables import WorkUnit

        if not unit_id:
            return True
        with self.engine.store.session() as session:
            taken = session.execute(update(WorkUnit).where(WorkUnit.id == unit_id,
                                                           WorkUnit.status == "queued")
                                    .values(status="launched", launched_at=wall_now(),
                                            attempts=WorkUnit.attempts + 1)
                                    .execution_options(synchronize_session=False))
            return bool(taken.rowcount)

    @contextmanager
    def _giving_back(self, unit_id: str | None):
        """If the launch fails, the unit is queued again for the next try."""
        from flows.store.tables import WorkUnit

        try:
            yield
        except BaseException:
            if unit_id:
                with self.engine.store.session() as session:
                    session.execute(update(WorkUnit).where(WorkUnit.id == unit_id,
                                                           WorkUnit.status == "launched")
                                    .values(status="queued")
                                    .execution_options(synchronize_session=False))
            raise

    # ------------------------------------------------------------------ waking wait_for steps
    def _wake(self, session, event: dict, now: datetime) -> list[dict]:
        query = select(Member).where(Member.status == "waiting", Member.waiting_for == event["type"])
        if event.get("customer_id"):
            query = query.where(Member.customer_id == event["customer_id"])
        woken: dict[tuple[str, str], dict] = {}
        journeys: dict[str, Journey] = {}
        for member in session.scalars(query.order_by(Member.id).execution_options(yield_per=500)):
            journey = journeys.get(member.journey_id) or session.get(Journey, member.journey_id)
            journeys[member.journey_id] = journey
            if not matches(session, self.engine.config, match=member.match,
                           customer_id=member.customer_id, results=member.results or {},
                           journey=journey, event=event):
                continue
            results = answered_results(member.results or {}, member.pointer, journey.id, event)
            member.results, member.due_at, member.updated_at = results, now, now
            key = (journey.id, member.pointer)
            if key not in woken:
                cid = continuation_id(journey.id, member.pointer, "after", now)
                if session.get(Continuation, cid) is None:
                    session.add(Continuation(id=cid, journey_id=journey.id, touchpoint=journey.touchpoint,
                                             pointer=member.pointer, kind="event", due_at=now,
                                             status="pending", label=f"{member.customer_id} · {event['type']}"))
                woken[key] = {"touchpoint": journey.touchpoint, "journey_id": journey.id,
                              "pointer": member.pointer, "customer_id": journey.customer_id,
                              "label": journey.customer_id or _label(
                                  self.engine.touchpoint(journey.touchpoint), journey.trigger, None),
                              "continuation": cid}
        session.flush()
        return list(woken.values())

    # ------------------------------------------------------------------ starting touch points
    def _starts(self, session, event: dict, now: datetime) -> tuple[list[dict], list[dict]]:
        from flows.store.customers import to_view

        starts, skipped = [], []
        customer = None
        if event.get("customer_id"):
            customer = to_view(session.get(Customer, event["customer_id"]))
        for tp in self.engine.config.touchpoints.values():
            trigger = tp.trigger
            if not tp.enabled or getattr(trigger, "event", None) != event["type"]:
                continue
            if trigger.kind == "event":
                start_event = event
                if trigger.where:
                    ctx = build_context(config=self.engine.config, customer=customer, event=event,
                                        trigger=event, results={}, journey_id="",
                                        touchpoint=tp.name, now=now)
                    if not evaluate(trigger.where, ctx):
                        skipped.append({"touchpoint": tp.name, "reason": f"where: {trigger.where} is false"})
                        continue
            elif trigger.kind == "count":
                start_event = self._count_event(session, tp, event, now)
                if start_event is None:
                    continue
            else:
                continue
            if tp.audience == "customer" and not event.get("customer_id"):
                skipped.append({"touchpoint": tp.name, "reason": "the event names no customer"})
                continue
            cid = event.get("customer_id") if tp.audience == "customer" else None
            starts.append({"touchpoint": tp.name, "customer_id": cid, "event": start_event,
                           "label": _label(tp, start_event, cid)})
        return starts, skipped

    def _count_event(self, session, tp, event: dict, now: datetime) -> dict | None:
        """The synthetic trigger of a count trigger, when this event is the n-th in the window."""
        trigger = tp.trigger
        if not event.get("customer_id"):
            return None
        since = datetime.fromisoformat(event["occurred_at"]) - trigger.within
        rows = session.scalars(select(Event).where(
            Event.type == event["type"], Event.customer_id == event["customer_id"],
            Event.occurred_at >= since).order_by(Event.occurred_at, Event.received_at)).all()
        group = (event.get("data") or {}).get(trigger.same) if trigger.same else None
        if trigger.same:
            rows = [r for r in rows if (r.data or {}).get(trigger.same) == group]
        if len(rows) != trigger.count:
            return None
        return {"id": f"{event['id']}:count", "type": event["type"],
                "customer_id": event["customer_id"], "occurred_at": event["occurred_at"],
                "data": {"category": group, "count": len(rows),
                         "history": [{"id": r.id, "occurred_at": r.occurred_at.isoformat(),
                                      "data": r.data or {}} for r in rows]}}

    def redispatch_stuck(self, *, older_than: timedelta = timedelta(seconds=60)) -> int:
        """Launch events that were stored but never dispatched (the launcher failed)."""
        cutoff = clock.now() - older_than
        with self.engine.store.session() as session:
            stuck = [(row.id, (row.result or {}).get("plan")) for row in session.scalars(
                select(Event).where(Event.status == "received", Event.received_at <= cutoff)
                .order_by(Event.received_at).limit(100))]
        count = 0
        for event_id, plan in stuck:
            if plan:
                self._launch(event_id, plan, duplicate=True)
                count += 1
        return count

    # ------------------------------------------------------------------ due continuations
    def resume_due(self, *, now: datetime | None = None) -> list[dict]:
        """Fire every continuation that is due, here and now (`touchpoints run --resume-due`);
        through the same units as the service."""
        from flows.engine import units
        from flows.engine.redrive import launch_unit, resume_unit_id

        now = now or clock.now()
        fired = []
        with self.engine.store.session() as session:
            due = session.scalars(select(Continuation).where(
                Continuation.status.in_(("pending", "scheduled")), Continuation.due_at <= now)
                .order_by(Continuation.due_at)).all()
            todo = []
            for c in due:
                journey = session.get(Journey, c.journey_id)
                unit = units.queue(session, id=resume_unit_id(c.id), kind="resume",
                                   touchpoint=c.touchpoint, journey_id=c.journey_id, label=c.label,
                                   due_at=c.due_at, params={
                                       "journey_id": c.journey_id, "pointer": c.pointer,
                                       "mode": "at" if c.kind == "defer" else "after",
                                       "customer_id": journey.customer_id if journey else None,
                                       "continuation": c.id})
                if unit.status == "done":  # its run finished; the members moved on or wait anew
                    unit.status, unit.attempts = "queued", unit.attempts + 1
                todo.append({"id": unit.id, "kind": "resume", "touchpoint": c.touchpoint,
                             "journey_id": c.journey_id, "params": dict(unit.params),
                             "label": c.label, "due_at": None, "attempts": unit.attempts})
        for unit in todo:
            launch_unit(self.launcher, unit)
            fired.append({"continuation": unit["params"]["continuation"],
                          "touchpoint": unit["touchpoint"], "journey_id": unit["journey_id"]})
        return fired


def next_due(engine, within: timedelta | None = None) -> list[Continuation]:
    with engine.store.session() as session:
        query = select(Continuation).where(Continuation.status.in_(("pending", "scheduled")))
        if within is not None:
            query = query.where(Continuation.due_at <= clock.now() + within)
        rows = session.scalars(query.order_by(Continuation.due_at)).all()
        session.expunge_all()
        return rows
