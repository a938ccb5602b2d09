"""Compile a touch point into a Prefect flow.

* the flow is named after the touch point, its description is the written-down procedure;
* each step runs as task runs named after the step id, one per batch of members;
* bookkeeping is three small tasks: ``enter`` (or ``resume``), ``finish`` and ``report``;
* a flow run is named after the customer (or the segment's key) and the date.

The compiler knows only the step protocol: ``children()`` for nested lists and the outcome each
step returns. Side effects happen only inside tasks; the flow body only reads.
"""

from __future__ import annotations

import os
from typing import Any

from flows import clock
from flows.engine.core import current_engine
from flows.errors import TouchpointsError

_FLOWS: dict[str, Any] = {}


def find_path(steps: list, target: str, path: tuple = ()) -> tuple | None:
    """The (list, index) pairs from the top of the touch point down to step ``target``."""
    for index, step in enumerate(steps):
        here = path + ((steps, index),)
        if step.id == target:
            return here
        for _, child in step.children():
            found = find_path(child, target, here)
            if found:
                return found
    return None


def continuation_chain(steps: list, pointer: str, mode: str) -> list[tuple[list, int]]:
    """Where to carry on after (mode 'after') or at (mode 'at') step ``pointer``: the rest of
    its own list, then the rest of each enclosing list, innermost first."""
    path = find_path(steps, pointer)
    if path is None:
        raise KeyError(f"step {pointer!r} is no longer in the touch point")
    chain = []
    for depth, (lst, index) in enumerate(reversed(path)):
        chain.append((lst, index if depth == 0 and mode == "at" else index + 1))
    return chain


def _run_name() -> str:
    from prefect.runtime import flow_run

    params = flow_run.parameters or {}
    label = params.get("label") or params.get("customer_id") or "journey"
    return f"{label} · {clock.now():%Y-%m-%d}"


def _task_run_name() -> str:
    from prefect.runtime import task_run

    params = task_run.parameters or {}
    batch = params.get("batch", 0)
    return params.get("step_id", "step") + (f" #{batch + 1}" if batch else "")


def _task_label(default: str) -> str:
    from prefect.runtime import task_run

    params = task_run.parameters or {}
    return params.get("customer_id") or params.get("label") or default


def _flow_run_id() -> str | None:
    from prefect.runtime import flow_run

    return str(flow_run.id) if flow_run.id else None


# ---------------------------------------------------------------------- task bodies
def _owner() -> str:
    """Who holds a lease: the flow run, or this process when there is no run context."""
    return _flow_run_id() or f"pid-{os.getpid()}"


def _acquire(touchpoint: str, unit_id: str) -> dict:
    from flows.engine import units

    engine = current_engine()
    with engine.store.session() as session:
        unit = units.acquire(session, unit_id, _owner())
        if unit is None:
            return {"acquired": False}
        return {"acquired": True, "kind": unit.kind, "params": dict(unit.params or {}),
                "journey_id": unit.journey_id, "label": unit.label}


def _acquire_many(touchpoint: str, unit_ids: list[str]) -> list[dict]:
    """Lease every start unit of a batch at once (they are renewed together by the run's
    heartbeat), so a long batch never looks dead; units done or held elsewhere are left out."""
    from flows.engine import units

    owner = _owner()
    with current_engine().store.session() as session:
        held = []
        for unit_id in unit_ids:
            unit = units.acquire(session, unit_id, owner)
            if unit is not None and unit.kind == "start":
                held.append({"id": unit.id, "params": dict(unit.params or {}),
                             "label": unit.label})
        return held


def _enter(touchpoint: str, event: dict, customer_id: str | None, unit_id: str | None = None,
           label: str = "") -> dict:
    engine = current_engine()
    with engine.store.session() as session:
        return engine.journeys.enter(session, touchpoint=engine.touchpoint(touchpoint), event=event,
                                     customer_id=customer_id, flow_run_id=_owner(),
                                     now=clock.now(), unit_id=unit_id, label=label)


def _resume(touchpoint: str, journey_id: str, pointer: str, mode: str,
            unit_id: str | None = None, label: str = "") -> dict:
    from flows.engine.migration import before_resume

    engine = current_engine()
    with engine.store.session() as session:
        # renamed_from moves the journey first; a pointer of an earlier version is translated
        pointer = before_resume(engine, session, journey_id=journey_id, pointer=pointer,
                                now=clock.now(), flow_run_id=_owner())
        claimed = engine.journeys.claim(session, journey_id=journey_id, pointer=pointer,
                                        mode=mode, now=clock.now(), unit_id=unit_id,
                                        flow_run_id=_owner(), label=label)
        return {**claimed, "pointer": pointer}


def _split(touchpoint: str, journey_id: str, wave: str) -> list[dict]:
    engine = current_engine()
    with engine.store.session() as session:
        return engine.journeys.split_wave(session, journey_id=journey_id, wave=wave,
                                          now=clock.now())


def _complete(touchpoint: str, unit_id: str, reason: str) -> None:
    from flows.engine import units

    with current_engine().store.session() as session:
        units.complete(session, unit_id, owner=_owner(), reason=reason)


def _step(touchpoint: str, step_id: str, journey_id: str, wave: str, lane: str, after: int,
          batch: int = 0) -> dict:
    from flows.engine.versions import for_journey

    engine = current_engine()
    with engine.store.session() as session:
        pinned = for_journey(engine, session, journey_id)  # the version the journey runs on
        path = find_path(pinned.touchpoint.steps, step_id)
        if path is None:
            raise TouchpointsError(f"step {step_id!r} is not in the version of {touchpoint} "
                                   f"journey {journey_id} runs on")
        lst, index = path[-1]
        return engine.journeys.run_batch(session, touchpoint=pinned.touchpoint, step=lst[index],
                                         journey_id=journey_id, wave=wave, lane=lane,
                                         after=after, flow_run_id=_flow_run_id(),
                                         now=clock.now(), renderer=pinned.renderer)


def _strand(touchpoint: str, journey_id: str, wave: str, pointer: str) -> dict:
    """Members whose step is in no version the journey can run: failed, with the reason."""
    from flows.engine.migration import fail_stranded

    engine = current_engine()
    with engine.store.session() as session:
        return fail_stranded(engine, session, journey_id=journey_id, wave=wave, pointer=pointer,
                             now=clock.now(), flow_run_id=_flow_run_id())


def _finish(touchpoint: str, journey_id: str, wave: str, unit_id: str | None = None,
            reason: str = "") -> dict:
    """Finish a wave; with ``unit_id``, release that unit in the same transaction (the last
    part of a wave unit: one task run fewer per wave, and no gap between the two)."""
    from flows.engine import units
    from flows.engine.migration import finish_wave  # a removed touch point finishes too

    engine = current_engine()
    with engine.store.session() as session:
        summary = finish_wave(engine, session, journey_id=journey_id, wave=wave,
                              flow_run_id=_flow_run_id(), now=clock.now())
        units.complete(session, wave, owner=_owner(), reason="wave finished")
        if unit_id is not None:
            units.complete(session, unit_id, owner=_owner(), reason=reason)
            summary["released"] = True
        return summary


def _schedule(touchpoint: str, journey_id: str) -> int:
    """Queue the journey's new continuations as units; the service launches them as scheduled
    runs within a second (one path from a continuation to a run: :mod:`flows.engine.redrive`)."""
    from flows.engine.redrive import queue_continuations

    with current_engine().store.session() as session:
        return queue_continuations(session, journey_id=journey_id)


def _scheduled_event(touchpoint: str) -> dict:
    """The event of a run started by the deployment's own schedule (schedule triggers)."""
    from prefect.runtime import flow_run

    when = flow_run.scheduled_start_time or clock.now()
    return {"id": f"schedule:{touchpoint}:{when.isoformat()}", "type": "schedule",
            "customer_id": None, "occurred_at": when.isoformat(), "data": {"schedule": touchpoint}}


def served() -> bool:
    """True inside `touchpoints serve`: continuations become scheduled flow runs at once."""
    return os.environ.get("TOUCHPOINTS_SERVED") == "1"


def _report(touchpoint: str, journey_id: str | None, summary: dict) -> str:
    from prefect.artifacts import create_markdown_artifact

    from flows.engine.report import run_report

    engine = current_engine()
    with engine.store.session() as session:
        markdown = run_report(session, touchpoint=touchpoint, journey_id=journey_id,
                              flow_run_id=_flow_run_id(), summary=summary)
    create_markdown_artifact(markdown=markdown, key=f"touchpoint-{touchpoint}",
                             description=f"What {touchpoint} did in this run")
    return markdown


# ---------------------------------------------------------------------- the flow
def compile_touchpoint(touchpoint) -> Any:
    """The Prefect flow for one touch point (cached per process)."""
    if touchpoint.name in _FLOWS:
        return _FLOWS[touchpoint.name]
    from prefect import Flow, Task
    from prefect.cache_policies import NO_CACHE
    from prefect.context import TagsContext

    name = touchpoint.name

    def make_task(fn, task_name: str, **options) -> Task:
        """Task runs carry no tags: each tag costs a concurrency-lease round trip per task run.
        The flow run carries ``touchpoint:<name>`` and ``customer:<id>`` (the launchers)."""
        options.setdefault("task_run_name", task_name)
        return Task(fn=fn, name=task_name, cache_policy=NO_CACHE, persist_result=False, **options)

    enter = make_task(_enter, "enter")
    resume = make_task(_resume, "resume")
    acquire = make_task(_acquire, "lease")
    acquire_many = make_task(_acquire_many, "lease")
    split = make_task(_split, "re-drive")
    complete = make_task(_complete, "release")
    finish = make_task(_finish, "finish")
    report = make_task(_report, "report")
    schedule = make_task(_schedule, "schedule")
    strand = make_task(_strand, "stranded")
    from flows.config import iter_steps

    step_tasks = {step.id: make_task(_step, step.id, task_run_name=_task_run_name, retries=2,
                                     retry_delay_seconds=[2, 10])
                  for step in iter_steps(touchpoint.steps)}
    batch_size = current_engine().settings.batch_size

    def task_for(step_id: str) -> Task:
        if step_id not in step_tasks:  # a step of the earlier version a journey runs on
            step_tasks[step_id] = make_task(_step, step_id, task_run_name=_task_run_name,
                                            retries=2, retry_delay_seconds=[2, 10])
        return step_tasks[step_id]

    def run_list(steps: list, *, journey_id: str, wave: str, lane: str,
                 inline: bool = False) -> None:
        engine = current_engine()
        for step in steps:
            with engine.store.read_session() as session:  # a read: no SQLite write lock
                if not engine.journeys.count_active(session, journey_id=journey_id, wave=wave,
                                                    lane=lane):
                    return
            after, batch = 0, 0
            while True:
                run_step = _step if inline else task_for(step.id)
                result = run_step(name, step.id, journey_id, wave, lane, after, batch)
                if result["count"] < batch_size:
                    break
                after, batch = result["last"], batch + 1
            for arm, (_, arm_steps) in enumerate(step.children()):
                run_list(arm_steps, journey_id=journey_id, wave=wave,
                         lane=f"{lane}/{step.id}:{arm}", inline=inline)

    def drive(wave: str, pointer: str | None, mode: str, journey_id: str,
              inline: bool = False, release: tuple[str, str] | None = None) -> dict:
        from flows.engine.versions import for_journey

        engine = current_engine()
        with engine.store.read_session() as session:
            tp = for_journey(engine, session, journey_id).touchpoint
        if pointer is not None and find_path(tp.steps, pointer) is None:
            return (_strand if inline else strand)(name, journey_id, wave, pointer)
        chain = [(tp.steps, 0)] if pointer is None else continuation_chain(tp.steps, pointer, mode)
        for steps, start in chain:
            run_list(steps[start:], journey_id=journey_id, wave=wave, lane="", inline=inline)
        return (_finish if inline else finish)(name, journey_id, wave, *(release or ()))

    def conclude(journey_id: str, summary: dict) -> dict:
        summary["journey_id"] = journey_id
        if summary.get("open") and served():
            summary["scheduled"] = schedule(name, journey_id)
        report(name, journey_id, summary)
        return summary

    def start_one(touchpoint: str, unit_id: str, event: dict, customer_id: str | None,
                  label: str) -> dict:
        """One journey of a batch of starts, entered and walked up to its first wait inside
        the batch's one task run."""
        entered = _enter(touchpoint, event, customer_id, unit_id, label)
        if entered["journey_id"] is None:
            _complete(touchpoint, unit_id, f"not started: {entered['refused']}")
            return {"customer_id": customer_id, "journey_id": None, "refused": entered["refused"]}
        journey_id = entered["journey_id"]
        part = drive(entered["wave"], None, "at", journey_id, inline=True)
        if part.get("open") and served():
            _schedule(touchpoint, journey_id)
        return {"customer_id": customer_id, "journey_id": journey_id, **part}

    def start_all(touchpoint: str, units: list[dict], label: str = "") -> list[dict]:
        """Every journey of a batch of starts in one task run: a task run costs the Prefect
        server 60-85 ms of CPU, a flow run's worth for a batch of 50 if each had its own."""
        with current_engine().shared_mail():  # one SMTP connection for the whole batch
            return [start_one(touchpoint, unit["id"], unit["params"].get("event") or {},
                              unit["params"].get("customer_id"), unit["label"])
                    for unit in units]

    start_task = make_task(start_all, "start", task_run_name=lambda: _task_label("start"))

    def start_batch(unit_ids: list[str], label: str) -> dict:
        """Several journey starts in one run: each customer is findable by the run's tags
        (``customer:<id>``), its name and its artifact, which lists every journey."""
        summary: dict[str, Any] = {"started": 0, "refused": [], "journeys": [], "open": 0,
                                   "completed": 0}
        held = acquire_many(name, unit_ids)
        for result in start_task(name, held, label) if held else []:
            if result["journey_id"] is None:
                summary["refused"].append(f"{result['customer_id']}: {result['refused']}")
                continue
            summary["started"] += 1
            summary["completed"] += result.get("completed", 0)
            summary["open"] += result.get("open", 0)
            summary["journeys"].append({"customer_id": result["customer_id"],
                                        "journey_id": result["journey_id"],
                                        "status": result.get("journey_status")})
        summary["refused"] = "; ".join(summary["refused"])
        report(name, None, summary)
        return summary

    def journey(event: dict | None = None, customer_id: str | None = None,
                journey_id: str | None = None, resume_at: str | None = None, mode: str = "after",
                label: str = "", unit_id: str | None = None,
                unit_ids: list[str] | None = None) -> dict:
        if unit_ids:
            from flows.engine.units import Heartbeat

            with Heartbeat(current_engine().store, _owner()), TagsContext(current_tags=set()):
                return start_batch(unit_ids, label)
        if unit_id is None:
            return journey_body(event, customer_id, journey_id, resume_at, mode, label, None)
        from flows.engine.units import Heartbeat

        with Heartbeat(current_engine().store, _owner()):
            return journey_body(event, customer_id, journey_id, resume_at, mode, label, unit_id)

    def merge(summary: dict, part: dict) -> dict:
        summary["completed"] = summary.get("completed", 0) + part["completed"]
        summary["open"] = part["open"]
        summary["journey_status"] = part.get("journey_status")
        return summary

    def drive_wave(unit_id: str, journey_id: str, params: dict) -> dict:
        """Walk a wave unit's members on from where each one stands (all at the start for a
        fresh wave of a fan-out), then finish the unit."""
        summary = {"completed": 0, "open": 0, "redriven": 0}
        groups = split(name, journey_id, unit_id)
        verb = "drove" if params.get("fresh") else "re-driven"
        reason = f"{verb} {sum(g['members'] for g in groups)} member(s)"
        released = False
        for index, group in enumerate(groups):
            last = index == len(groups) - 1  # its finish releases the unit
            part = drive(group["wave"], group["pointer"], group["mode"], journey_id,
                         release=(unit_id, reason) if last else None)
            released = bool(part.get("released"))
            merge(summary, part)
            summary["redriven"] += group["members"]
        if not released:  # no member left in it, or the last group was stranded
            complete(name, unit_id, reason)
        return summary

    def journey_body(event, customer_id, journey_id, resume_at, mode, label, unit_id) -> dict:
        # the file's touch point; one removed from it runs on the version it was compiled from
        tp = current_engine().config.touchpoints.get(name) or touchpoint
        with TagsContext(current_tags=set()):  # tags tag the run, not every task run in it
            if unit_id is not None:
                held = acquire(name, unit_id)
                if not held["acquired"]:
                    return {"skipped": f"unit {unit_id} is done or held by a live run"}
                if held["kind"] == "wave":  # a wave of a fan-out, or one whose run died
                    journey_id = held["journey_id"]
                    return conclude(journey_id, drive_wave(unit_id, journey_id, held["params"]))
            if journey_id is None:
                if event is None and tp.trigger.kind == "schedule":
                    event = _scheduled_event(name)
                entered = enter(name, event or {}, customer_id, unit_id, label)
                if entered["journey_id"] is None:
                    if unit_id is not None:
                        complete(name, unit_id, f"not started: {entered['refused']}")
                    summary = {"started": False, "refused": entered["refused"]}
                    report(name, None, summary)
                    return summary
                journey_id, wave = entered["journey_id"], entered["wave"]
                summary = drive(wave, None, "at", journey_id)
                if not served():  # no dispatch loop here to launch the other waves: drive them
                    for extra in entered.get("waves", [])[1:]:
                        held = acquire(name, extra)
                        if held["acquired"]:
                            merge(summary, drive_wave(extra, journey_id, held["params"]))
            else:
                claimed = resume(name, journey_id, resume_at, mode, unit_id, label)
                if not claimed["members"]:
                    return {"resumed": 0, "journey_id": journey_id}
                summary = drive(claimed["wave"], claimed.get("pointer", resume_at), mode,
                                journey_id)
            return conclude(journey_id, summary)

    from flows.engine.entry import ident

    journey.__name__ = journey.__qualname__ = ident(name)
    journey.__module__ = "flows.engine.entry"  # served deployments load it from there
    flow = Flow(fn=journey, name=name, description=touchpoint.description.strip(),
                flow_run_name=_run_name, validate_parameters=False, persist_result=False,
                log_prints=False)
    _FLOWS[name] = flow
    return flow


def forget_compiled() -> None:
    """Drop compiled flows (after the config changed)."""
    _FLOWS.clear()
