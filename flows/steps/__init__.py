"""The step registry.

Built-in kinds are the modules of this package; each registers itself on import. Kinds in
other installed packages register through the entry-point group ``touchpoints.steps``: the entry
point names a module (or a callable) that calls :func:`register`.
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points

from flows.steps.base import StepConfig, StepKind

ENTRY_POINT_GROUP = "touchpoints.steps"
_REGISTRY: dict[str, StepKind] = {}
_loaded = False
_NOT_KINDS = {"base"}


def register(kind: StepKind) -> StepKind:
    """Add a step kind. Registering the same name twice from different code is an error."""
    existing = _REGISTRY.get(kind.name)
    if existing is not None and existing.config is not kind.config:
        raise ValueError(f"step kind {kind.name!r} is registered twice "
                         f"({existing.origin} and {kind.origin})")
    annotation = kind.config.model_fields["kind"].annotation
    allowed = getattr(annotation, "__args__", ())
    if allowed != (kind.name,):
        raise ValueError(f"{kind.config.__name__}.kind must be Literal[{kind.name!r}]")
    kind.config.step_kind = kind
    _REGISTRY[kind.name] = kind
    return kind


def load() -> dict[str, StepKind]:
    """Import the built-in kinds and the installed plugins (once)."""
    global _loaded
    if not _loaded:
        _loaded = True
        for info in pkgutil.iter_modules(__path__):
            if info.name not in _NOT_KINDS and not info.name.startswith("_"):
                importlib.import_module(f"{__name__}.{info.name}")
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            obj = ep.load()
            if callable(obj) and not isinstance(obj, type):
                obj()
    return _REGISTRY


def kinds() -> dict[str, StepKind]:
    """Every registered kind, sorted by name."""
    return dict(sorted(load().items()))


def get(name: str) -> StepKind | None:
    return load().get(name)


__all__ = ["ENTRY_POINT_GROUP", "StepConfig", "StepKind", "get", "kinds", "load", "register"]
