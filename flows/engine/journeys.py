"""Journeys and their members: entering, executing a batch of a step, parking, resuming."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from flows.engine import alerts, holdouts, units
from flows.engine.audience import entry_key, iter_segment
from flows.engine.goals import keep_ended
from flows.engine.matching import answered_results, arrived_already, may_have_arrived
from flows.engine.versions import pin as pin_version
from flows.steps import get as get_kind
from flows.steps.base import Defer, Exit, Next, Route, Wait, WaitFor
from flows.steps.base import Member as MemberView
from flows.store.tables import Continuation, Customer, Journey, Member

log = logging.getLogger("touchpoints.engine")

#: how early a resumed run may claim members (the Prefect runner prefetches due runs)
CLAIM_TOLERANCE = timedelta(seconds=30)


def _describe(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {message}"[:400]


def new_id() -> str:
    return uuid.uuid4().hex


def continuation_id(journey_id: str, pointer: str, mode: str, due: datetime) -> str:
    return f"{journey_id}:{pointer}:{mode}:{due.strftime('%Y%m%dT%H%M%S')}"


def park(session, *, journey: Journey, member: Member, pointer: str, mode: str, due: datetime,
         kind: str, label: str, known: set[str] | None = None) -> None:
    """The member waits at ``pointer`` until ``due``; its continuation exists once. ``known``
    holds the ids a batch already made or found, so a batch parked at one time looks its
    continuation up once (a flushed row is only weakly held by the session: ``get`` would
    query again for every member)."""
    member.status, member.pointer, member.resume_mode, member.due_at = "waiting", pointer, mode, due
    member.wave = None
    cid = continuation_id(journey.id, pointer, mode, due)
    if known is not None and cid in known:
        return
    if session.get(Continuation, cid) is None:
        session.add(Continuation(id=cid, journey_id=journey.id, touchpoint=journey.touchpoint,
                                 pointer=pointer, kind=kind, due_at=due, status="pending",
                                 label=label))
        session.flush()
    if known is not None:
        known.add(cid)


class JourneyOps:
    """Store operations on journeys; every write happens inside a Prefect task."""

    def __init__(self, engine) -> None:
        self.engine = engine

    # ------------------------------------------------------------------ entering
    def enter(self, session, *, touchpoint, event: dict, customer_id: str | None,
              flow_run_id: str | None, now: datetime, unit_id: str | None = None,
              label: str = "") -> dict[str, Any]:
        from flows.store import audit
        from flows.store.customers import to_view

        customer = None
        if touchpoint.audience == "customer":
            row = session.get(Customer, customer_id) if customer_id else None
            if row is None:
                audit.record(session, action="journey.refused", result="refused", actor="system",
                             touchpoint=touchpoint.name, customer_id=customer_id,
                             flow_run_id=flow_run_id, at=now,
                             reason=f"unknown customer {customer_id!r}")
                return {"journey_id": None, "refused": f"unknown customer {customer_id!r}"}
            customer = to_view(row)
        key = entry_key(touchpoint, event=event, customer=customer, config=self.engine.config, now=now)
        journey = Journey(id=new_id(), touchpoint=touchpoint.name, entry_key=key,
                          entry_lock=True,
                          customer_id=customer.id if customer else None, trigger=event,
                          status="active", started_at=now, flow_run_id=flow_run_id,
                          version=pin_version(session, self.engine, touchpoint, now=now))
        try:
            with session.begin_nested():
                session.add(journey)
                session.flush()
        except IntegrityError:
            other = session.scalar(select(Journey).where(
                Journey.touchpoint == touchpoint.name, Journey.entry_key == key, Journey.entry_lock))
            reason = (f"entry rule {touchpoint.entry.rule}: journey {other.id if other else '?'} "
                      f"already holds key {key}")
            audit.record(session, action="journey.refused", result="refused", actor="system",
                         touchpoint=touchpoint.name, customer_id=customer_id,
                         flow_run_id=flow_run_id, reason=reason, at=now,
                         detail={"event_id": event.get("id"), "entry_key": key})
            return {"journey_id": None, "refused": reason}
        wave = new_id()
        waves = [wave]
        if customer is not None:
            member = Member(journey_id=journey.id, customer_id=customer.id, status="active",
                            wave=wave, lane="", results={}, updated_at=now)
            holdouts.assign(session, touchpoint=touchpoint, journey=journey, members=[member],
                            flow_run_id=flow_run_id, now=now)
            session.add(member)
            count = 1
        else:
            count = 0
            wave_size = max(1, self.engine.settings.wave_size)
            for batch in iter_segment(session, touchpoint, event=event, config=self.engine.config,
                                      batch_size=self.engine.settings.batch_size, now=now):
                rows = []
                for cid in batch:
                    if count and count % wave_size == 0:
                        waves.append(f"{wave}~{len(waves)}")
                    rows.append(Member(journey_id=journey.id, customer_id=cid, status="active",
                                       wave=waves[-1], lane="", results={}, updated_at=now))
                    count += 1
                holdouts.assign(session, touchpoint=touchpoint, journey=journey, members=rows,
                                flow_run_id=flow_run_id, now=now)
                session.add_all(rows)
                session.flush()
            self._queue_waves(session, touchpoint=touchpoint.name, journey_id=journey.id,
                              waves=waves, label=label)
        audit.record(session, action="journey.started", result="started", actor="system",
                     touchpoint=touchpoint.name, customer_id=customer.id if customer else None,
                     journey_id=journey.id, flow_run_id=flow_run_id, at=now,
                     reason=f"{count} member(s), entry key {key}",
                     detail={"event_id": event.get("id"), "event_type": event.get("type"),
                             "members": count})
        if unit_id and flow_run_id:  # the start is done once its wave is leased, atomically
            units.lease_new(session, id=wave, kind="wave", touchpoint=touchpoint.name,
                            journey_id=journey.id, owner=flow_run_id, label=label,
                            params={"journey_id": journey.id, "customer_id": journey.customer_id})
            units.complete(session, unit_id, owner=flow_run_id, reason=f"entered journey {journey.id}")
        return {"journey_id": journey.id, "wave": wave, "members": count, "waves": waves}

    @staticmethod
    def _queue_waves(session, *, touchpoint: str, journey_id: str, waves: list[str],
                     label: str) -> None:
        """A fan-out larger than one wave: every wave but the first (which the entering run
        drives itself) is a unit of its own, so whichever worker is free runs it, and the
        first wave's email goes out before the last wave is touched."""
        for number, extra in enumerate(waves[1:], start=2):
            units.queue(session, id=extra, kind="wave", touchpoint=touchpoint,
                        journey_id=journey_id,
                        label=f"{label or journey_id} · wave {number}/{len(waves)}",
                        params={"journey_id": journey_id, "customer_id": None, "fresh": True})

    # ------------------------------------------------------------------ resuming
    def claim(self, session, *, journey_id: str, pointer: str, mode: str, now: datetime,
              unit_id: str | None = None, flow_run_id: str | None = None,
              label: str = "") -> dict:
        """Move every member that is due at ``pointer`` into a new wave. Prefect's runner may
        start a scheduled run a few seconds early (it prefetches), so "due" has a tolerance.
        A run that came too early for every member gives its unit back (it is launched again
        for the members' due time) instead of finishing it with members left waiting."""
        wave = new_id()
        now = now + CLAIM_TOLERANCE
        result = session.execute(
            update(Member)
            .where(Member.journey_id == journey_id, Member.status == "waiting",
                   Member.pointer == pointer, Member.resume_mode == mode, Member.due_at <= now)
            .values(status="active", wave=wave, lane="", waiting_for=None, match=None,
                    due_at=None, updated_at=now))
        session.execute(
            update(Continuation)
            .where(Continuation.journey_id == journey_id, Continuation.pointer == pointer,
                   Continuation.due_at <= now, Continuation.status.in_(("pending", "scheduled")))
            .values(status="done"))
        claimed = result.rowcount or 0
        if unit_id and flow_run_id:
            early = 0 if claimed else session.scalar(select(func.count()).select_from(Member).where(
                Member.journey_id == journey_id, Member.status == "waiting",
                Member.pointer == pointer, Member.resume_mode == mode, Member.due_at > now)) or 0
            if early:
                units.release(session, unit_id, flow_run_id,
                              reason=f"started before {early} member(s) were due")
            else:
                if claimed:
                    units.lease_new(session, id=wave, kind="wave", touchpoint=self._touchpoint_of(
                        session, journey_id), journey_id=journey_id, owner=flow_run_id,
                        label=label, params={"journey_id": journey_id})
                units.complete(session, unit_id, owner=flow_run_id,
                               reason=f"claimed {claimed} member(s)")
        return {"wave": wave, "members": claimed}

    @staticmethod
    def _touchpoint_of(session, journey_id: str) -> str:
        journey = session.get(Journey, journey_id)
        return journey.touchpoint if journey else ""

    # ------------------------------------------------------------------ re-driving
    def split_wave(self, session, *, journey_id: str, wave: str, now: datetime) -> list[dict]:
        """A wave whose run died: its active members, grouped by where each one stands, each
        group in a sub-wave of its own (lanes start afresh, as after a claim)."""
        in_wave = or_(Member.wave == wave, Member.wave.like(f"{wave}.%"))
        positions = session.execute(
            select(Member.pointer, Member.resume_mode, func.count())
            .where(Member.journey_id == journey_id, in_wave, Member.status == "active")
            .group_by(Member.pointer, Member.resume_mode)).all()
        groups = []
        for index, (pointer, mode, count) in enumerate(sorted(
                positions, key=lambda p: (p[0] or "", p[1] or ""))):
            sub = f"{wave}.{index}"
            position = [Member.pointer.is_(None)] if pointer is None else [Member.pointer == pointer]
            session.execute(update(Member).where(
                Member.journey_id == journey_id, in_wave, Member.status == "active",
                *position, Member.resume_mode == mode)
                .values(wave=sub, lane="", updated_at=now).execution_options(
                    synchronize_session=False))
            groups.append({"wave": sub, "pointer": pointer, "mode": mode or "after",
                           "members": count})
        return groups

    # ------------------------------------------------------------------ selection
    @staticmethod
    def _selection(journey_id: str, wave: str, lane: str):
        return (Member.journey_id == journey_id, Member.wave == wave, Member.status == "active",
                Member.lane.like(f"{lane}%"))

    def count_active(self, session, *, journey_id: str, wave: str, lane: str) -> int:
        return session.scalar(select(func.count()).select_from(Member)
                              .where(*self._selection(journey_id, wave, lane))) or 0

    # ------------------------------------------------------------------ one batch of one step
    def run_batch(self, session, *, touchpoint, step, journey_id: str, wave: str, lane: str,
                  after: int, flow_run_id: str | None, now: datetime,
                  renderer=None) -> dict[str, Any]:
        from flows.engine.context import EngineContext
        from flows.store.customers import to_view

        rows = session.scalars(select(Member).where(*self._selection(journey_id, wave, lane),
                                                    Member.id > after)
                               .order_by(Member.id).limit(self.engine.settings.batch_size)).all()
        if not rows:
            return {"count": 0, "last": after, "outcomes": {}}
        journey = session.get(Journey, journey_id)
        customers = {c.id: c for c in session.scalars(
            select(Customer).where(Customer.id.in_([r.customer_id for r in rows])))}
        views = [MemberView(id=r.id, customer=to_view(customers[r.customer_id]),
                            results=dict(r.results or {}))
                 for r in rows if r.customer_id in customers]
        ctx = EngineContext(engine=self.engine, touchpoint=touchpoint, step_id=step.id,
                            journey_id=journey_id, trigger=journey.trigger, flow_run_id=flow_run_id,
                            now=now, session=session, renderer=renderer,
                            customer_ids=tuple(r.customer_id for r in rows),
                            holdouts=frozenset(r.customer_id for r in rows
                                               if r.cohort == holdouts.HOLDOUT))
        kind = get_kind(step.kind)
        try:
            outcomes, failures = self._run_isolated(session, kind, step, ctx, views)
        finally:
            ctx.close()
        tally: dict[str, int] = {}
        by_id = {r.id: r for r in rows}
        early = may_have_arrived(session, journey=journey, waits={
            by_id[mid].customer_id: o for mid, o in outcomes.items() if isinstance(o, WaitFor)})
        for member_id, outcome in outcomes.items():
            row = by_id[member_id]
            label = self._label(journey, row, step.id)
            tally[type(outcome).__name__.lower()] = tally.get(type(outcome).__name__.lower(), 0) + 1
            self._apply(session, ctx, journey, row, step, lane, outcome, label, now, early)
        ctx.flush_audit()  # the batch's audit rows: one read of the chain head, one insert
        for member_id, reason in failures.items():
            row = by_id[member_id]
            row.status, row.reason, row.updated_at = "failed", reason[:500], now
            tally["failed"] = tally.get("failed", 0) + 1
        if failures:
            from flows.store import audit

            audit.record_many(session, [dict(
                action="journey.failed", result="failed", actor="system",
                touchpoint=touchpoint.name, customer_id=by_id[mid].customer_id,
                journey_id=journey_id, flow_run_id=flow_run_id, at=now,
                reason=f"step {step.id}: {reason}"[:500], detail={"step": step.id})
                for mid, reason in failures.items()])
            if self.engine.config.defaults.operations:  # a report to operations, throttled
                alerts.record_failures(session, touchpoint=touchpoint.name, step=step.id, now=now,
                                       failures=[(by_id[mid].customer_id, reason)
                                                 for mid, reason in failures.items()])
        keep_ended(session, journey_id=journey_id, member_ids=list(by_id), now=now)
        missing = [r for r in rows if r.customer_id not in customers]
        for row in missing:  # a customer deleted while the journey ran
            row.status, row.reason = "exited", "customer no longer in the directory"
        return {"count": len(rows), "last": rows[-1].id, "outcomes": tally}

    @staticmethod
    def _run_isolated(session, kind, step, ctx, views: list[MemberView]):
        """The step over the batch; if it raises, over each member alone, so a member whose
        data breaks the step fails by itself and the rest of the batch goes on."""
        try:
            return kind.run(config=step, ctx=ctx, members=views), {}
        except Exception as exc:
            if len(views) <= 1:
                session.rollback()
                ctx.drop_audit()
                return {}, {v.id: _describe(exc) for v in views}
            first = exc
        session.rollback()  # drop what the failed batch wrote; each member runs again alone
        ctx.drop_audit()
        log.warning("step %s failed for a batch of %s (%s); running its members one by one",
                    step.id, len(views), _describe(first))
        outcomes: dict = {}
        failures: dict[int, str] = {}
        for view in views:
            try:
                outcomes.update(kind.run(config=step, ctx=ctx, members=[view]))
                # committed at once: a later member's rollback must not take this member's
                # holds, tasks or audit rows with it (steps are replay-safe if this run dies)
                ctx.flush_audit()
                session.commit()
            except Exception as exc:
                session.rollback()
                ctx.drop_audit()
                failures[view.id] = _describe(exc)
        return outcomes, failures

    @staticmethod
    def _label(journey: Journey, member: Member, step_id: str) -> str:
        return f"{member.customer_id} · {step_id}"

    def _apply(self, session, ctx, journey, row: Member, step, lane: str, outcome, label: str,
               now: datetime, early_possible: set[str]) -> None:
        results = dict(row.results or {})
        row.updated_at = now
        if isinstance(outcome, Defer):
            park(session, journey=journey, member=row, pointer=step.id, mode="at", due=outcome.until,
                 kind="defer", label=label, known=ctx.parked)
            row.reason = outcome.reason
            return
        results[step.id] = getattr(outcome, "result", {})
        row.results = results
        # where the member stands, so a run that dies can be driven again from here
        row.pointer, row.resume_mode = step.id, "after"
        if isinstance(outcome, Next):
            return
        if isinstance(outcome, Route):
            if outcome.arm is not None:
                row.lane = f"{lane}/{step.id}:{outcome.arm}"
                arms = [arm_steps for _, arm_steps in step.children()]
                if outcome.arm < len(arms) and arms[outcome.arm]:
                    row.pointer, row.resume_mode = arms[outcome.arm][0].id, "at"
            return
        if isinstance(outcome, Exit):
            row.status, row.reason = "exited", outcome.reason
            ctx.audit("journey.goal" if outcome.goal else "journey.exited",
                      customer_id=row.customer_id, result="goal" if outcome.goal else "exited",
                      reason=outcome.reason)
            return
        if isinstance(outcome, Wait):
            park(session, journey=journey, member=row, pointer=step.id, mode="after",
                 due=outcome.until, kind="wait", label=label, known=ctx.parked)
            ctx.audit("journey.waiting", customer_id=row.customer_id, result="scheduled",
                      reason=f"resumes {outcome.until.isoformat()}")
            return
        if isinstance(outcome, WaitFor):
            early = arrived_already(session, self.engine.config, journey=journey,
                                    customer_id=row.customer_id, results=results,
                                    event_type=outcome.event, match=outcome.match) \
                if row.customer_id in early_possible else None  # one query for the batch
            if early is not None:  # it came before the member got here: carry straight on
                row.results = answered_results(results, step.id, journey.id, early)
                ctx.audit("journey.event", customer_id=row.customer_id, result="matched",
                          reason=f"{outcome.event} {early['id']} had already arrived")
                return
            park(session, journey=journey, member=row, pointer=step.id, mode="after",
                 due=outcome.timeout_at, kind="timeout", label=label, known=ctx.parked)
            row.waiting_for, row.match = outcome.event, outcome.match
            ctx.audit("journey.waiting", customer_id=row.customer_id, result="waiting",
                      reason=f"for {outcome.event} until {outcome.timeout_at.isoformat()}")
            return
        raise TypeError(f"step {step.id} returned {outcome!r}, not an Outcome")

    # ------------------------------------------------------------------ finishing
    def finish(self, session, *, journey_id: str, wave: str, flow_run_id: str | None,
               now: datetime, reason: str = "reached the last step") -> dict[str, Any]:
        from flows.engine.versions import for_journey
        from flows.store import audit

        journey = session.get(Journey, journey_id)
        done = session.scalars(select(Member.customer_id).where(
            Member.journey_id == journey_id, Member.wave == wave, Member.status == "active")).all()
        session.execute(update(Member).where(Member.journey_id == journey_id, Member.wave == wave,
                                             Member.status == "active")
                        .values(status="done", updated_at=now))
        if done:
            audit.record_many(session, [dict(action="journey.completed", result="done",
                                             actor="system", touchpoint=journey.touchpoint,
                                             customer_id=cid, journey_id=journey_id,
                                             flow_run_id=flow_run_id, at=now,
                                             reason=reason) for cid in done])
        open_members = session.scalar(select(func.count()).select_from(Member).where(
            Member.journey_id == journey_id, Member.status.in_(("active", "waiting")))) or 0
        if open_members == 0 and journey.status == "active":
            journey.status, journey.ended_at = "done", now
            touchpoint = (self.engine.config.touchpoints.get(journey.touchpoint)
                          or for_journey(self.engine, session, journey).touchpoint)  # removed
            if touchpoint.entry.rule == "after_end":
                journey.entry_lock = False
        return {"completed": len(done), "open": open_members, "journey_status": journey.status}
