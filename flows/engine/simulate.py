"""`touchpoints simulate`: run one touch point for one customer on a virtual clock, through
the engine's own code, against a throwaway copy of the store, sending nothing.

* the clock: :func:`virtual_clock` replaces ``flows.clock.now`` for the simulation only
  (everything in the engine asks ``clock.now()`` through the module) and restores it after;
* the store: :func:`flows.engine.simstore.throwaway_store`, narrowed to the customer;
* the mail: a transport that records the built messages and sends nothing;
* Prefect: none. The journey is entered and walked with the compiler's task bodies
  (``_enter``, ``_step``, ``_resume``, ``_finish``) called as plain functions, in the order
  the compiled flow runs them; events go through the real :class:`Dispatcher` (wake, match,
  start, entry rules) with a :class:`SimLauncher` that runs what it is handed inline, and
  survey answers and task completions through :mod:`flows.actions`, as the web pages do.

When the journey parks, the clock jumps to the next due continuation or the next scripted
event, whichever comes first, until nothing is left or ``until`` has passed.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from flows import clock
from flows.engine.simscript import (
    Scripted,
    check_script,
    default_start,
    parse_answer,
    parse_event,
)
from flows.engine.simtimeline import Timeline
from flows.errors import TouchpointsError
from flows.store.tables import Continuation, Customer, Delivery, Journey, Member, Survey, Task

#: a journey that parks more often than this in one simulation is looping
MAX_TURNS = 2000


# --------------------------------------------------------------------------- clock and mail
class VirtualClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@contextmanager
def virtual_clock(start: datetime):
    """``clock.now()`` is the virtual clock inside the block, whatever it was before after."""
    original = clock.now
    virtual = VirtualClock(start)
    clock.now = virtual
    try:
        yield virtual
    finally:
        clock.now = original


class RecordingTransport:
    """Builds nothing new: keeps each message the engine built, sends none."""

    def __init__(self) -> None:
        self.messages: list = []

    @contextmanager
    def session(self):
        yield self

    def send(self, message):
        self.messages.append(message)


@contextmanager
def _installed(engine):
    from flows.engine import core

    previous = core._current
    core.set_engine(engine)
    try:
        yield
    finally:
        core.set_engine(previous)


# --------------------------------------------------------------------------- the launcher
class SimLauncher:
    """The dispatcher's launcher: starts and resumes of the simulated touch point run here,
    inline; anything else an event would start is noted, not run."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim

    def start(self, touchpoint: str, *, event: dict, customer_id: str | None, label: str,
              unit_id: str | None = None, attempt: int = 0) -> dict:
        return self.sim.start(touchpoint, event, customer_id, label, unit_id)

    def resume(self, touchpoint: str, *, journey_id: str, pointer: str, mode: str, label: str,
               customer_id: str | None, continuation: str, due=None, unit_id: str | None = None,
               attempt: int = 0) -> dict:
        return self.sim.resume(touchpoint, journey_id, pointer, mode, label, unit_id)

    def redrive(self, touchpoint: str, **_: Any) -> dict:
        return {}

    def run_states(self, flow_run_ids: list[str]) -> dict:
        return {}

    def crash(self, flow_run_id: str, message: str) -> None:
        return None


# --------------------------------------------------------------------------- the simulation
class Simulation:
    def __init__(self, engine, name: str, customer_id: str, *, script: list[Scripted],
                 start: datetime, until: timedelta, data: dict | None = None) -> None:
        from flows.engine.dispatch import Dispatcher

        self.engine, self.name, self.customer_id = engine, name, customer_id
        self.tp = engine.touchpoint(name)
        self.script = sorted(script, key=lambda s: (s.offset, s.order))
        self.start_at, self.end_at, self.data = start, start + until, data or {}
        self.launcher = SimLauncher(self)
        self.dispatcher = Dispatcher(engine, self.launcher)
        self.journeys: set[str] = set()
        with engine.store.read_session() as session:
            tz = session.get(Customer, customer_id).timezone
        self.timeline = Timeline(start=start, timezone=tz)
        self._events = 0
        self._refused: set[str] = set()

    # ------------------------------------------------------------------ observing
    def drain(self) -> None:
        with self.engine.store.read_session() as session:
            self.timeline.drain(session)

    def _after_step(self, journey_id: str, step) -> None:
        self.drain()
        with self.engine.store.read_session() as session:
            member = session.scalar(select(Member).where(Member.journey_id == journey_id,
                                                         Member.customer_id == self.customer_id))
        result = ((member.results or {}).get(step.id) or {}) if member else {}
        if step.kind == "branch" and "arm" in result:
            self.timeline.add(clock.now(), "branch", step=step.id, subject=result.get("label"))
        elif isinstance(result.get("skipped"), str):
            self.timeline.add(clock.now(), "skipped", step=step.id, detail=result["skipped"])

    # ------------------------------------------------------------------ driving inline
    def walk(self, journey_id: str, wave: str, pointer: str | None, mode: str) -> dict:
        """What the compiled flow's ``drive`` does, with the task bodies run here."""
        from flows.engine.compiler import _finish, _strand, continuation_chain, find_path
        from flows.engine.versions import for_journey

        with self.engine.store.read_session() as session:
            steps = for_journey(self.engine, session, journey_id).touchpoint.steps
        if pointer is not None and find_path(steps, pointer) is None:
            outcome = _strand(self.name, journey_id, wave, pointer)
            self.drain()
            return outcome
        chain = [(steps, 0)] if pointer is None else continuation_chain(steps, pointer, mode)
        for lst, index in chain:
            self._run_list(lst[index:], journey_id, wave, "")
        summary = _finish(self.name, journey_id, wave)
        self.drain()
        return summary

    def _run_list(self, steps: list, journey_id: str, wave: str, lane: str) -> None:
        from flows.engine.compiler import _step

        batch_size = self.engine.settings.batch_size
        for step in steps:
            with self.engine.store.read_session() as session:
                if not self.engine.journeys.count_active(session, journey_id=journey_id,
                                                         wave=wave, lane=lane):
                    return
            after, batch = 0, 0
            while True:
                result = _step(self.name, step.id, journey_id, wave, lane, after, batch)
                if result["count"] < batch_size:
                    break
                after, batch = result["last"], batch + 1
            self._after_step(journey_id, step)
            for arm, (_, arm_steps) in enumerate(step.children()):
                self._run_list(arm_steps, journey_id, wave, f"{lane}/{step.id}:{arm}")

    def start(self, touchpoint: str, event: dict, customer_id: str | None, label: str,
              unit_id: str | None) -> dict:
        from flows.engine.compiler import _enter

        if touchpoint != self.name:
            self.timeline.add(clock.now(), "note", subject=touchpoint,
                              detail=f"{event.get('type')} would also start {touchpoint} "
                                     "(not simulated)")
            return {}
        entered = _enter(touchpoint, event, customer_id, unit_id, label)
        self.drain()
        if entered["journey_id"] is None:
            self._refused.add(entered["refused"])
            return {"refused": entered["refused"]}
        journey_id = entered["journey_id"]
        self.journeys.add(journey_id)
        if not entered["members"]:
            self.timeline.add(clock.now(), "skipped", detail="the customer is not in the segment "
                                                             f"{self.tp.audience.segment}")
        self.walk(journey_id, entered["wave"], None, "at")
        return {"journey_id": journey_id}

    def resume(self, touchpoint: str, journey_id: str, pointer: str, mode: str, label: str,
               unit_id: str | None) -> dict:
        from flows.engine.compiler import _resume

        if journey_id not in self.journeys:
            return {}  # a journey that was running before the simulation: not simulated
        claimed = _resume(touchpoint, journey_id, pointer, mode, unit_id, label)
        if not claimed["members"]:
            return {"resumed": 0, "journey_id": journey_id}
        return self.walk(journey_id, claimed["wave"], claimed.get("pointer", pointer), mode)

    # ------------------------------------------------------------------ the trigger
    def trigger_event(self) -> tuple[dict | None, int]:
        """(the synthetic trigger of a date/inactivity/schedule touch point, or None for the
        event types the dispatcher is given; how many times to emit it)."""
        trigger, now = self.tp.trigger, clock.now()
        if trigger.kind == "date":
            anchor = getattr(self._customer(), trigger.date.field)
            return ({"id": f"date:{self.name}:{self.customer_id}:{anchor}", "type": "date.trigger",
                     "customer_id": self.customer_id, "occurred_at": now.isoformat(),
                     "data": {"field": trigger.date.field, "date": anchor.isoformat(),
                              "fires_at": now.isoformat()}}, 1)
        if trigger.kind == "inactivity":
            return ({"id": f"inactivity:{self.name}:{self.customer_id}:{now.date()}",
                     "type": "inactivity.trigger", "customer_id": self.customer_id,
                     "occurred_at": now.isoformat(), "data": {"last_contact": "simulated"}}, 1)
        if trigger.kind == "schedule":
            return ({"id": f"schedule:{self.name}:{now.isoformat()}", "type": "schedule",
                     "customer_id": None, "occurred_at": now.isoformat(),
                     "data": {"schedule": self.name}}, 1)
        return None, trigger.count if trigger.kind == "count" else 1

    def _customer(self):
        from flows.store.customers import to_view

        with self.engine.store.read_session() as session:
            return to_view(session.get(Customer, self.customer_id))

    def _about(self) -> str | None:
        """Events of a segment touch point are broadcasts; the others are about the customer."""
        return self.customer_id if self.tp.audience == "customer" else None

    def begin(self) -> None:
        synthetic, times = self.trigger_event()
        if synthetic is not None:
            self.timeline.add(clock.now(), "trigger", subject=synthetic["type"])
            self.start(self.name, synthetic, synthetic["customer_id"], self.customer_id, None)
            return
        examples = self.engine.config.event_types()[self.tp.trigger.event].example or {}
        for _ in range(times):  # a count trigger: until the n-th event in the window
            outcome = self.emit(self.tp.trigger.event, {**examples, **self.data})
            if any(s.get("touchpoint") == self.name for s in outcome.started + outcome.skipped):
                return

    # ------------------------------------------------------------------ scripted input
    def emit(self, event_type: str, data: dict):
        self._events += 1
        result = self.dispatcher.emit(type=event_type, customer_id=self._about(), data=data,
                                      event_id=f"simulated-{self._events}",
                                      occurred_at=clock.now(), source="simulate",
                                      actor="simulate")
        self.drain()
        for skip in result.skipped:  # a refused entry is in the audit trail already
            if skip.get("touchpoint") == self.name and skip["reason"] not in self._refused:
                self.timeline.add(clock.now(), "skipped",
                                  detail=f"{event_type} did not start {self.name}: "
                                         f"{skip['reason']}")
        return result

    def deliver(self, item: Scripted) -> None:
        from flows import actions

        if item.kind == "answer":
            survey = self._open(Survey, item.name)
            if survey is None or not self._sent(survey):
                self.timeline.add(clock.now(), "skipped", subject=item.name,
                                  detail=f"answer {item.value}: no {item.name} survey was sent")
                return
            value = {"answer": item.value} if survey.question == "custom" else {"score": item.value}
            try:
                actions.answer_survey(self.engine, self.dispatcher, survey.id, actor="simulate",
                                      **value)
            except actions.SurveyUnavailable as exc:
                self.timeline.add(clock.now(), "skipped", subject=item.name, detail=exc.message)
            except actions.InvalidAnswer as exc:
                raise TouchpointsError(
                    f"--answer {item.name}={item.value}: {exc.message}",
                    hint=exc.hint or "csat takes 1 to 5, nps 0 to 10; a custom question one "
                                     "of its choices") from None
            self.drain()
            return
        if item.name in ("task.completed", "task.acknowledged") and "task_id" not in item.data:
            task = self._open(Task, item.data.get("step_id"))
            if task is None:
                self.timeline.add(clock.now(), "skipped", subject=item.name,
                                  detail="no open task of the journey")
                return
            by = item.data.get("completed_by") or item.data.get("acknowledged_by") or "simulation"
            if item.name == "task.completed":
                actions.complete_task(self.engine, self.dispatcher, task.id, by=by, actor="simulate",
                                      outcome=item.data.get("outcome") or "done (simulated)")
            else:
                actions.acknowledge_task(self.engine, self.dispatcher, task.id, by=by,
                                         actor="simulate")
            self.drain()
            return
        example = self.engine.config.event_types()[item.name].example or {}
        self.emit(item.name, {**example, **item.data})

    def _sent(self, survey: Survey) -> bool:
        """Only a survey that went out can be answered (a suppressed one has a row too)."""
        with self.engine.store.read_session() as session:
            return session.scalar(select(Delivery.key).where(
                Delivery.journey_id == survey.journey_id, Delivery.step_id == survey.step_id,
                Delivery.customer_id == survey.customer_id, Delivery.status == "sent")
                .limit(1)) is not None

    def _open(self, model, key: str | None):
        """The newest survey (by step id or question) or open task of the simulated journeys."""
        with self.engine.store.read_session() as session:
            query = select(model).where(model.journey_id.in_(self.journeys))
            if model is Survey:
                query = query.where((Survey.step_id == key) | (Survey.question == key),
                                    Survey.answered_at.is_(None))
            else:
                query = query.where(Task.status.in_(("open", "acknowledged")))
                if key:
                    query = query.where(Task.step_id == key)
            return session.scalars(query.order_by(model.created_at.desc())).first()

    # ------------------------------------------------------------------ the loop
    def _next_due(self) -> Continuation | None:
        with self.engine.store.read_session() as session:
            return session.scalars(select(Continuation).where(
                Continuation.journey_id.in_(self.journeys),
                Continuation.status.in_(("pending", "scheduled")))
                .order_by(Continuation.due_at)).first()

    def run(self) -> Timeline:
        virtual = clock.now
        self.begin()
        pending = list(self.script)
        for _ in range(MAX_TURNS):
            due = self._next_due()
            item_at = self.start_at + pending[0].offset if pending else None
            if due is not None and (item_at is None or due.due_at <= item_at):
                if due.due_at > self.end_at:
                    break
                virtual.now = max(virtual.now, due.due_at)
                mode = "at" if due.kind == "defer" else "after"
                self.resume(due.touchpoint, due.journey_id, due.pointer, mode, due.label, None)
                self._settle(due.id)
            elif item_at is not None:
                if item_at > self.end_at:
                    break
                virtual.now = max(virtual.now, item_at)
                self.deliver(pending.pop(0))
            else:
                break
        else:
            raise TouchpointsError(f"{self.name} parked {MAX_TURNS} times in the simulation",
                                   hint="a step waits for no time at all: check its durations")
        self._close()
        return self.timeline

    def _settle(self, continuation_id: str) -> None:
        """A continuation no member was due at (woken early by an event) is done."""
        with self.engine.store.session() as session:
            row = session.get(Continuation, continuation_id)
            if row is not None and row.status in ("pending", "scheduled"):
                row.status = "done"

    def _close(self) -> None:
        with self.engine.store.read_session() as session:
            rows = session.execute(select(Member, Journey).join(
                Journey, Journey.id == Member.journey_id).where(
                Member.journey_id.in_(self.journeys), Member.status == "waiting")).all()
        for member, _ in rows:
            why = f"for {member.waiting_for}" if member.waiting_for else "at"
            self.timeline.add(self.end_at, "open", step=member.pointer,
                              detail=f"still waiting {why} when the simulation ends",
                              until=member.due_at)


# --------------------------------------------------------------------------- the entry point
def simulate(engine, name: str, customer_id: str, *, events: list[str] = (),
             answers: list[str] = (), until: timedelta = timedelta(days=90),
             start: datetime | None = None, data: dict | None = None):
    """Run the simulation; returns (timeline, the messages the engine built)."""
    from flows.engine.core import Engine
    from flows.engine.simstore import throwaway_store

    engine.touchpoint(name)  # an unknown name is an error before anything is copied
    script = ([parse_event(e, i) for i, e in enumerate(events)]
              + [parse_answer(a, len(events) + i) for i, a in enumerate(answers)])
    check_script(engine, name, script)
    with throwaway_store(engine.store, customer_id, now=clock.now()) as store:
        sim_engine = Engine(engine.settings, config=engine.config, store=store)
        transport = RecordingTransport()
        sim_engine._transport = transport
        begin = start or default_start(sim_engine, name, customer_id)
        with _installed(sim_engine), virtual_clock(begin):
            sim = Simulation(sim_engine, name, customer_id, script=script, start=begin,
                             until=until, data=data)
            with store.read_session() as session:
                sim.timeline.mark(session)
            timeline = sim.run()
    return timeline, transport.messages
