"""Import path of the compiled flows, so a Prefect runner can load them in a fresh process.

A served deployment's entrypoint is ``flows.engine.entry.<ident>``, where ``ident`` is the
touch point name with ``-`` replaced by ``_``. Looking the attribute up compiles the flow from
touchpoints.yaml (module ``__getattr__``, PEP 562), or, for a touch point removed from the file
while journeys of it are in flight, from its stored version.
"""

from __future__ import annotations

import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """SIGKILL this process the moment its parent dies. SIGTERM is not enough: a Prefect
    runner given SIGTERM lets its flow runs go on sending for seconds. Served flow-run processes
    call this when they load (below), so a SIGKILLed serve takes every sender with it."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the supervisor still stops children on exit
        pass


if os.environ.get("TOUCHPOINTS_SERVED") == "1":  # a runner or its flow-run process
    die_with_parent()
    if os.getppid() == 1:  # the parent died before we could ask: do not start sending
        os._exit(1)


def ident(touchpoint_name: str) -> str:
    return touchpoint_name.replace("-", "_")


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    from flows.engine.compiler import compile_touchpoint
    from flows.engine.core import current_engine

    engine = current_engine()
    for touchpoint in engine.config.touchpoints.values():
        if ident(touchpoint.name) == name:
            return compile_touchpoint(touchpoint)
    from flows.engine.versions import retired, retired_names

    with engine.store.read_session() as session:  # removed from the file, journeys in flight
        for retired_name in retired_names(engine, session):
            if ident(retired_name) == name and (
                    pinned := retired(engine, session, retired_name)) is not None:
                return compile_touchpoint(pinned.touchpoint)
    raise AttributeError(f"no touch point compiles to {name!r}")
