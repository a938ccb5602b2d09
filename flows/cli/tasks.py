"""touchpoints tasks list / ack / complete / escalate / link / links / revoke-link."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from flows.cli._common import cli_actor, out

STATUSES = {
    None: ("open", "acknowledged"),
    "open": ("open",),
    "acknowledged": ("acknowledged",),
    "completed": ("completed",),
    "all": (),
}


def _engine():
    from flows.engine.core import current_engine

    return current_engine()


def _dispatcher(engine):
    from flows.engine.dispatch import Dispatcher
    from flows.engine.launch import InProcessLauncher

    return Dispatcher(engine, InProcessLauncher())


def _event_note(result: dict) -> None:
    event = result.get("event") or {}
    for wake in event.get("resumed", []):
        out.print(f"resumed [bold]{wake['touchpoint']}[/] journey {wake['journey_id']}")
    if result.get("event_error"):
        out.print(f"[yellow]warning:[/] the change is saved but the event was not sent: "
                  f"{result['event_error']}")


def register(app: typer.Typer) -> None:
    tasks = typer.Typer(help="Handoff tasks: list, acknowledge, complete, escalate, share.",
                        no_args_is_help=True)
    app.add_typer(tasks, name="tasks")

    @tasks.command("list")
    def list_(team: str | None = typer.Option(None, "--team", "-t", help="Only this team."),
              status: str | None = typer.Option(
                  None, "--status", "-s",
                  help="open, acknowledged, completed or all (default: open and acknowledged)."),
              as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        """List tasks, soonest due first; overdue ones are marked."""
        from flows import actions, clock
        from flows.errors import TouchpointsError

        if status not in STATUSES:
            raise TouchpointsError(f"unknown status {status!r}",
                                   hint="use open, acknowledged, completed or all")
        engine = _engine()
        if team and team not in engine.config.teams:
            raise TouchpointsError(f"unknown team {team!r}",
                                   hint="teams: " + ", ".join(engine.config.teams))
        now = clock.now()
        with engine.store.session() as session:
            rows = [{
                "id": t.id, "team": t.team, "status": t.status, "title": t.title,
                "customer_id": t.customer_id, "owner": t.owner, "due_at": t.due_at.isoformat(),
                "overdue": t.status in actions.OPEN_STATUSES and t.due_at <= now,
                "escalation_level": t.escalation_level, "touchpoint": t.touchpoint,
                "journey_id": t.journey_id, "acknowledged_by": t.acknowledged_by,
                "completed_by": t.completed_by,
            } for t in actions.list_tasks(session, team=team, statuses=STATUSES[status])]
        if as_json:
            out.print_json(json.dumps(rows, default=str))
            return
        if not rows:
            out.print("no tasks" + (f" for {team}" if team else ""))
            return
        table = Table("task", "team", "status", "due", "customer", "title")
        for r in rows:
            due = r["due_at"][:16].replace("T", " ")
            if r["overdue"]:
                due = f"[bold red]{due} OVERDUE[/]"
            table.add_row(r["id"], r["team"], r["status"], due, r["customer_id"] or "", r["title"])
        out.print(table)

    @tasks.command("ack")
    def ack(task_id: str = typer.Argument(..., metavar="ID", help="Task id, e.g. T-4be1c02a9f."),
            by: str | None = typer.Option(None, "--by", help="Who is on it (email).")) -> None:
        """Acknowledge a task ("I'm on it") and resume the journeys waiting for that."""
        from flows import actions

        engine = _engine()
        actor = cli_actor()
        result = actions.acknowledge_task(engine, _dispatcher(engine), task_id,
                                          by=by or actor.removeprefix("cli:"), actor=actor)
        out.print(f"acknowledged {task_id} ({result['title']}) as {result['acknowledged_by']}")
        _event_note(result)

    @tasks.command("complete")
    def complete(task_id: str = typer.Argument(..., metavar="ID", help="Task id."),
                 outcome: str = typer.Option(..., "--outcome", "-o",
                                             help="What was done, in plain words."),
                 by: str | None = typer.Option(None, "--by", help="Who did it (email).")) -> None:
        """Complete a task with its outcome and resume the journeys waiting for that."""
        from flows import actions

        engine = _engine()
        actor = cli_actor()
        result = actions.complete_task(engine, _dispatcher(engine), task_id,
                                       by=by or actor.removeprefix("cli:"), outcome=outcome,
                                       actor=actor)
        out.print(f"completed {task_id} ({result['title']}) as {result['completed_by']}")
        _event_note(result)

    @tasks.command("escalate")
    def escalate(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        """Email the escalation contacts of every overdue task now (once per level)."""
        from flows import actions, clock

        report = actions.escalate_overdue(_engine(), now=clock.now(), actor=cli_actor())
        if as_json:
            out.print_json(json.dumps(report, default=str))
            return
        if not report:
            out.print("nothing to escalate")
        for r in report:
            line = f"{r['task_id']} ({r['team']}): level {r['level']} to {r['to']}: {r['status']}"
            out.print(line + (f" ({r['reason']})" if r["reason"] else ""), markup=False)

    def _team(engine, team: str) -> str:
        from flows.errors import TouchpointsError

        if team not in engine.config.teams:
            raise TouchpointsError(f"unknown team {team!r}",
                                   hint="teams: " + ", ".join(engine.config.teams))
        return team

    @tasks.command("link")
    def link(team: str = typer.Argument(..., metavar="TEAM", help="Team name."),
             days: int | None = typer.Option(None, "--days", "-d", min=1, max=365,
                                             help="Days it stays valid (default "
                                                  "TOUCHPOINTS_TEAM_LINK_DAYS, 30).")) -> None:
        """Make a signed link to the team's open-task list: it expires, and `touchpoints tasks
        revoke-link ID` closes it (and the task pages opened from it)."""
        from flows import teamlinks

        engine = _engine()
        with engine.store.session() as session:
            made = teamlinks.mint(session, _team(engine, team),
                                  days=days or engine.settings.team_link_days, actor=cli_actor())
            url = teamlinks.url_for(engine.signer, made)
            note = (f"team link {made.id}, valid until {made.expires_at:%Y-%m-%d %H:%M} UTC; "
                    f"revoke with `touchpoints tasks revoke-link {made.id}`")
        out.print(url, markup=False, soft_wrap=True)
        typer.echo(note, err=True)

    @tasks.command("links")
    def links(team: str | None = typer.Option(None, "--team", "-t", help="Only this team."),
              all_: bool = typer.Option(False, "--all", help="Expired and revoked ones too."),
              as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        """List team links: id, team, status, expiry, who made it."""
        from flows import teamlinks

        engine = _engine()
        with engine.store.session() as session:
            rows = teamlinks.list_links(session, _team(engine, team) if team else None,
                                        include_dead=all_)
        if as_json:
            out.print_json(json.dumps(rows, default=str))
            return
        if not rows:
            out.print("no team links" + ("" if all_ else " in force (--all shows the others)"))
            return
        table = Table("link", "team", "status", "expires", "made by")
        for r in rows:
            table.add_row(r["id"], r["team"], r["status"], f"{r['expires_at']:%Y-%m-%d %H:%M}",
                          r["created_by"])
        out.print(table)

    @tasks.command("revoke-link")
    def revoke_link(link_id: str = typer.Argument(..., metavar="ID",
                                                  help="Link id, e.g. TL-4be1c02a9f12.")) -> None:
        """Revoke a team link: it and the task pages opened from it stop working at once."""
        from flows import teamlinks

        engine = _engine()
        with engine.store.session() as session:
            revoked = teamlinks.revoke(session, link_id.strip(), actor=cli_actor())
            team = revoked.team
        out.print(f"revoked team link {link_id.strip()} ({team})", markup=False)
