"""touchpoints deploy: register every touch point once, to a Prefect process work pool."""

from __future__ import annotations

import os

import typer

from flows.cli._common import out, settings


def register(app: typer.Typer) -> None:
    @app.command()
    def deploy(pool: str = typer.Option(None, "--pool", help="The process work pool "
                                        "(default TOUCHPOINTS_WORK_POOL, else 'touchpoints').")) -> None:
        """Register every enabled touch point as a deployment on a Prefect process work pool,
        for `touchpoints serve --roles worker` instances to run. Safe to run again after a
        change: existing deployments are updated in place."""
        from flows.engine.core import current_engine
        from flows.errors import ServiceError
        from flows.service.pools import deploy as deploy_all

        if not os.environ.get("PREFECT_API_URL"):
            raise ServiceError("no Prefect server to deploy to",
                               hint="set PREFECT_API_URL=http://HOST:4200/api (the shared "
                                    "server), or start `touchpoints serve` here first")
        name = pool or settings().work_pool or "touchpoints"
        names = deploy_all(current_engine(), name)
        out.print(f"deployed {len(names)} touch point(s) to the work pool [bold]{name}[/] "
                  f"at {os.environ['PREFECT_API_URL']}:")
        for deployment in names:
            out.print(f"  {deployment}")
        out.print(f"start workers with: TOUCHPOINTS_WORK_POOL={name} touchpoints serve --roles worker")
