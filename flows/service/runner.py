"""The runner process of `touchpoints serve`: serves every touch point as a deployment.

Run as ``python -m flows.service.runner``; PREFECT_API_URL and TOUCHPOINTS_* come from the
supervisor. Flow runs execute in child processes that load flows from flows.engine.entry:
forked warm from a fork server this process starts before serving (flows/service/warmruns.py),
or, with ``TOUCHPOINTS_WARM_RUNS=0``, a fresh ``python -m prefect.engine`` each.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    from flows.prefect_env import configure
    from flows.settings import get_settings

    configure(get_settings())
    os.environ["TOUCHPOINTS_SERVED"] = "1"
    from prefect import serve

    from flows.engine.core import current_engine
    from flows.service import warmruns
    from flows.service.deployments import build_deployments

    engine = current_engine()
    if warmruns.enabled():
        warmruns.preload(engine)
        if warmruns.start(engine) is not None:  # a forked flow run never returns from here
            warmruns.use_launcher()
    deployments = build_deployments(engine)
    serve(*deployments, print_starting_message=False, limit=int(os.environ.get("TOUCHPOINTS_RUN_LIMIT", "4")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
