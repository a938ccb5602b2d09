"""touchpoints journeys retry (also `touchpoints retry`): run failed members again, from where
they failed, once the cause is fixed."""

from __future__ import annotations

import json

import typer

from flows.cli._common import cli_actor, out


def register(app: typer.Typer) -> None:
    from flows.cli.journeys import journeys_app

    app.command("retry")(retry)
    journeys_app.command("retry")(retry)


def retry(name: str = typer.Argument(..., help="Touch point name."),
          customer: str | None = typer.Option(None, "--customer", "-c",
                                              help="Only this customer's failed members."),
          journey: str | None = typer.Option(None, "--journey", "-j",
                                             help="Only this journey's failed members."),
          local: bool | None = typer.Option(None, "--local/--queue",
                                            help="Run them here and now (default when no "
                                                 "service runs), or leave them queued for "
                                                 "the running service."),
          as_json: bool = typer.Option(False, "--json")) -> None:
    """Run the failed members of a touch point again, each from the step it failed at."""
    from flows.cli.remote import find_service
    from flows.engine.core import current_engine
    from flows.engine.launch import InProcessLauncher
    from flows.engine.redrive import launch_unit
    from flows.engine.retry import queued_units, retry_failed
    from flows.settings import get_settings

    engine = current_engine()
    result = retry_failed(engine, name, customer_id=customer, journey_id=journey,
                          actor=cli_actor())
    here = local if local is not None else find_service(get_settings()) is None
    runs = []
    if here:
        launcher = InProcessLauncher()
        for unit in queued_units(engine, result.units):
            runs.append(launch_unit(launcher, unit) or {})
    answer = {**result.as_dict(), "ran_here": here, "runs": runs}
    if as_json:
        out.print_json(json.dumps(answer, default=str))
        return
    for journey_id, why in result.skipped.items():
        out.print(f"[dim]not retried: journey {journey_id[:12]}: {why}[/]")
    if not result.members:
        out.print(f"no failed members in {name}"
                  + (f" for customer {customer}" if customer else "")
                  + (f" in journey {journey}" if journey else ""))
        return
    out.print(f"retrying {result.members} member(s) of [bold]{name}[/] in "
              f"{len(result.journeys)} journey(s)")
    if here:
        done = sum(int(r.get("completed") or 0) for r in runs)
        out.print(f"ran {len(runs)} resume run(s) here: {done} member(s) completed")
    else:
        out.print("queued: the running service launches them")
