"""touchpoints run / emit / preview / resume-due (journeys: flows/cli/journeys.py)."""

from __future__ import annotations

import json
import uuid

import typer

from flows.cli._common import cli_actor, out, parse_json_option


def _engine():
    from flows.engine.core import current_engine

    return current_engine()


def _names(items: list, key: str) -> list[str]:
    return [str(i.get(key) if isinstance(i, dict) else i) for i in items or []]


def _print_result(result: dict, as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(result, default=str))
        return
    if result.get("duplicate"):  # the lists are what the first delivery did
        first = [f"started {', '.join(_names(result.get('started'), 'touchpoint'))}"
                 if result.get("started") else "",
                 f"resumed journey {', '.join(_names(result.get('resumed'), 'journey_id'))}"
                 if result.get("resumed") else ""]
        done = "; ".join(part for part in first if part)
        out.print(f"event {result['event_id']} was already received: nothing new started or "
                  f"resumed" + (f" (the first time it {done})" if done else ""))
        return
    for start in result.get("started", []):
        who = start.get("customer_id") or start.get("label")
        out.print(f"started [bold]{start['touchpoint']}[/] for {who}")
    for wake in result.get("resumed", []):
        where = f" after {wake['pointer']}" if wake.get("pointer") else ""
        out.print(f"resumed [bold]{wake.get('touchpoint') or 'the'}[/] journey {wake['journey_id']}"
                  f"{where}")
    for skip in result.get("skipped", []):
        out.print(f"[dim]not started {skip['touchpoint']}: {skip['reason']}[/]")
    if not (result.get("started") or result.get("resumed") or result.get("skipped")):
        out.print("no touch point is triggered by this event")


def _print_answer(answer: dict, as_json: bool, customer: str | None = None) -> None:
    """The running service's answer, worded like a local emit: what started, what woke, what
    the entry rule refused."""
    if as_json:
        out.print_json(json.dumps(answer, default=str))
        return
    out.print(f"posted to {answer['service']}: event {answer['event_id']} accepted")
    _print_result({"event_id": answer["event_id"], "duplicate": answer.get("duplicate"),
                   "started": [{"touchpoint": name, "label": customer or "its audience"}
                               for name in answer.get("started") or []],
                   "resumed": [{"journey_id": jid} for jid in answer.get("resumed") or []],
                   "skipped": answer.get("skipped") or []}, as_json=False)


def register(app: typer.Typer) -> None:
    @app.command()
    def run(name: str = typer.Argument(..., help="Touch point name."),
            customer: str | None = typer.Option(None, "--customer", "-c", help="Customer id."),
            data: str | None = typer.Option(None, "--data", help="Event data as a JSON object."),
            as_json: bool = typer.Option(False, "--json")) -> None:
        """Run one touch point for one customer now, through Prefect."""
        from flows import clock
        from flows.engine.intake import refuse_bad_data
        from flows.engine.launch import InProcessLauncher
        from flows.errors import NotFoundError, TouchpointsError
        from flows.store import audit
        from flows.store.tables import Customer

        engine = _engine()
        tp = engine.touchpoint(name)
        if tp.audience == "customer" and not customer:
            raise TouchpointsError(f"touch point {name} is for one customer",
                                   hint=f"add --customer ID, e.g. touchpoints run {name} --customer C-1001")
        payload = parse_json_option(data, "--data")
        if tp.trigger.kind == "event":  # the data stands in for the trigger's: same contract
            refuse_bad_data(engine, type=tp.trigger.event, data=payload, customer_id=customer,
                            source="touchpoints run", actor=cli_actor())
        with engine.store.session() as session:
            if customer and session.get(Customer, customer) is None:
                raise NotFoundError(f"unknown customer {customer!r}",
                                    hint="list them with `touchpoints customers list`")
            event = {"id": f"run-{uuid.uuid4().hex}", "type": getattr(tp.trigger, "event", None) or "manual.run",
                     "customer_id": customer, "data": payload,
                     "occurred_at": clock.now().isoformat()}
            audit.record(session, action="touchpoint.run", result="requested", actor=cli_actor(),
                         touchpoint=name, customer_id=customer, reason="touchpoints run",
                         detail={"event": event["id"]})
        launcher = InProcessLauncher()
        result = launcher.start(name, event=event, customer_id=customer if tp.audience == "customer" else None,
                                label=customer or event["id"])
        if as_json:
            out.print_json(json.dumps(result, default=str))
        elif result.get("refused"):
            out.print(f"not started: {result['refused']}")
        else:
            out.print(f"ran [bold]{name}[/]: journey {result.get('journey_id')}, "
                      f"{result.get('completed', 0)} completed, {result.get('open', 0)} still in the journey")

    @app.command()
    def emit(event_type: str = typer.Argument(..., metavar="TYPE", help="Event type, e.g. contract.signed"),
             customer: str | None = typer.Option(None, "--customer", "-c", help="Customer id."),
             data: str | None = typer.Option(None, "--data", help="Event data as a JSON object."),
             event_id: str | None = typer.Option(None, "--id", help="Event id (idempotency key)."),
             remote: bool | None = typer.Option(None, "--remote/--local",
                                                   help="Post to the running service (default when "
                                                        "one runs) or run here."),
             as_json: bool = typer.Option(False, "--json")) -> None:
        """Send an event: start every touch point it triggers and wake journeys waiting for it."""
        from flows.cli.remote import emit_remote
        from flows.engine.dispatch import Dispatcher
        from flows.engine.launch import InProcessLauncher
        from flows.settings import get_settings

        payload = parse_json_option(data, "--data")
        answer = emit_remote(get_settings(), type=event_type, customer_id=customer, data=payload,
                             event_id=event_id, remote=remote)
        if answer is not None:
            _print_answer(answer, as_json, customer)
            return
        dispatcher = Dispatcher(_engine(), InProcessLauncher())
        result = dispatcher.emit(type=event_type, customer_id=customer, data=payload,
                                 event_id=event_id, source="cli", actor=cli_actor())
        _print_result(result.as_dict(), as_json)

    @app.command()
    def runs(touchpoint: str | None = typer.Option(None, "--touchpoint", "-t"),
             limit: int = typer.Option(10, "--limit", "-n"),
             as_json: bool = typer.Option(False, "--json")) -> None:
        """Recent flow runs of the touch points and their task runs, read from Prefect's API."""
        from flows.engine.runs import recent_runs

        rows = recent_runs(touchpoint=touchpoint, limit=limit)
        if as_json:
            out.print_json(json.dumps(rows, default=str))
            return
        if not rows:
            out.print("no flow runs yet")
        for r in rows:
            out.print(f"[bold]{r['flow']}[/]  {r['name']}  {r['state']}  {', '.join(r['tags'])}")
            for t in r["tasks"]:
                out.print(f"    {t['name']:<28} {t['state']}")

    @app.command()
    def preview(name: str = typer.Argument(..., help="Touch point name."),
                customer: str = typer.Option(..., "--customer", "-c", help="Customer id."),
                data: str | None = typer.Option(None, "--data", help="Event data as a JSON object, "
                                                "laid over the catalogue's example."),
                html: bool = typer.Option(False, "--html", help="Show the HTML parts too.")) -> None:
        """Render every message the touch point would send this customer, without sending."""
        from rich.markup import escape

        from flows.engine.preview import preview as render_preview
        from flows.store.customers import get_customer

        payload = parse_json_option(data, "--data")
        engine = _engine()
        with engine.store.session() as session:
            view = get_customer(session, customer)
        messages = render_preview(engine, name, view, data=payload)
        if not messages:
            out.print(f"{name} sends no email")
        for m in messages:
            out.rule(escape(f"{m.step_id}" + (f"  ({m.path})" if m.path else "")))
            out.print(f"To: {m.to}\nSubject: {m.subject}\nCategory: {m.category}\n", markup=False)
            if m.note:
                out.print(f"Note: {m.note}\n", markup=False)
            if m.error:
                out.print(f"[red]cannot render:[/] {escape(m.error)}")
            else:
                out.print(m.text, markup=False)
            if html and not m.error:
                out.print(m.html, markup=False)

    @app.command("resume-due")
    def resume_due() -> None:
        """Resume every journey whose wait is over, here and now (the service does this itself)."""
        from flows.engine.dispatch import Dispatcher
        from flows.engine.launch import InProcessLauncher

        fired = Dispatcher(_engine(), InProcessLauncher()).resume_due()
        out.print(f"resumed {len(fired)} continuation(s)")
        for f in fired:
            out.print(f"  {f['touchpoint']} journey {f['journey_id'][:12]}")
