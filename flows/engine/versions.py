"""Touch point versions: every journey finishes on the definition it started on.

A *version* is a touch point's definition (the mapping an ops lead wrote under
``touchpoints.<name>``) plus the sources of the templates it uses (its own, and those they
include), content-addressed: ``digest`` is the sha256 of their canonical JSON. A journey stores
its version when it starts (:func:`pin`, one row per version in ``touchpoint_versions``), and a
run that resumes it uses that version (:func:`for_journey`): the touch point rebuilt from the
stored definition, rendered with the stored templates. Moving journeys to a newer version on
purpose is :mod:`flows.engine.migration`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import weakref
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, DictLoader, meta
from jinja2 import TemplateError as JinjaTemplateError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from flows.config.definitions import canonical_json, definition, rebuild
from flows.config.models import iter_steps
from flows.config.parsing import iter_marked
from flows.store.tables import Journey, TouchpointVersion
from flows.templating import HTML_SUFFIX, TEXT_SUFFIX, Renderer, make_environment

log = logging.getLogger("touchpoints.engine")
SHORT = 12


def short(digest: str | None) -> str:
    return (digest or "unknown")[:SHORT]


@dataclass(frozen=True)
class Version:
    touchpoint: str
    digest: str
    definition: dict[str, Any]
    templates: dict[str, str]
    #: (path, mtime_ns, size) of each template file read: the cache key of the current version
    stamp: tuple = ()


@dataclass
class Pinned:
    """What a run of one journey uses: the touch point model and the renderer of its version."""

    touchpoint: Any
    renderer: Renderer | None = None      # None: the engine's own (the current templates)
    digest: str | None = None
    current: bool = True
    #: why the journey runs on the current version although it started on another
    missing: str = ""
    started: datetime | None = field(default=None, compare=False)


# ---------------------------------------------------------------------- the current version
def template_names(touchpoint) -> list[str]:
    """The template names (without suffix) the touch point's steps use, in document order."""
    names: list[str] = []
    for step in iter_steps(touchpoint.steps):
        for _, marker, value in iter_marked(step, ()):
            if marker == "template" and value not in names:
                names.append(value)
    return names


def _read_templates(templates_dir: Path, names: list[str]) -> tuple[dict[str, str], tuple]:
    """The sources of the templates and of every template they include, extend or import."""
    env = make_environment()
    sources: dict[str, str] = {}
    stamp: list[tuple] = []
    todo = [f"{n}{suffix}" for n in names for suffix in (TEXT_SUFFIX, HTML_SUFFIX)]
    while todo:
        relative = todo.pop(0)
        if relative in sources:
            continue
        path = templates_dir / relative
        try:
            info = os.stat(path)
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            stamp.append((relative, None, None))  # `touchpoints check` reports it
            continue
        sources[relative] = text
        stamp.append((relative, info.st_mtime_ns, info.st_size))
        try:
            todo += [r for r in meta.find_referenced_templates(env.parse(text)) if r]
        except JinjaTemplateError:
            continue
    return sources, tuple(stamp)


def _stamp_of(templates_dir: Path, stamp: tuple) -> tuple:
    fresh = []
    for relative, _, _ in stamp:
        try:
            info = os.stat(templates_dir / relative)
            fresh.append((relative, info.st_mtime_ns, info.st_size))
        except OSError:
            fresh.append((relative, None, None))
    return tuple(fresh)


def digest_of(data: dict[str, Any], templates: dict[str, str]) -> str:
    payload = canonical_json({"definition": data, "templates": templates})
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def build_version(touchpoint, templates_dir: Path) -> Version | None:
    """The version of ``touchpoint`` as loaded, with the templates now on disk; None when the
    model was not built from a file (it has no definition to store)."""
    data = definition(touchpoint)
    if data is None:
        return None
    templates, stamp = _read_templates(Path(templates_dir), template_names(touchpoint))
    return Version(touchpoint=touchpoint.name, digest=digest_of(data, templates),
                   definition=data, templates=templates, stamp=stamp)


class _EngineCache:
    """Per engine (so per process): current versions, versions stored, versions rebuilt."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.current: dict[str, tuple[Any, Version | None]] = {}
        self.stored: set[str] = set()
        self.pinned: dict[str, Pinned | None] = {}


_caches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


def _cache(engine) -> _EngineCache:
    with _caches_lock:
        cache = _caches.get(engine)
        if cache is None:
            cache = _caches[engine] = _EngineCache()
        return cache


def current_version(engine, name: str) -> Version | None:
    """The version the engine runs for touch point ``name`` now (cached; a template edited on
    disk makes a new one)."""
    touchpoint = engine.config.touchpoints.get(name)
    if touchpoint is None:
        return None
    cache = _cache(engine)
    templates_dir = Path(engine.settings.templates_dir)
    with cache.lock:
        held = cache.current.get(name)
    if held is not None and held[0] is touchpoint and (
            held[1] is None or _stamp_of(templates_dir, held[1].stamp) == held[1].stamp):
        return held[1]
    version = build_version(touchpoint, templates_dir)
    with cache.lock:
        cache.current[name] = (touchpoint, version)
    return version


def store_version(session, version: Version, *, now: datetime | None = None) -> None:
    """Insert the version row unless it is there (concurrent starters race safely)."""
    if session.scalar(select(TouchpointVersion.digest).where(
            TouchpointVersion.digest == version.digest)) is not None:
        return
    row = TouchpointVersion(digest=version.digest, touchpoint=version.touchpoint,
                            definition=version.definition, templates=version.templates)
    if now is not None:
        row.created_at = now
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:  # another process stored it first: the same content
        pass


def pin(session, engine, touchpoint, *, now: datetime | None = None) -> str | None:
    """The digest a journey starting now records; its version row is stored once per engine."""
    version = current_version(engine, touchpoint.name)
    if version is None:
        return None
    cache = _cache(engine)
    if version.digest not in cache.stored:
        store_version(session, version, now=now)
        with cache.lock:
            cache.stored.add(version.digest)
    return version.digest


# ---------------------------------------------------------------------- a journey's version
def pinned_renderer(templates_dir: Path, templates: dict[str, str]) -> Renderer:
    """A renderer that reads the stored sources first (the disk only for anything not stored)."""
    renderer = Renderer(templates_dir)
    renderer.env.loader = ChoiceLoader([DictLoader(dict(templates)), renderer.env.loader])
    return renderer


def load_version(engine, session, digest: str) -> Pinned | None:
    """The stored version ``digest`` as a runnable touch point, or None if it is not stored or
    no longer parses (cached per engine)."""
    cache = _cache(engine)
    with cache.lock:
        if digest in cache.pinned:
            return cache.pinned[digest]
    row = session.get(TouchpointVersion, digest)
    pinned = None
    if row is not None:
        try:
            touchpoint = rebuild(row.touchpoint, dict(row.definition or {}))
            pinned = Pinned(touchpoint=touchpoint, digest=digest, current=False,
                            renderer=pinned_renderer(engine.settings.templates_dir,
                                                     dict(row.templates or {})),
                            started=row.created_at)
        except Exception as exc:  # noqa: BLE001 - a version that no longer parses is "missing"
            log.warning("touch point version %s of %s no longer parses: %s", short(digest),
                        row.touchpoint, exc)
    if pinned is not None or row is not None:
        with cache.lock:
            cache.pinned[digest] = pinned
    return pinned


def for_journey(engine, session, journey: Journey | str) -> Pinned:
    """The touch point (and renderer) a run of ``journey`` uses: its own version when that is
    not the current one and is stored; else the current touch point (``missing`` says why)."""
    if isinstance(journey, str):
        journey = session.get(Journey, journey)
    current = engine.config.touchpoints.get(journey.touchpoint)
    if journey.version and current is not None:
        version = current_version(engine, journey.touchpoint)
        if version is not None and version.digest == journey.version:
            return Pinned(touchpoint=current, digest=journey.version)
    pinned = load_version(engine, session, journey.version) if journey.version else None
    if pinned is not None:
        return pinned
    if current is None:  # neither the touch point nor its version: say so, name the fix
        engine.touchpoint(journey.touchpoint)
    if not journey.version:
        return Pinned(touchpoint=current, missing="it started before versions were kept")
    return Pinned(touchpoint=current, digest=journey.version,
                  missing=f"its version {short(journey.version)} is not in the store (or no "
                          "longer parses)")


# ---------------------------------------------------------------------- touch points removed
def retired(engine, session, name: str) -> Pinned | None:
    """A touch point no longer in touchpoints.yaml whose journeys are still in flight: the
    stored version of its latest such journey (each journey still runs on its own, through
    :func:`for_journey`); None when it is in the file, has no journey in flight, or none of
    their versions is stored."""
    if name in engine.config.touchpoints:
        return None
    digests = session.scalars(select(Journey.version).where(
        Journey.touchpoint == name, Journey.status == "active", Journey.version.is_not(None))
        .group_by(Journey.version).order_by(func.max(Journey.started_at).desc())).all()
    for digest in digests:
        pinned = load_version(engine, session, digest)
        if pinned is not None:
            return pinned
    return None


def retired_names(engine, session) -> list[str]:
    """The touch points with journeys in flight that touchpoints.yaml no longer has."""
    names = session.scalars(select(Journey.touchpoint).where(Journey.status == "active")
                            .group_by(Journey.touchpoint)).all()
    return sorted(n for n in names if n not in engine.config.touchpoints)


def runnable(engine, name: str):
    """The touch point model a run of ``name`` compiles from: the file's, or for one removed
    from the file while journeys are in flight, its stored version. Raises
    :class:`flows.errors.NotFoundError` when there is neither."""
    if name in engine.config.touchpoints:
        return engine.config.touchpoints[name]
    with engine.store.read_session() as session:
        pinned = retired(engine, session, name)
    if pinned is None:
        return engine.touchpoint(name)  # raises, naming the touch points there are
    return pinned.touchpoint
