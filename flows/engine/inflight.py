"""Which journeys in flight an edit of touchpoints.yaml affects, and what will happen to them.

`touchpoints check` (when there is a store) and `touchpoints serve` (at start) print it: per
touch point, the journeys on an earlier version grouped by the step they wait at, with counts,
and one of

* finish on version abc123 (started …): the default, their own version is stored;
* moved by renamed_from: the step they wait at was renamed, and the new step says so;
* carry on with the current version: their version is not stored but their step still exists;
* need `touchpoints journeys migrate`: their step is gone and there is no version to finish on;
* (touch point removed): they finish on their stored version (`serve` deploys it for them,
  `touchpoints run --resume-due` runs it); those with no stored version fail when they come
  due, with the reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import and_, func, or_, select

from flows.config.definitions import rebuild
from flows.engine.migration import MIGRATE_HINT, OPEN, plan_move, renames, step_ids
from flows.engine.versions import Version, build_version, short
from flows.store.tables import Journey, Member, TouchpointVersion

log = logging.getLogger("touchpoints.engine")


@dataclass
class Group:
    touchpoint: str
    outcome: str            # version | renamed | current | migrate
    pointer: str
    change: str             # removed or renamed | renamed to x | changed | unchanged
    version: str | None
    started: datetime | None = None
    journeys: int = 0
    members: int = 0


def _step(touchpoint, step_id: str):
    from flows.config.models import iter_steps

    return next((s for s in iter_steps(touchpoint.steps) if s.id == step_id), None)


def affected(session, config, current: dict[str, Version | None], *,
             served: bool = False) -> list[Group]:
    """The journeys in flight that are not on the current version of their touch point, and
    those of touch points the file no longer has (``served``: as `serve` will treat them)."""
    others = [and_(Journey.touchpoint == name, or_(Journey.version.is_(None),
                                                   Journey.version != version.digest))
              for name, version in current.items() if version is not None]
    others.append(Journey.touchpoint.not_in(list(config.touchpoints)))
    journeys: dict[str, tuple[str, str | None, dict[str, int]]] = {}
    for jid, name, digest, pointer, count in session.execute(
            select(Journey.id, Journey.touchpoint, Journey.version, Member.pointer, func.count())
            .join(Member, Member.journey_id == Journey.id)
            .where(Journey.status == "active", Member.status.in_(OPEN), or_(*others))
            .group_by(Journey.id, Journey.touchpoint, Journey.version, Member.pointer)):
        journeys.setdefault(jid, (name, digest, {}))[2][pointer] = count
    stored: dict[str, tuple] = {}

    def version_of(name: str, digest: str | None) -> tuple:
        if not digest:
            return None, None
        if digest not in stored:
            row = session.get(TouchpointVersion, digest)
            model = None
            if row is not None:
                try:
                    model = rebuild(name, dict(row.definition or {}))
                except Exception:  # noqa: BLE001 - no longer parses: as good as missing
                    model = None
            stored[digest] = (model, row.created_at if row is not None else None)
        return stored[digest]

    groups: dict[tuple, Group] = {}
    for name, digest, pointers in journeys.values():
        now_tp = config.touchpoints.get(name)
        if now_tp is None:  # the touch point was removed from the file
            old_tp, started = version_of(name, digest)
            outcome = "gone" if old_tp is None else ("removed-served" if served else "removed")
            for pointer, count in pointers.items():
                group = groups.setdefault((name, outcome, digest, pointer or ""), Group(
                    touchpoint=name, outcome=outcome, pointer=pointer or "(starting)",
                    change="touch point removed", version=digest, started=started))
                group.journeys += 1
                group.members += count
            continue
        ids, mapping = step_ids(now_tp), renames(now_tp)
        used, stranded = plan_move(pointers, mapping, ids)
        old_tp, started = version_of(name, digest)
        if used and not stranded:
            outcome = "renamed"
        elif old_tp is not None:
            outcome = "version"
        elif not stranded:
            if not digest:
                continue  # started before versions were kept, and its steps are all there
            outcome = "current"
        else:
            outcome = "migrate"
        for pointer, count in pointers.items():
            if not pointer:
                continue
            if pointer in mapping:
                change = f"renamed to {mapping[pointer]}"
            elif pointer not in ids:
                change = "removed or renamed"
            elif old_tp is not None and _step(old_tp, pointer) != _step(now_tp, pointer):
                change = "changed"
            else:
                change = "unchanged"
            key = (name, outcome, digest, pointer)
            group = groups.setdefault(key, Group(touchpoint=name, outcome=outcome,
                                                 pointer=pointer, change=change,
                                                 version=digest, started=started))
            group.journeys += 1
            group.members += count
    return sorted(groups.values(), key=lambda g: (g.touchpoint, g.outcome, g.pointer,
                                                  g.version or ""))


def _what(group: Group) -> str:
    if group.outcome == "version":
        when = f" (started {group.started:%Y-%m-%d %H:%M} UTC)" if group.started else ""
        return f"finish on version {short(group.version)}{when}"
    if group.outcome == "renamed":
        return "moved by renamed_from to the current version when they resume"
    if group.outcome in ("removed", "removed-served"):
        when = f" (started {group.started:%Y-%m-%d %H:%M} UTC)" if group.started else ""
        return (f"finish on version {short(group.version)}{when}, which serve deploys for "
                "them; nothing new starts")
    if group.outcome == "gone":
        why = (f"their version {short(group.version)} is not in the store" if group.version
               else "they started before versions were kept")
        return f"fail when they come due, with the reason: {why}, so they cannot go on"
    if group.outcome == "current":
        return (f"carry on with the current version (their version {short(group.version)} "
                "is not in the store)")
    return (f"need `{MIGRATE_HINT.format(name=group.touchpoint, old=group.pointer)}`: their step "
            "is gone and the version they started on is not stored, so they fail when they "
            "resume")


def describe(groups: list[Group]) -> list[str]:
    """Lines for people: per touch point, per step, counts and what will happen."""
    if not groups:
        return []
    lines = ["Journeys in flight on an earlier version of their touch point:"]
    for name in sorted({g.touchpoint for g in groups}):
        mine = [g for g in groups if g.touchpoint == name]
        lines.append(f"  {name}:")
        for g in mine:
            lines.append(f"    {g.journeys} journey{'s' if g.journeys != 1 else ''} "
                         f"({g.members} member{'s' if g.members != 1 else ''}) at {g.pointer} "
                         f"({g.change}): {_what(g)}")
    return lines


def in_flight_lines(session, config, templates_dir: Path) -> list[str]:
    current = {name: build_version(tp, templates_dir) for name, tp in config.touchpoints.items()}
    return describe(affected(session, config, current))


def say_in_flight(engine, say) -> None:
    """`serve` at start: print the affected journeys; a failure here never stops the service."""
    from flows.engine.versions import current_version

    try:
        current = {name: current_version(engine, name) for name in engine.config.touchpoints}
        with engine.store.read_session() as session:
            lines = describe(affected(session, engine.config, current, served=True))
    except Exception as exc:  # noqa: BLE001 - informative only
        log.warning("could not list the journeys an edit affects: %s", exc)
        return
    for line in lines:
        say(line)


def check_lines(config, config_file, settings) -> list[str]:
    """`touchpoints check`: the affected journeys, only if a store is configured or exists
    (a check without one stays a pure, fast file check)."""
    from flows.store.db import open_store

    if not settings.database_url and not (settings.data_dir / "touchpoints.db").exists():
        return []
    try:
        store = open_store(settings)
        with store.read_session() as session:
            return in_flight_lines(session, config, Path(config_file).parent / "templates")
    except Exception as exc:  # noqa: BLE001 - the file is fine; say why the list is missing
        message = getattr(exc, "message", None) or str(exc)
        return [f"(could not list the journeys in flight: {message})"]
