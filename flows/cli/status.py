"""`touchpoints status`: one screen on the installation's health.

* the service: ``<data>/serve.json`` and the running service's ``/healthz`` (its parts: ok,
  degraded with the error and when it retries, standby), or that none runs;
* the backlog: units of work queued, launched and leased, members waiting per touch point,
  events not dispatched;
* the latest failures: failed members, units given up, events refused, with their reasons;
* the alerts to the operations address: pending, sent, and what is stuck now.

Each section is read on its own: one that cannot be read (no database, a broken
touchpoints.yaml) says why and the others still show. ``--json`` prints the same as one object.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.markup import escape
from sqlalchemy import func, select

from flows.cli._common import out
from flows.cli._common import settings as cli_settings

#: the audit actions shown as failures
FAILURES = ("journey.failed", "unit.failed", "event.refused")
LATEST = 5


def _problem(exc: Exception) -> dict[str, str]:
    message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
    hint = getattr(exc, "hint", None)
    return {"error": str(message)[:300], **({"hint": hint} if hint else {})}


def fetch_healthz(web_url: str, timeout: float = 2.0) -> dict[str, Any]:
    import httpx

    response = httpx.get(f"{web_url.rstrip('/')}/healthz", timeout=timeout)
    response.raise_for_status()
    answer = response.json()
    if not isinstance(answer, dict):
        raise TypeError("/healthz did not answer a JSON object")
    return answer


def part_state(part: dict[str, Any]) -> str:
    """``ok``, ``standby`` or ``degraded: <error> (n failures, retry in s)``."""
    if not isinstance(part, dict):
        return "unknown"
    if part.get("standby"):
        return "standby"
    if part.get("ok", True):
        return "ok"
    retry = f", retry in {part['retry_in_s']}s" if part.get("retry_in_s") is not None else ""
    failures = f"{part['failures']} failure(s)" if part.get("failures") else ""
    what = ", ".join(p for p in (failures, retry.lstrip(", ")) if p)
    return f"degraded: {part.get('error', '?')}" + (f" ({what})" if what else "")


def service_status(settings, *, fetch: Callable[[str], dict] = fetch_healthz) -> dict[str, Any]:
    from flows.cli.remote import pid_alive, read_service_info, state_path

    info = read_service_info(settings)
    if info is None:
        return {"running": False, "note": f"no service running (no {state_path(settings)})"}
    base = {"pid": info.pid, "web_url": info.web_url, "prefect_url": info.prefect_url,
            "started_at": info.started_at, "roles": info.extra.get("roles")}
    if not pid_alive(info.pid):
        return {"running": False, **base,
                "note": f"no service running: {state_path(settings)} names pid {info.pid}, "
                        "which has exited (a stale file, removed at the next serve)"}
    try:
        answer = fetch(info.web_url)
    except Exception as exc:  # noqa: BLE001 - any failure to answer is what we report
        return {"running": True, **base, "answering": False,
                "note": f"pid {info.pid} runs, but {info.web_url}/healthz does not answer: "
                        f"{_problem(exc)['error']}"}
    parts = answer.get("parts") if isinstance(answer.get("parts"), dict) else {}
    return {"running": True, **base, "answering": True,
            "degraded": bool(answer.get("degraded")),
            "parts": {name: part_state(part) for name, part in sorted(parts.items())}}


def backlog(store) -> dict[str, Any]:
    from flows.store.tables import Event, Journey, Member, WorkUnit

    with store.read_session() as session:
        units = dict(session.execute(select(WorkUnit.status, func.count())
                                     .where(WorkUnit.status.in_(("queued", "launched", "leased")))
                                     .group_by(WorkUnit.status)).all())
        waiting = dict(session.execute(
            select(Journey.touchpoint, func.count()).select_from(Member)
            .join(Journey, Journey.id == Member.journey_id)
            .where(Member.status == "waiting").group_by(Journey.touchpoint)
            .order_by(Journey.touchpoint)).all())
        count, oldest = session.execute(select(func.count(), func.min(Event.received_at))
                                        .where(Event.status == "received")).one()
    return {"units": {s: units.get(s, 0) for s in ("queued", "launched", "leased")},
            "waiting": waiting,
            "events_not_dispatched": count,
            "oldest_not_dispatched": oldest.isoformat() if oldest else None}


def last_failures(store, limit: int = LATEST) -> list[dict[str, Any]]:
    from flows.store.tables import AuditRow

    with store.read_session() as session:
        rows = session.scalars(select(AuditRow).where(AuditRow.action.in_(FAILURES))
                               .order_by(AuditRow.seq.desc()).limit(limit)).all()
        return [{"at": r.at.isoformat(), "action": r.action, "touchpoint": r.touchpoint,
                 "customer_id": r.customer_id, "reason": (r.reason or "")[:200]} for r in rows]


def alerts(store, settings) -> dict[str, Any]:
    from flows.engine.alerts import alert_rows

    with store.read_session() as session:
        rows = alert_rows(session)
    listed = [{**r, "last_sent_at": r["last_sent_at"].isoformat() if r["last_sent_at"] else None,
               "updated_at": r["updated_at"].isoformat() if r["updated_at"] else None}
              for r in rows]
    result: dict[str, Any] = {"pending": sum(r["pending"] for r in rows),
                              "sent": sum(r["total"] - r["pending"] for r in rows),
                              "rows": listed}
    try:
        from flows.config import load_config

        result["to"] = load_config(settings.config_file).defaults.operations
    except Exception as exc:  # noqa: BLE001 - a broken file is `touchpoints check`'s to explain
        result["to_error"] = _problem(exc)["error"]
    return result


def collect(settings, *, store=None, fetch: Callable[[str], dict] = fetch_healthz) -> dict:
    """The whole summary; each section holds its data or ``{"error": ..., "hint": ...}``."""
    summary: dict[str, Any] = {}
    try:
        summary["service"] = service_status(settings, fetch=fetch)
    except Exception as exc:  # noqa: BLE001 - status must show every section it can
        summary["service"] = _problem(exc)
    try:
        if store is None:
            from flows.store.db import open_store

            store = open_store(settings)
    except Exception as exc:  # noqa: BLE001
        problem = _problem(exc)
        summary.update(backlog=problem, failures=problem, alerts=problem)
        return summary
    for name, read in (("backlog", lambda: backlog(store)),
                       ("failures", lambda: last_failures(store)),
                       ("alerts", lambda: alerts(store, settings))):
        try:
            summary[name] = read()
        except Exception as exc:  # noqa: BLE001
            summary[name] = _problem(exc)
    return summary


# ---------------------------------------------------------------------- the screen
def _error_lines(section: dict) -> list[str] | None:
    if isinstance(section, dict) and "error" in section:
        return [f"  [red]cannot read it:[/] {escape(section['error'])}"] + (
            [f"  [dim]hint: {escape(section['hint'])}[/]"] if section.get("hint") else [])
    return None


def render(summary: dict[str, Any]) -> list[str]:
    lines = ["[bold]Service[/]"]
    service = summary.get("service", {})
    if _error_lines(service):
        lines += _error_lines(service)
    elif not service.get("running") or not service.get("answering"):
        lines.append(f"  {escape(service.get('note', 'no service running'))}")
    else:
        state = "[yellow]degraded[/]" if service.get("degraded") else "[green]ok[/]"
        roles = f", roles {', '.join(service['roles'])}" if service.get("roles") else ""
        lines.append(f"  {state}: pid {service['pid']} at {service['web_url']}{roles}, "
                     f"since {service.get('started_at') or '?'}")
        if service.get("prefect_url"):
            lines.append(f"  Prefect UI: {service['prefect_url']}")
        for name, state in service.get("parts", {}).items():
            colour = "green" if state == "ok" else ("dim" if state == "standby" else "yellow")
            lines.append(f"  {escape(name)}: [{colour}]{escape(state)}[/]")
    lines += ["", "[bold]Backlog[/]"]
    backlog_ = summary.get("backlog", {})
    if _error_lines(backlog_):
        lines += _error_lines(backlog_)
    else:
        u = backlog_["units"]
        lines.append(f"  units: {u['queued']} queued, {u['launched']} launched, "
                     f"{u['leased']} leased (running)")
        waiting = ", ".join(f"{escape(str(tp))} {n}"
                            for tp, n in backlog_["waiting"].items()) or "none"
        lines.append(f"  members waiting: {waiting}")
        oldest = (f" (oldest received {backlog_['oldest_not_dispatched'][:16]})"
                  if backlog_.get("oldest_not_dispatched") else "")
        lines.append(f"  events not dispatched: {backlog_['events_not_dispatched']}{oldest}")
    lines += ["", "[bold]Latest failures[/]"]
    failures = summary.get("failures", [])
    if _error_lines(failures):
        lines += _error_lines(failures)
    elif not failures:
        lines.append("  none")
    for f in failures if isinstance(failures, list) else []:
        head = " ".join(x for x in (f["at"][:16], f["action"], f.get("touchpoint"),
                                    f.get("customer_id")) if x)
        lines.append(escape(f"  {head}: {f['reason']}"))
    lines += ["", "[bold]Alerts[/]"]
    alerts_ = summary.get("alerts", {})
    if _error_lines(alerts_):
        lines += _error_lines(alerts_)
    else:
        if alerts_.get("to_error"):
            lines.append(f"  to ? (touchpoints.yaml cannot be read: {escape(alerts_['to_error'])})")
        elif alerts_.get("to"):
            lines.append(f"  to {escape(alerts_['to'])}")
        else:
            lines.append("  no operations address (defaults.operations): nothing is sent")
        lines.append(f"  {alerts_['pending']} pending, {alerts_['sent']} sent")
        for row in alerts_["rows"][:10]:
            now = f", {row['now']} stuck now" if row.get("now") is not None else ""
            sent = f", last sent {row['last_sent_at'][:16]}" if row["last_sent_at"] else ""
            lines.append(escape(f"  {row['key']}: {row['pending']} pending of {row['total']}"
                                f"{now}{sent}"))
    return lines


def register(app: typer.Typer) -> None:
    @app.command()
    def status(as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False
               ) -> None:
        """The installation's health on one screen: the running service and its parts, the
        backlog, the latest failures and the alerts to the operations address.

        Exit code 1 when a section cannot be read (it says why); works without a service."""
        summary = collect(cli_settings())
        if as_json:
            out.print_json(json.dumps(summary, default=str))
        else:
            for line in render(summary):
                out.print(line)
        if any(isinstance(s, dict) and "error" in s for s in summary.values()):
            raise typer.Exit(1)  # a section could not be read (it says why)
