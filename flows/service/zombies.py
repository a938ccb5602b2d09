"""Prefect's own zombie detection, next to our leases.

Flow runs started from a deployment emit a ``prefect.flow-run.heartbeat`` event every
:data:`HEARTBEAT_SECONDS` (``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``, set for the runner and pool
workers). The automation :data:`NAME`, created once on the Prefect server (at `serve` start and
by `touchpoints deploy`), sets a run **Crashed** when its heartbeats stop for
:data:`SILENCE` without a final state: the recipe of Prefect's "detect zombie flows" guide.

It is the Prefect-side half of crash handling: it makes a dead run visible as Crashed in the UI
even when no Touchpoints process is alive to notice. The store's leases (flows/engine/units.py)
stay the source of truth: whichever worker or housekeeper sees a lease expired re-drives the
unit, whatever state Prefect shows.
"""

from __future__ import annotations

from datetime import timedelta

NAME = "touchpoints: crash runs whose heartbeats stopped"
#: how often a flow run says it is alive (Prefect's minimum is 30 s)
HEARTBEAT_SECONDS = 30
#: how long without a heartbeat (and without a final state) before a run is set Crashed
SILENCE = timedelta(seconds=90)
FINAL = ("Completed", "Failed", "Cancelled", "Crashed")


def heartbeat_env() -> dict[str, str]:
    """The environment a runner or worker needs for its flow runs to send heartbeats."""
    return {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS)}


def automation():
    """The automation: a proactive trigger per flow run, expecting a heartbeat or a final
    state within :data:`SILENCE` of each heartbeat; its action sets the run Crashed."""
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    return AutomationCore(
        name=NAME,
        description="Touchpoints: a flow run that stopped sending heartbeats without ending "
                    "is Crashed (its unit of work is re-driven from the store's lease).",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *(f"prefect.flow-run.{s}" for s in FINAL)},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=SILENCE),
        actions=[ChangeFlowRunState(
            state=StateType.CRASHED,
            message=f"No heartbeat for {int(SILENCE.total_seconds())} s: the process running "
                    "this flow run died. Touchpoints re-drives its unit of work.")])


async def ensure_automation() -> bool:
    """Create the automation on the current Prefect API unless one of its name exists;
    True when it was created now."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        existing = await client.read_automations_by_name(NAME)
        if existing:
            return False
        await client.create_automation(automation())
        return True


def ensure_automation_sync() -> bool:
    from prefect.utilities.asyncutils import run_coro_as_sync

    return bool(run_coro_as_sync(ensure_automation()))
