"""The definition of each touch point as the ops lead wrote it: the mapping under
``touchpoints.<name>`` in touchpoints.yaml, as plain JSON data.

The checker remembers it for every touch point it builds (:func:`remember`), so the engine can
store the exact text a journey started on (``touchpoint_versions``) and rebuild the touch point
from it later with :func:`rebuild`. Only a touch point loaded from a file has a definition.
"""

from __future__ import annotations

import json
import threading
import weakref
from datetime import date, datetime, time
from typing import Any

_lock = threading.Lock()
#: id(touch point model) -> (weak reference to it, its definition)
_definitions: dict[int, tuple[weakref.ref, dict[str, Any]]] = {}


def _plain(value: Any) -> str:
    if isinstance(value, (date, datetime, time)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not plain YAML data")


def plain(data: Any) -> Any:
    """``data`` as JSON data: YAML dates and times become ISO strings."""
    return json.loads(json.dumps(data, default=_plain, ensure_ascii=False))


def canonical_json(data: Any) -> str:
    """One spelling of ``data``: sorted keys, no spaces, UTF-8 (hashed for version digests)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _forget(key: int) -> None:
    with _lock:
        _definitions.pop(key, None)


def remember(config, data: Any) -> None:
    """Keep the definition of each touch point of ``config`` (built from the YAML ``data``)."""
    raw = data.get("touchpoints") if isinstance(data, dict) else None
    if not isinstance(raw, dict):
        return
    for name, touchpoint in config.touchpoints.items():
        if not isinstance(raw.get(name), dict):
            continue
        try:
            definition = plain(raw[name])
        except TypeError:
            continue
        key = id(touchpoint)
        with _lock:
            _definitions[key] = (weakref.ref(touchpoint), definition)
        weakref.finalize(touchpoint, _forget, key)


def definition(touchpoint) -> dict[str, Any] | None:
    """The definition ``touchpoint`` was built from, or None (a model built in code)."""
    with _lock:
        held = _definitions.get(id(touchpoint))
    if held is None or held[0]() is not touchpoint:
        return None
    return held[1]


def rebuild(name: str, data: dict[str, Any]):
    """The TouchPoint model of a stored definition; raises pydantic's ValidationError if the
    definition no longer parses (a step kind gone, a field made stricter)."""
    from flows.config.models import TouchPoint

    touchpoint = TouchPoint.model_validate(data)
    touchpoint._name = name
    return touchpoint
