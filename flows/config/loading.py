"""Loading touchpoints.yaml for runs: a fast parse, cached per process and per file version.

The full check (references, every template compiled and rendered against samples) belongs to
`touchpoints check` and to the start of `serve`; a flow run in a runner child only needs the
parsed models and steps. :func:`load_config_fast` parses once per version of the file, a
version being its path, mtime, size and the listing (names, mtimes, sizes) of its templates
folder, so an edit to either is picked up on the next load. The YAML is read by libyaml
(:mod:`flows.config.yamlfast`, as in every check); a file it is unsure of is read the careful
way.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from flows.config.checker import _read, check_text
from flows.config.diagnostics import Positions, locate
from flows.config.models import ConfigFile
from flows.errors import ConfigError

_lock = threading.Lock()
_cache: dict[str, tuple[tuple, ConfigFile]] = {}


def _templates_listing(folder: Path) -> str:
    digest = hashlib.sha256()
    try:
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                stat = os.stat(os.path.join(root, name))
                digest.update(f"{root}/{name}:{stat.st_mtime_ns}:{stat.st_size}\n".encode())
    except OSError:
        pass
    return digest.hexdigest()


def file_version(path: str | Path) -> tuple:
    """What identifies one version of the file and its templates (raises OSError if missing)."""
    path = Path(path).resolve()
    stat = path.stat()
    return (str(path), stat.st_mtime_ns, stat.st_size, _templates_listing(path.parent / "templates"))


def load_config_fast(path: str | Path) -> ConfigFile:
    """The parsed file without the template check, cached per process and file version;
    raises :class:`flows.errors.ConfigError` if it does not even parse (run
    `touchpoints check` for the full report)."""
    path = Path(path)
    try:
        version = file_version(path)
    except OSError:
        version = None
    if version is not None:
        with _lock:
            hit = _cache.get(version[0])
        if hit is not None and hit[0] == version:
            return hit[1]
    text, problem = _read(path)
    if problem is not None:
        raise ConfigError([locate(problem, file=str(path), positions=Positions())])
    result = check_text(text, file=str(path), templates_dir=path.parent / "templates", full=False)
    if result.diagnostics or result.config is None:
        raise ConfigError(result.diagnostics)
    if version is not None:
        with _lock:
            _cache[version[0]] = (version, result.config)
    return result.config


def forget_loaded() -> None:
    """Drop every cached config (tests)."""
    with _lock:
        _cache.clear()
