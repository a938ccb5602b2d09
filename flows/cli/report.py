"""touchpoints report: how the touch points, teams and surveys are doing (SQL aggregates)."""

from __future__ import annotations

import csv
import io
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


def to_csv(data: dict) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["section", "name", "step", "figure", "value"])
    for tp, entry in data["journeys"].items():
        for key in ("started", "goals"):
            writer.writerow(["journeys", tp, "", key, entry[key]])
        for reason, n in entry["exits"].items():
            writer.writerow(["journeys", tp, "", f"exit: {reason}", n])
    for tp, steps in data["emails"].items():
        for step, statuses in steps.items():
            for status, reasons in statuses.items():
                for reason, n in reasons.items():
                    writer.writerow(["emails", tp, step, f"{status} {reason}".strip(), n])
    for tp, steps in data["surveys"].items():
        for step, figure in steps.items():
            for key, value in figure.items():
                writer.writerow(["surveys", tp, step, key, value])
    for team, figure in data["teams"].items():
        for key, value in figure.items():
            writer.writerow(["teams", team, "", key,
                             json.dumps(value) if isinstance(value, dict) else value])
    return buffer.getvalue()


def to_text(data: dict) -> str:
    lines = ["Touch points"]
    for tp, entry in sorted(data["journeys"].items()):
        exits = ", ".join(f"{r}: {n}" for r, n in entry["exits"].items()) or "none"
        lines.append(f"  {tp}: {entry['started']} started, {entry['by_status'].get('done', 0)} "
                     f"completed, {entry['goals']} goals reached; exits: {exits}")
    lines.append("Emails")
    for tp, steps in sorted(data["emails"].items()):
        for step, statuses in steps.items():
            parts = [f"{status} {sum(r.values())}" for status, r in statuses.items()]
            lines.append(f"  {tp}/{step}: " + ", ".join(parts))
    lines.append("Surveys")
    for tp, steps in sorted(data["surveys"].items()):
        for step, f in steps.items():
            score = (f"NPS {f['nps']}" if "nps" in f else f"CSAT {f.get('csat')}%")
            lines.append(f"  {tp}/{step}: {score} (n={f['answered']}), response rate "
                         f"{f['response_rate']}%")
    lines.append("Detractors")
    for d in data["detractors"]:
        lines.append(f"  {d['customer_id']} ({d['touchpoint']}) scored {d['score']}: "
                     f"{d['comment'] or '-'}; follow-up {'done' if d['follow_up_done'] else 'open'}")
    lines.append("Teams")
    for team, f in sorted(data["teams"].items()):
        lines.append(f"  {team}: {f['created']} tasks, acknowledged in SLA "
                     f"{f['acknowledged_in_sla_pct']}%, completed in SLA "
                     f"{f['completed_in_sla_pct']}%, median ack {f['median_ack_hours']}h, "
                     f"median complete {f['median_complete_hours']}h, escalations "
                     f"{f['escalations'] or 'none'}")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(
        fmt: Annotated[str, typer.Option("--format", "-f", help="text, json or csv.")] = "text",
        since: Annotated[str | None, typer.Option("--since", help="Only from this date.")] = None,
        touchpoint: Annotated[str | None, typer.Option(
            "--touchpoint", "-t", help="Only this touch point.")] = None,
    ) -> None:
        """How are we doing? Journeys, emails, NPS/CSAT, detractors and team SLAs."""
        from flows.errors import TouchpointsError
        from flows.reports.queries import build
        from flows.store.db import open_store

        if fmt not in ("text", "json", "csv"):
            raise TouchpointsError(f"unknown --format {fmt!r}", hint="use text, json or csv")
        with open_store(settings()).read_session() as session:
            data = build(session, since=_since(since), touchpoint=touchpoint)
        if fmt == "json":
            out.print_json(json.dumps(data, ensure_ascii=False))
        elif fmt == "csv":
            print(to_csv(data), end="")
        else:
            out.print(to_text(data), markup=False)
