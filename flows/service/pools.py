"""Touch points on a Prefect process work pool: `touchpoints deploy` registers each one once,
and the ``worker`` role of `serve` runs a Prefect process worker that pulls their runs.

A deployment's entrypoint is a module path (``flows.engine.entry.<ident>``), so a worker on any
machine with Touchpoints installed and the same ``TOUCHPOINTS_CONFIG_FILE`` can load it; the
worker's environment (store URL, secret key) is passed on to every flow run it starts.
Deployments keep the names the launcher uses (``<touchpoint>/<touchpoint>``), so intake and
housekeeping do not care whether a runner or a pool runs them.
"""

from __future__ import annotations

import logging

from flows.errors import ServiceError

log = logging.getLogger("touchpoints.service")


def ensure_pool(name: str, *, concurrency: int | None = None) -> bool:
    """Create the process work pool if it does not exist; True when it was created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            pool = None
        if pool is not None:
            if pool.type != "process":
                raise ServiceError(f"the work pool {name!r} is of type {pool.type!r}, not 'process'",
                                   hint="choose another TOUCHPOINTS_WORK_POOL, or delete that pool")
            return False
        try:
            client.create_work_pool(WorkPoolCreate(name=name, type="process",
                                                   concurrency_limit=concurrency,
                                                   description="Touchpoints journeys"))
        except ObjectAlreadyExists:  # another instance created it meanwhile
            return False
        return True


def deploy(engine, pool: str) -> list[str]:
    """Register every enabled touch point to ``pool`` (created if missing); an existing
    deployment is updated in place, so deploying again is safe. Returns the deployment names."""
    from prefect.deployments.runner import deploy as prefect_deploy

    from flows.service.deployments import build_deployments, deployment_name

    from flows.service.zombies import ensure_automation_sync

    ensure_pool(pool)
    ensure_automation_sync()  # Prefect sets a run Crashed when its heartbeats stop
    deployments = build_deployments(engine)
    if not deployments:
        return []
    prefect_deploy(*deployments, work_pool_name=pool, build=False, push=False,
                   print_next_steps_message=False, ignore_warnings=True)
    return [deployment_name(d.name) for d in deployments]


def worker_args(pool: str, *, limit: int, name: str) -> list[str]:
    """The command line of a Prefect process worker for ``pool``."""
    from flows.service.processes import python_module

    return python_module("prefect", "worker", "start", "--pool", pool, "--type", "process",
                         "--limit", str(limit), "--name", name)
