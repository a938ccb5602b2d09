"""touchpoints report: how the touch points, teams and surveys are doing (SQL aggregates)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer

from flows.cli._common import out, settings


def _since(value: str | None) -> datetime | None:
    from flows.errors import TouchpointsError

    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise TouchpointsError(f"--since {value!r} is not a date",
                               hint="give it as YYYY-MM-DD, e.g. --since 2026-11-01") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _config():
    """touchpoints.yaml names the outage steps; a file that does not load leaves that section
    out (``touchpoints check`` says what is wrong) rather than the whole report."""
    from flows.config import load_config_fast
    from flows.errors import TouchpointsError

    try:
        return load_config_fast(settings().config_file)
    except TouchpointsError as exc:
        typer.echo(f"warning: no outage figures: {exc.message}", err=True)
        return None


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(
        fmt: Annotated[str, typer.Option("--format", "-f", help="text, json or csv.")] = "text",
        since: Annotated[str | None, typer.Option("--since", help="Only from this date.")] = None,
        touchpoint: Annotated[str | None, typer.Option(
            "--touchpoint", "-t", help="Only this touch point.")] = None,
    ) -> None:
        """How are we doing? Journeys, emails, NPS/CSAT, detractors, team SLAs, outage notices and
        weekly trends."""
        from flows.errors import TouchpointsError
        from flows.reports import holdouts
        from flows.reports.formats import to_csv, to_text
        from flows.reports.queries import build
        from flows.store.db import open_store

        if fmt not in ("text", "json", "csv"):
            raise TouchpointsError(f"unknown --format {fmt!r}", hint="use text, json or csv")
        config = _config()
        with open_store(settings()).read_session() as session:
            data = build(session, since=_since(since), touchpoint=touchpoint, config=config)
            data["holdouts"] = holdouts.effects(session, since=_since(since), touchpoint=touchpoint)
        if fmt == "json":
            out.print_json(json.dumps(data, ensure_ascii=False))
        elif fmt == "csv":
            print(to_csv(data), end="")
        else:
            out.print(to_text(data) + holdouts.to_text(data["holdouts"]), markup=False)
