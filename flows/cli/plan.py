"""`touchpoints plan [NAME] [--mermaid] [-f FILE]`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli._common import out


def plan_command(
    name: Annotated[str | None, typer.Argument(
        help="The touch point (default: every one).", show_default=False)] = None,
    mermaid: Annotated[bool, typer.Option(
        "--mermaid", help="A Mermaid flowchart instead of text.")] = False,
    file: Annotated[Path | None, typer.Option(
        "--file", "-f", help="The touch-point file (default: TOUCHPOINTS_CONFIG_FILE, else "
                             "touchpoints.yaml).")] = None,
) -> None:
    """Print what a touch point compiles to: its Prefect flow, trigger, audience, entry rule
    and steps, with waits (⏸) and branches (⑂) marked."""
    from flows.config import load_config
    from flows.engine.plan import render_plans
    from flows.settings import get_settings

    config = load_config(file if file is not None else get_settings().config_file)
    out.print(render_plans(config, name, mermaid=mermaid), markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("plan")(plan_command)
