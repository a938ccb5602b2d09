"""Helpers shared by the command modules."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from flows.settings import Settings, get_settings

out = Console(highlight=False, soft_wrap=True)


def settings(config_file: Path | None = None) -> Settings:
    s = get_settings()
    if config_file is not None:
        s = s.model_copy(update={"config_file": config_file})
    return s


def cli_actor() -> str:
    """Audit actor for commands typed by a person."""
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = "unknown"
    return f"cli:{user}"


def parse_json_option(value: str | None, option: str) -> dict[str, Any]:
    from flows.errors import TouchpointsError

    if not value:
        return {}
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise TouchpointsError(f"{option} is not valid JSON: {exc.msg} at column {exc.colno}",
                               hint=f"""quote it for the shell, e.g. {option} '{{"regions": ["north"]}}'""") from exc
    if not isinstance(data, dict):
        raise TouchpointsError(f"{option} must be a JSON object", hint=f"""e.g. {option} '{{"key": "value"}}'""")
    return data
