"""Import path of the compiled flows, so a Prefect runner can load them in a fresh process.

A served deployment's entrypoint is ``flows.engine.entry.<ident>``, where ``ident`` is the
touch point name with ``-`` replaced by ``_``. Looking the attribute up compiles the flow from
touchpoints.yaml (module ``__getattr__``, PEP 562).
"""

from __future__ import annotations


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
    raise AttributeError(f"no touch point compiles to {name!r}")
