"""`touchpoints check` and `touchpoints schema`."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer


class Format(str, Enum):
    text = "text"
    json = "json"


def check_command(
    file: Annotated[Path | None, typer.Option(
        "--file", "-f", help="The touch-point file (default: TOUCHPOINTS_CONFIG_FILE, "
                             "else touchpoints.yaml).")] = None,
    output: Annotated[Format, typer.Option("--format", help="text, or json for tools.")] =
        Format.text,
) -> None:
    """Check touchpoints.yaml and its templates; list every problem with its line."""
    from flows.config import check_file
    from flows.errors import ConfigError
    from flows.settings import get_settings

    path = file if file is not None else get_settings().config_file
    result = check_file(path)
    if output is Format.json:
        typer.echo(json.dumps([d.to_dict() for d in result.diagnostics], indent=2))
    elif result.ok:
        config = result.config
        typer.echo(f"OK: {path}: {len(config.touchpoints)} touch points, "
                   f"{config.step_count()} steps, {len(config.teams)} teams, "
                   f"{len(config.categories)} categories, {len(config.event_types())} event types")
        from flows.engine.inflight import check_lines  # journeys the edit affects, if a store

        for line in check_lines(config, path, get_settings()):
            typer.echo(line)
    else:
        for diagnostic in result.diagnostics:
            typer.echo(diagnostic.format())
    if not result.ok:
        count = len(result.diagnostics)
        # raised, not typer.Exit: flows.cli.main turns it into exit code 1 and a hint
        raise ConfigError(result.diagnostics,
                          message=f"{count} problem{'s' if count != 1 else ''} in {path}")


def schema_command(
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write to this file (e.g. touchpoints.schema.json) instead of "
                               "standard output.")] = None,
) -> None:
    """Print the JSON Schema of touchpoints.yaml (every registered step kind included)."""
    from flows.config.schema import build_schema_for
    from flows.errors import TouchpointsError
    from flows.settings import get_settings

    text = json.dumps(build_schema_for(get_settings().config_file), indent=2,
                      ensure_ascii=False) + "\n"
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise TouchpointsError(f"cannot write {output}: {exc.strerror or exc}",
                               hint="pass a writable path with -o") from exc
    typer.echo(f"wrote {output}", err=True)


def register(app: typer.Typer) -> None:
    app.command("check")(check_command)
    app.command("schema")(schema_command)
