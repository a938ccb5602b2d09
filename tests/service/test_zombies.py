"""Prefect's own zombie detection is set up on the Prefect server next to our leases: a flow
run whose heartbeats stop without a final state is set Crashed by an automation."""

from __future__ import annotations

from datetime import timedelta

import pytest

from flows.service import zombies


def test_the_automation_crashes_a_run_90_seconds_after_its_last_heartbeat():
    from prefect.client.schemas.objects import StateType
    from prefect.events.schemas.automations import Posture

    made = zombies.automation()
    trigger, (action,) = made.trigger, made.actions
    assert trigger.after == {"prefect.flow-run.heartbeat"}
    assert trigger.expect == {"prefect.flow-run.heartbeat", "prefect.flow-run.Completed",
                              "prefect.flow-run.Failed", "prefect.flow-run.Cancelled",
                              "prefect.flow-run.Crashed"}
    assert trigger.posture == Posture.Proactive and trigger.within == timedelta(seconds=90)
    assert trigger.for_each == {"prefect.resource.id"}
    assert action.type == "change-flow-run-state" and action.state == StateType.CRASHED
    # heartbeats come three times within the silence that counts as dead
    assert zombies.SILENCE.total_seconds() >= 3 * zombies.HEARTBEAT_SECONDS
    assert zombies.heartbeat_env() == {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}


@pytest.mark.e2e
def test_the_automation_is_created_once_on_the_prefect_server(prefect_server):
    from prefect.client.orchestration import get_client
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def named() -> list:
        async with get_client() as client:
            return await client.read_automations_by_name(zombies.NAME)

    async def delete_all() -> None:
        async with get_client() as client:
            for found in await client.read_automations_by_name(zombies.NAME):
                await client.delete_automation(found.id)

    run_coro_as_sync(delete_all())
    assert zombies.ensure_automation_sync() is True
    assert zombies.ensure_automation_sync() is False  # a second start adds nothing
    (found,) = run_coro_as_sync(named())
    assert found.enabled and found.trigger.within == zombies.SILENCE
    assert found.actions[0].state.value == "CRASHED"
