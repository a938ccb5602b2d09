"""Moving journeys between versions of a touch point, and failing the ones that cannot go on.

* ``renamed_from: old_id`` on a step moves a journey waiting at ``old_id`` to that step (and to
  the current version) when a run resumes it, if every member then stands at a step that
  exists (:func:`before_resume`);
* ``touchpoints journeys migrate NAME --map old=new`` moves every journey of a touch point that
  is on an earlier version (:func:`migrate`);
* both write a ``journey.migrated`` audit row with the versions and the step map;
* a member whose step is gone, with no stored version to finish on, fails with a reason that
  says so (:func:`fail_stranded`), never with a KeyError that leaves it active.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import func, select, update

from flows import clock
from flows.config.models import iter_steps
from flows.engine.versions import current_version, for_journey, pin, short
from flows.errors import TouchpointsError
from flows.store.tables import AuditRow, Continuation, Journey, Member, WorkUnit

OPEN = ("waiting", "active")
MIGRATE_HINT = "touchpoints journeys migrate {name} --map {old}=NEW_STEP"


def step_ids(touchpoint) -> set[str]:
    return {step.id for step in iter_steps(touchpoint.steps)}


def renames(touchpoint) -> dict[str, str]:
    """{old id: new id} from the ``renamed_from`` of the touch point's steps (an old id that is
    still a step of its own is no rename)."""
    ids = step_ids(touchpoint)
    return {step.renamed_from: step.id for step in iter_steps(touchpoint.steps)
            if getattr(step, "renamed_from", None) and step.renamed_from not in ids}


def plan_move(pointers: Iterable[str | None], step_map: dict[str, str],
              ids: set[str]) -> tuple[dict[str, str], list[str]]:
    """(the part of ``step_map`` these pointers use, the pointers that would stand nowhere)."""
    pointers = [p for p in pointers if p]
    used = {p: step_map[p] for p in pointers if p in step_map and step_map[p] != p}
    return used, sorted({p for p in pointers if step_map.get(p, p) not in ids})


def open_pointers(session, journey_id: str) -> dict[str | None, int]:
    return dict(session.execute(
        select(Member.pointer, func.count()).where(Member.journey_id == journey_id,
                                                   Member.status.in_(OPEN))
        .group_by(Member.pointer)).all())


def move_journey(session, journey: Journey, *, step_map: dict[str, str], to_digest: str,
                 actor: str, reason: str, now: datetime, flow_run_id: str | None = None) -> int:
    """Move ``journey`` to version ``to_digest``: members, their results, continuations and
    queued resume units follow ``step_map``; audited. Returns the open members moved."""
    from flows.store import audit

    for old, new in step_map.items():
        session.execute(update(Member).where(
            Member.journey_id == journey.id, Member.pointer == old, Member.status.in_(OPEN))
            .values(pointer=new, updated_at=now).execution_options(synchronize_session=False))
        session.execute(update(Continuation).where(
            Continuation.journey_id == journey.id, Continuation.pointer == old,
            Continuation.status.in_(("pending", "scheduled")))
            .values(pointer=new).execution_options(synchronize_session=False))
    if step_map:
        for member in session.scalars(select(Member).where(
                Member.journey_id == journey.id, Member.status.in_(OPEN))):
            results = dict(member.results or {})
            carried = {new: results[old] for old, new in step_map.items()
                       if old in results and new not in results}
            if carried:  # `steps.<new id>` holds what the step recorded under its old id
                member.results = {**results, **carried}
        for unit in session.scalars(select(WorkUnit).where(
                WorkUnit.journey_id == journey.id, WorkUnit.kind == "resume",
                WorkUnit.status.in_(("queued", "launched")))):
            params = dict(unit.params or {})
            if params.get("pointer") in step_map:
                unit.params = {**params, "pointer": step_map[params["pointer"]]}
    members = sum(open_pointers(session, journey.id).values())
    audit.record(session, action="journey.migrated", result="migrated", actor=actor,
                 touchpoint=journey.touchpoint, journey_id=journey.id,
                 customer_id=journey.customer_id, flow_run_id=flow_run_id, at=now,
                 reason=f"{reason}: version {short(journey.version)} → {short(to_digest)}"
                        + (", " + ", ".join(f"{o} → {n}" for o, n in step_map.items())
                           if step_map else ""),
                 detail={"from": journey.version, "to": to_digest, "steps": dict(step_map),
                         "members": members})
    journey.version = to_digest
    return members


def _translated(session, journey_id: str, pointer: str) -> str:
    """Where a pointer of an earlier version went, following the journey's migrations (a run
    scheduled before a migration still carries the old step id)."""
    for detail in session.scalars(select(AuditRow.detail).where(
            AuditRow.action == "journey.migrated", AuditRow.journey_id == journey_id)
            .order_by(AuditRow.seq)):
        pointer = (detail or {}).get("steps", {}).get(pointer, pointer)
    return pointer


def before_resume(engine, session, *, journey_id: str, pointer: str, now: datetime,
                  flow_run_id: str | None = None) -> str:
    """Apply ``renamed_from`` to a journey about to resume; the pointer to resume at."""
    journey = session.get(Journey, journey_id)
    if journey is None or journey.status != "active":
        return pointer
    current = engine.config.touchpoints.get(journey.touchpoint)
    version = current_version(engine, journey.touchpoint) if current is not None else None
    if version is not None and journey.version != version.digest:
        mapping = renames(current)
        if mapping:
            used, stranded = plan_move(open_pointers(session, journey_id), mapping,
                                       step_ids(current))
            if used and not stranded:
                move_journey(session, journey, step_map=used, to_digest=pin(
                    session, engine, current, now=now), actor="system", now=now,
                    reason="renamed_from in touchpoints.yaml", flow_run_id=flow_run_id)
    if pointer not in step_ids(for_journey(engine, session, journey).touchpoint):
        pointer = _translated(session, journey_id, pointer)
    return pointer


def stranded_reason(engine, session, journey_id: str, pointer: str) -> str:
    journey = session.get(Journey, journey_id)
    pinned = for_journey(engine, session, journey)
    why = f", and {pinned.missing}" if pinned.missing else ""
    return (f"step {pointer!r} is no longer in touch point {journey.touchpoint}{why}: the "
            f"journey cannot go on (move such journeys first with `"
            f"{MIGRATE_HINT.format(name=journey.touchpoint, old=pointer)}`)")


def fail_stranded(engine, session, *, journey_id: str, wave: str, pointer: str, now: datetime,
                  flow_run_id: str | None = None) -> dict:
    """Fail the wave's members, whose step is in no version this journey can run: each with
    the reason in the audit and on the member; then finish the wave like any other."""
    from flows.store import audit

    reason = stranded_reason(engine, session, journey_id, pointer)[:500]
    journey = session.get(Journey, journey_id)
    customers = list(session.scalars(select(Member.customer_id).where(
        Member.journey_id == journey_id, Member.wave == wave, Member.status == "active")))
    session.execute(update(Member).where(Member.journey_id == journey_id, Member.wave == wave,
                                         Member.status == "active")
                    .values(status="failed", reason=reason, updated_at=now)
                    .execution_options(synchronize_session=False))
    audit.record_many(session, [dict(action="journey.failed", result="failed", actor="system",
                                     touchpoint=journey.touchpoint, step=pointer,
                                     customer_id=cid, journey_id=journey_id,
                                     flow_run_id=flow_run_id, at=now, reason=reason,
                                     detail={"step": pointer, "version": journey.version})
                                for cid in customers])
    summary = finish_wave(engine, session, journey_id=journey_id, wave=wave,
                          flow_run_id=flow_run_id, now=now)
    summary["failed"] = len(customers)
    return summary


# ---------------------------------------------------------------------- touch points removed
def finish_wave(engine, session, *, journey_id: str, wave: str, flow_run_id: str | None,
                now: datetime) -> dict:
    """The end of a wave: :meth:`Journeys.finish` for a touch point of the file; for one
    removed from it, the same with the entry rule of the version the journey runs on."""
    journey = session.get(Journey, journey_id)
    reason = ("reached the last step" if journey.touchpoint in engine.config.touchpoints else
              f"reached the last step of version {short(journey.version)} (the touch point is "
              "no longer in touchpoints.yaml)")
    return engine.journeys.finish(session, journey_id=journey_id, wave=wave,
                                  flow_run_id=flow_run_id, now=now, reason=reason)


def retired_reason(name: str, why: str) -> str:
    return (f"touch point {name} is no longer in touchpoints.yaml and {why}, so the journey "
            f"cannot go on (put {name} back in the file to let its journeys finish)")


def fail_retired(engine, session, *, journey_id: str, reason: str, now: datetime,
                 flow_run_id: str | None = None) -> int:
    """End a journey of a removed touch point that cannot run: every open member failed with
    ``reason`` (in the audit and in `touchpoints journeys`), its waits cancelled, the journey
    ended. Returns the members failed."""
    from flows.store import audit

    journey = session.get(Journey, journey_id)
    if journey is None or journey.status != "active":
        return 0
    reason = reason[:500]
    members = session.execute(select(Member.customer_id, Member.pointer).where(
        Member.journey_id == journey_id, Member.status.in_(OPEN))).all()
    session.execute(update(Member).where(Member.journey_id == journey_id,
                                         Member.status.in_(OPEN))
                    .values(status="failed", reason=reason, updated_at=now)
                    .execution_options(synchronize_session=False))
    session.execute(update(Continuation).where(
        Continuation.journey_id == journey_id, Continuation.status.in_(("pending", "scheduled")))
        .values(status="cancelled").execution_options(synchronize_session=False))
    audit.record_many(session, [dict(action="journey.failed", result="failed", actor="system",
                                     touchpoint=journey.touchpoint, step=pointer,
                                     customer_id=cid, journey_id=journey_id,
                                     flow_run_id=flow_run_id, at=now, reason=reason,
                                     detail={"step": pointer, "version": journey.version})
                                for cid, pointer in members])
    session.execute(update(WorkUnit).where(
        WorkUnit.journey_id == journey_id, WorkUnit.status.in_(("queued", "launched")))
        .values(status="done", reason="the journey failed: its touch point was removed")
        .execution_options(synchronize_session=False))
    journey.status, journey.ended_at = "done", now
    journey.entry_lock = False
    return len(members)


def launch_retired(engine, launcher, unit: dict) -> bool:
    """Before a unit of a touch point that touchpoints.yaml no longer has becomes a run: True
    if it may run (its journey's version is stored and ``launcher`` runs removed touch points:
    it finishes on that version); else its journey fails with the reason, and False."""
    name = unit["touchpoint"]
    if name in engine.config.touchpoints:
        return True
    journey_id = unit.get("journey_id") or unit["params"].get("journey_id")
    with engine.store.session() as session:
        journey = session.get(Journey, journey_id) if journey_id else None
        pinned = None
        if journey is not None and journey.version:
            from flows.engine.versions import load_version

            pinned = load_version(engine, session, journey.version)
        if pinned is not None and getattr(launcher, "runs_retired", False):
            return True
        if journey is None:  # a start queued before the touch point was removed: not started
            from flows.store import audit

            reason = f"touch point {name} is no longer in touchpoints.yaml; nothing was started"
            session.execute(update(WorkUnit).where(WorkUnit.id == unit["id"],
                                                   WorkUnit.status == "queued")
                            .values(status="failed", reason=reason)
                            .execution_options(synchronize_session=False))
            audit.record(session, action="unit.failed", result="failed", actor="system",
                         touchpoint=name, journey_id=None, at=clock.now(),
                         reason=f"{unit['kind']} {unit['id']}: {reason}",
                         detail={"unit": unit["id"], "kind": unit["kind"]})
            return False
        due = unit.get("due_at")
        if due is not None and (due if due.tzinfo else due.replace(tzinfo=UTC)) > clock.now():
            return False  # not due yet: there is time to put the touch point back
        if pinned is not None:
            why = ("this launcher runs only the touch points in the file (`touchpoints serve` "
                   f"and `touchpoints run --resume-due` finish it on version "
                   f"{short(journey.version)})")
        elif journey.version:
            why = f"its version {short(journey.version)} is not in the store"
        else:
            why = "it started before versions were kept"
        fail_retired(engine, session, journey_id=journey.id, now=clock.now(),
                     reason=retired_reason(name, why))
    return False


# ---------------------------------------------------------------------- touchpoints journeys migrate
@dataclass
class Migration:
    touchpoint: str
    to: str
    journeys: int = 0
    members: int = 0
    steps: dict[str, int] = field(default_factory=dict)  # "old → new": journeys


def parse_map(pairs: Iterable[str]) -> dict[str, str]:
    step_map: dict[str, str] = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise TouchpointsError(f"--map {pair!r} is not OLD=NEW",
                                   hint="e.g. --map until_60d=wait_60d (step ids)")
        step_map[old.strip()] = new.strip()
    return step_map


def migrate(engine, session, *, name: str, step_map: dict[str, str], actor: str,
            now: datetime, dry_run: bool = False) -> Migration:
    """Move every journey in flight of touch point ``name`` that is on another version to the
    current one, its members following ``step_map`` (and the steps' ``renamed_from``). Either
    every such journey moves or none does."""
    current = engine.touchpoint(name)
    ids = step_ids(current)
    unknown = sorted({new for new in step_map.values() if new not in ids})
    if unknown:
        raise TouchpointsError(f"touch point {name} has no step {', '.join(map(repr, unknown))}",
                               hint="the steps now: " + ", ".join(sorted(ids)))
    version = current_version(engine, name)
    if version is None:
        raise TouchpointsError(f"touch point {name} was not loaded from touchpoints.yaml",
                               hint="run the command in the folder of touchpoints.yaml")
    full_map = {**renames(current), **step_map}
    journeys = list(session.scalars(select(Journey).where(
        Journey.touchpoint == name, Journey.status == "active")
        .where((Journey.version.is_(None)) | (Journey.version != version.digest))
        .order_by(Journey.started_at)))
    plans, stranded = [], {}
    for journey in journeys:
        pointers = open_pointers(session, journey.id)
        used, missing = plan_move(pointers, full_map, ids)
        for pointer in missing:
            stranded[pointer] = stranded.get(pointer, 0) + 1
        plans.append((journey, used, sum(pointers.values())))
    if stranded:
        listing = ", ".join(f"{p} ({n} journey{'s' if n != 1 else ''})"
                            for p, n in sorted(stranded.items()))
        raise TouchpointsError(
            f"journeys of {name} wait at steps it no longer has: {listing}; nothing was moved",
            hint="map each to a step of the current version, e.g. " + " ".join(
                f"--map {p}=NEW_STEP" for p in sorted(stranded)) + "; the steps now: "
                 + ", ".join(sorted(ids)))
    result = Migration(touchpoint=name, to=version.digest)
    if not dry_run and plans:
        pin(session, engine, current, now=now)
    for journey, used, members in plans:
        result.journeys += 1
        result.members += members
        for old, new in used.items():
            key = f"{old} → {new}"
            result.steps[key] = result.steps.get(key, 0) + 1
        if not dry_run:
            move_journey(session, journey, step_map=used, to_digest=version.digest, actor=actor,
                         reason="touchpoints journeys migrate", now=now)
    return result
