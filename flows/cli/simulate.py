"""`touchpoints simulate NAME --customer ID [--event ...] [--answer ...] [--format text|json]
[--until 90d] [--start ISO] [--data JSON]`: a journey on a virtual clock, sending nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer

from flows.cli._common import out, parse_json_option
from flows.errors import TouchpointsError


def _start(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise TouchpointsError(f"--start {value!r} is not an ISO date and time",
                               hint="e.g. --start 2026-11-24T10:00:00+00:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def simulate_command(
    name: Annotated[str, typer.Argument(help="The touch point.", show_default=False)],
    customer: Annotated[str, typer.Option("--customer", "-c", help="The customer id.",
                                          show_default=False)],
    event: Annotated[list[str] | None, typer.Option(
        "--event", help="An event on the way: TYPE@+OFFSET={json}, e.g. "
                        "'install.completed@+3d={\"job_id\": \"JOB-55812\"}' (repeatable); the data "
                        "is laid over the catalogue's example. task.completed and "
                        "task.acknowledged complete the journey's open task.",
        show_default=False)] = None,
    answer: Annotated[list[str] | None, typer.Option(
        "--answer", help="A survey answer: KEY=VALUE@+OFFSET, KEY a survey step id or "
                         "nps/csat, e.g. 'nps=3@+2d' (repeatable).", show_default=False)] = None,
    fmt: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
    until: Annotated[str, typer.Option("--until", help="How long to simulate.")] = "90d",
    start: Annotated[str | None, typer.Option(
        "--start", help="Virtual start time, ISO (default: now; a date trigger's moment).",
        show_default=False)] = None,
    data: Annotated[str | None, typer.Option(
        "--data", help="The trigger event's data as JSON, laid over the catalogue's example.",
        show_default=False)] = None,
) -> None:
    """Run a touch point for one customer on a virtual clock, against a throwaway copy of the
    store: the real steps, waits, send windows, branches, entry rules and holds, but nothing
    is sent and no Prefect run is made. Prints the timeline."""
    from flows.durations import parse_duration
    from flows.engine.core import current_engine
    from flows.engine.simtimeline import render_text
    from flows.engine.simulate import simulate

    if fmt not in ("text", "json"):
        raise TouchpointsError(f"--format {fmt!r} is not text or json", hint="--format json")
    try:
        horizon = parse_duration(until)
    except ValueError as exc:
        raise TouchpointsError(f"--until: {exc}", hint="e.g. --until 30d") from None
    engine = current_engine()
    timeline, _ = simulate(engine, name, customer, events=list(event or []),
                           answers=list(answer or []), until=horizon, start=_start(start),
                           data=parse_json_option(data, "--data"))
    if fmt == "json":
        out.print_json(json.dumps(timeline.as_list(), ensure_ascii=False))
        return
    title = f"{name} for {customer}, simulated for {until} (nothing is sent)"
    out.print(render_text(timeline, title=title), markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate_command)
