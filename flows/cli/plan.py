"""touchpoints plan."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from flows.cli._common import out


def register(app: typer.Typer) -> None:
    @app.command()
    def plan(name: Optional[str] = typer.Argument(None, help="Touch point (default: all)."),
             mermaid: bool = typer.Option(False, "--mermaid", help="A Mermaid flowchart."),
             file: Optional[Path] = typer.Option(None, "-f", "--file", help="The touch-point file.")) -> None:
        """Print the compiled plan: trigger, audience, entry rule, steps, waits and branches."""
        from flows.config import load_config
        from flows.engine.plan import plan_mermaid, plan_text
        from flows.settings import get_settings

        config = load_config(file or get_settings().config_file)
        touchpoints = [config.touchpoint(name)] if name else list(config.touchpoints.values())
        render = plan_mermaid if mermaid else plan_text
        out.print("\n\n".join(render(tp) for tp in touchpoints), markup=False, highlight=False)
