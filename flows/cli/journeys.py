"""touchpoints journeys [list] / journeys migrate."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from flows.cli._common import cli_actor, out

journeys_app = typer.Typer(help="Journeys: where they stand, and moving them to a new version.",
                           invoke_without_command=True, no_args_is_help=False)


def _engine():
    from flows.engine.core import current_engine

    return current_engine()


def _failed_reasons(session, journey_ids: list[str]) -> dict[str, str]:
    """The reason of one failed member per journey (what `journeys` shows in its note)."""
    from sqlalchemy import select

    from flows.store.tables import Member

    if not journey_ids:
        return {}
    reasons: dict[str, str] = {}
    for journey_id, reason in session.execute(
            select(Member.journey_id, Member.reason).where(
                Member.journey_id.in_(journey_ids), Member.status == "failed")
            .order_by(Member.id)):
        reasons.setdefault(journey_id, reason or "")
    return reasons


def list_journeys(customer: str | None, touchpoint: str | None, as_json: bool) -> None:
    from flows.engine.status import journey_rows
    from flows.store.tables import Journey

    engine = _engine()
    with engine.store.session() as session:
        rows = journey_rows(session, customer_id=customer, touchpoint=touchpoint)
        ids = [r["id"] for r in rows]
        reasons = _failed_reasons(session, ids)
        versions = dict(session.query(Journey.id, Journey.version).filter(Journey.id.in_(ids))) \
            if ids else {}
    for r in rows:
        r["version"] = versions.get(r["id"])
        if r["id"] in reasons:
            r["failed_reason"] = reasons[r["id"]]
    if as_json:
        out.print_json(json.dumps(rows, default=str))
        return
    table = Table("journey", "touch point", "customer/key", "status", "members", "next")
    for r in rows:
        table.add_row(r["id"][:12], r["touchpoint"], r["customer_id"] or r["entry_key"], r["status"],
                      ", ".join(f"{k} {v}" for k, v in r["members"].items()),
                      r["next"] or "")
    out.print(table)
    for r in rows:  # in full, below the table: a reason is a sentence
        if r.get("failed_reason"):
            out.print(f"{r['id'][:12]} failed: {r['failed_reason']}", markup=False)


@journeys_app.callback()
def journeys(ctx: typer.Context,
             customer: str | None = typer.Option(None, "--customer", "-c"),
             touchpoint: str | None = typer.Option(None, "--touchpoint", "-t"),
             as_json: bool = typer.Option(False, "--json")) -> None:
    """List journeys, where their members are, and what resumes them when."""
    if ctx.invoked_subcommand is None:
        list_journeys(customer, touchpoint, as_json)


@journeys_app.command("list")
def list_command(customer: str | None = typer.Option(None, "--customer", "-c"),
                 touchpoint: str | None = typer.Option(None, "--touchpoint", "-t"),
                 as_json: bool = typer.Option(False, "--json")) -> None:
    """List journeys (the same as `touchpoints journeys`)."""
    list_journeys(customer, touchpoint, as_json)


@journeys_app.command("migrate")
def migrate_command(
        name: str = typer.Argument(..., help="Touch point name."),
        step_map: list[str] = typer.Option([], "--map", metavar="OLD=NEW",
                                           help="Move members at step OLD to step NEW "
                                                "(repeat for more steps)."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Say what would move; move nothing."),
        as_json: bool = typer.Option(False, "--json")) -> None:
    """Move the journeys in flight of a touch point to its current version (audited)."""
    from flows import clock
    from flows.engine.migration import migrate, parse_map
    from flows.engine.versions import short

    engine = _engine()
    mapping = parse_map(step_map)
    with engine.store.session() as session:
        result = migrate(engine, session, name=name, step_map=mapping, actor=cli_actor(),
                         now=clock.now(), dry_run=dry_run)
    if as_json:
        out.print_json(json.dumps({"touchpoint": result.touchpoint, "to": result.to,
                                   "journeys": result.journeys, "members": result.members,
                                   "steps": result.steps, "dry_run": dry_run}))
        return
    if not result.journeys:
        out.print(f"every journey in flight of {name} is on its current version "
                  f"{short(result.to)}: nothing to move")
        return
    verb = "would move" if dry_run else "moved"
    out.print(f"{verb} {result.journeys} journey(s) ({result.members} member(s)) of {name} to "
              f"version {short(result.to)}")
    for change, count in sorted(result.steps.items()):
        out.print(f"  {change}: {count} journey(s)")


def register(app: typer.Typer) -> None:
    app.add_typer(journeys_app, name="journeys")
