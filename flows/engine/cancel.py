"""Cancelling journeys: by id, or every open journey of one customer.

Cancelling a journey marks it ``cancelled``, its active and waiting members ``cancelled``, its
pending or scheduled continuations ``cancelled``, its open handoff tasks ``cancelled`` and lifts
the holds it placed (their release step will never run). One ``journey.cancelled`` audit row is
written per journey, or per member when one customer leaves a segment journey.

A cancelled journey frees its entry key, whatever the entry rule: the next trigger for the same
customer (or key) starts a new journey. Cancelling is how an operator says "this journey does
not count" (a withdrawn contract, a re-booked install); without it a ``once`` or
``once_per_cycle`` journey, once cancelled, would refuse every later trigger for good.

Continuations the service already turned into scheduled Prefect flow runs are cancelled in
Prefect too, best effort: when Prefect cannot be reached the cancel still stands, and the run,
if it ever starts, finds no waiting member and ends at once.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import delete, or_, select, update

from flows import clock
from flows.errors import NotFoundError, TouchpointsError
from flows.store.tables import Continuation, Customer, Hold, Journey, Member, Task

log = logging.getLogger("touchpoints.cancel")

OPEN_MEMBER = ("active", "waiting")
OPEN_CONTINUATION = ("pending", "scheduled")
OPEN_TASK = ("open", "acknowledged")


def _check_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise TouchpointsError("a cancel needs a reason", hint="e.g. --reason 'contract withdrawn'")
    return reason[:500]


def _release_entry(journey: Journey) -> None:
    """A cancelled journey no longer blocks its entry key, under any rule."""
    journey.entry_lock = False


def _cancel_whole(engine, session, journey: Journey, *, actor: str, reason: str, now,
                  customer_id: str | None = None) -> dict[str, Any]:
    from flows.store import audit

    members = session.execute(
        update(Member).where(Member.journey_id == journey.id, Member.status.in_(OPEN_MEMBER))
        .values(status="cancelled", reason=reason, waiting_for=None, match=None, due_at=None,
                wave=None, updated_at=now)).rowcount or 0
    conts = session.scalars(select(Continuation).where(
        Continuation.journey_id == journey.id, Continuation.status.in_(OPEN_CONTINUATION))).all()
    flow_runs = [c.flow_run_id for c in conts if c.flow_run_id]
    for c in conts:
        c.status = "cancelled"
    tasks = session.execute(
        update(Task).where(Task.journey_id == journey.id, Task.status.in_(OPEN_TASK))
        .values(status="cancelled")).rowcount or 0
    holds = session.execute(
        delete(Hold).where(Hold.source.like(f"{journey.id}:%"))).rowcount or 0
    journey.status, journey.ended_at = "cancelled", now
    _release_entry(journey)
    result = {"journey_id": journey.id, "touchpoint": journey.touchpoint,
              "customer_id": customer_id or journey.customer_id, "scope": "journey",
              "status": "cancelled", "members": members, "continuations": len(conts),
              "tasks": tasks, "holds": holds, "flow_runs": flow_runs}
    audit.record(session, action="journey.cancelled", result="cancelled", actor=actor,
                 touchpoint=journey.touchpoint, customer_id=customer_id or journey.customer_id,
                 journey_id=journey.id, reason=reason, at=now,
                 detail={k: v for k, v in result.items() if k not in ("journey_id", "touchpoint")})
    return result


def _cancel_member(engine, session, journey: Journey, customer_id: str, *, actor: str,
                   reason: str, now) -> dict[str, Any] | None:
    """Take one customer out of a segment journey; the journey goes on for the others, or is
    cancelled when nobody is left in it."""
    from flows.store import audit

    member = session.scalar(select(Member).where(Member.journey_id == journey.id,
                                                 Member.customer_id == customer_id,
                                                 Member.status.in_(OPEN_MEMBER)))
    if member is None:
        return None
    others = session.scalar(select(Member.id).where(
        Member.journey_id == journey.id, Member.customer_id != customer_id,
        Member.status.in_(OPEN_MEMBER)).limit(1))
    if others is None:
        return _cancel_whole(engine, session, journey, actor=actor, reason=reason, now=now,
                             customer_id=customer_id)
    member.status, member.reason, member.updated_at = "cancelled", reason, now
    member.waiting_for, member.match, member.due_at, member.wave = None, None, None, None
    tasks = session.execute(
        update(Task).where(Task.journey_id == journey.id, Task.customer_id == customer_id,
                           Task.status.in_(OPEN_TASK)).values(status="cancelled")).rowcount or 0
    holds = session.execute(delete(Hold).where(
        Hold.customer_id == customer_id, Hold.source.like(f"{journey.id}:%"))).rowcount or 0
    result = {"journey_id": journey.id, "touchpoint": journey.touchpoint,
              "customer_id": customer_id, "scope": "member", "status": journey.status,
              "members": 1, "continuations": 0, "tasks": tasks, "holds": holds, "flow_runs": []}
    audit.record(session, action="journey.cancelled", result="cancelled", actor=actor,
                 touchpoint=journey.touchpoint, customer_id=customer_id, journey_id=journey.id,
                 reason=reason, at=now,
                 detail={k: v for k, v in result.items() if k not in ("journey_id", "touchpoint")})
    return result


def cancel_journey(engine, journey_id: str, *, actor: str, reason: str,
                   prefect: bool = True, prefect_api_url: str | None = None) -> dict[str, Any]:
    """Cancel one journey. Cancelling a cancelled journey again changes nothing
    (``already: True``); a journey that has ended raises TouchpointsError."""
    reason = _check_reason(reason)
    now = clock.now()
    with engine.store.session() as session:
        journey = session.get(Journey, journey_id) if journey_id else None
        if journey is None:
            raise NotFoundError(f"no journey {journey_id!r}",
                                hint="list them with `touchpoints journeys`")
        if journey.status == "cancelled":
            return {"journey_id": journey.id, "touchpoint": journey.touchpoint,
                    "customer_id": journey.customer_id, "scope": "journey",
                    "status": "cancelled", "already": True, "members": 0, "continuations": 0,
                    "tasks": 0, "holds": 0, "flow_runs": [], "prefect": {}}
        if journey.status != "active":
            raise TouchpointsError(f"journey {journey_id} has already ended ({journey.status})",
                                   hint="only an active journey can be cancelled")
        result = _cancel_whole(engine, session, journey, actor=actor, reason=reason, now=now)
    result["already"] = False
    result["prefect"] = (cancel_flow_runs(result["flow_runs"], reason=reason, api_url=prefect_api_url)
                         if prefect else {})
    return result


def cancel_for_customer(engine, customer_id: str, touchpoint: str | None = None, *, actor: str,
                        reason: str, prefect: bool = True,
                        prefect_api_url: str | None = None) -> list[dict[str, Any]]:
    """Cancel every active journey of one customer (of one touch point if given). The
    customer's own journeys are cancelled whole; from a segment journey (an outage, a review
    round) only this customer is taken out."""
    reason = _check_reason(reason)
    if touchpoint is not None and touchpoint not in engine.config.touchpoints:
        raise NotFoundError(f"no touch point {touchpoint!r}",
                            hint="the names are listed by `touchpoints plan`")
    now = clock.now()
    results: list[dict[str, Any]] = []
    with engine.store.session() as session:
        member_of = select(Member.journey_id).where(Member.customer_id == customer_id,
                                                    Member.status.in_(OPEN_MEMBER))
        query = select(Journey).where(Journey.status == "active",
                                      or_(Journey.customer_id == customer_id,
                                          Journey.id.in_(member_of)))
        if touchpoint is not None:
            query = query.where(Journey.touchpoint == touchpoint)
        journeys = session.scalars(query.order_by(Journey.started_at, Journey.id)).all()
        if not journeys and session.get(Customer, customer_id) is None:
            raise NotFoundError(f"unknown customer {customer_id!r}",
                                hint="list them with `touchpoints customers list`")
        for journey in journeys:
            if journey.customer_id == customer_id:
                results.append(_cancel_whole(engine, session, journey, actor=actor, reason=reason,
                                             now=now))
            else:
                done = _cancel_member(engine, session, journey, customer_id, actor=actor,
                                      reason=reason, now=now)
                if done is not None:
                    results.append(done)
    runs = [run for r in results for run in r["flow_runs"]]
    outcome = cancel_flow_runs(runs, reason=reason, api_url=prefect_api_url) if prefect else {}
    for r in results:
        r["already"] = False
        r["prefect"] = {run: outcome.get(run) for run in r["flow_runs"]}
    return results


# ---------------------------------------------------------------------- Prefect, best effort
def _prefect_configured(api_url: str | None) -> str | None:
    """The Prefect API to talk to, or None when there is none (no ephemeral server is started
    just to cancel runs that no server knows about)."""
    if api_url:
        return api_url
    try:
        from prefect.settings import PREFECT_API_URL

        return PREFECT_API_URL.value() or None
    except Exception:  # noqa: BLE001 - no Prefect settings: nothing to cancel
        return None


def _cancel_runs_now(run_ids: list[str], reason: str, api_url: str, out: dict[str, str]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Cancelled

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        for run_id in run_ids:
            try:
                run = client.read_flow_run(run_id)
                state = run.state
                if state is not None and (state.is_final() or state.is_running()):
                    out[run_id] = f"left alone ({state.type.value.lower()})"
                    continue
                client.set_flow_run_state(run_id, Cancelled(message=reason), force=True)
                out[run_id] = "cancelled"
            except Exception as exc:  # noqa: BLE001 - one run failing must not stop the others
                out[run_id] = f"not cancelled: {type(exc).__name__}"


def cancel_flow_runs(run_ids: list[str], *, reason: str, api_url: str | None = None,
                     timeout: float = 10.0) -> dict[str, str]:
    """Cancel scheduled Prefect flow runs; returns what happened per run. Never raises."""
    run_ids = [r for r in dict.fromkeys(run_ids) if r]
    if not run_ids:
        return {}
    url = _prefect_configured(api_url)
    if url is None:
        return {r: "not cancelled: no Prefect API configured" for r in run_ids}
    out: dict[str, str] = {}

    def work() -> None:
        try:
            _cancel_runs_now(run_ids, reason, url, out)
        except Exception as exc:  # noqa: BLE001 - best effort, never fails the cancel
            log.warning("could not cancel Prefect flow runs: %s", exc)

    thread = threading.Thread(target=work, name="touchpoints-cancel-runs", daemon=True)
    thread.start()
    thread.join(timeout)
    return {r: out.get(r, "not cancelled: Prefect did not answer") for r in run_ids}
