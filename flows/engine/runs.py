"""Reading the touch points' flow runs back from Prefect's API (`touchpoints runs`)."""

from __future__ import annotations

import asyncio


def recent_runs(*, touchpoint: str | None = None, limit: int = 10) -> list[dict]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterId,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    async def read() -> list[dict]:
        async with get_client() as client:
            flow_filter = FlowFilter(name=FlowFilterName(any_=[touchpoint])) if touchpoint else None
            runs = await client.read_flow_runs(flow_filter=flow_filter, limit=limit,
                                               sort=FlowRunSort.START_TIME_DESC)
            flows = {}
            out = []
            for run in runs:
                if run.flow_id not in flows:
                    flows[run.flow_id] = (await client.read_flow(run.flow_id)).name
                tasks = await client.read_task_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
                out.append({"id": str(run.id), "flow": flows[run.flow_id], "name": run.name,
                            "state": run.state_name, "tags": sorted(run.tags),
                            "start": run.start_time,
                            "tasks": [{"name": t.name, "state": t.state_name}
                                      for t in sorted(tasks, key=lambda t: t.expected_start_time or t.created)]})
            return out

    return asyncio.run(read())
