"""What each kind of operations alert says: its subject line, its lines, and a link to where
to look (the web app at ``TOUCHPOINTS_BASE_URL``, or the run in the Prefect UI)."""

from __future__ import annotations

import os
from typing import Any

#: kind -> (what one is called, plural); used in subjects and audit reasons
NOUNS = {
    "failed": "failed member(s)",
    "gave-up": "unit(s) given up",
    "refused": "refused event(s)",
    "smtp": "failed connection(s) to the SMTP server",
    "stuck-members": "stuck member(s)",
    "stuck-units": "unit(s) not taken by a run",
    "undispatched": "event(s) not dispatched",
    "stalled-tasks": "task(s) past their last escalation",
}


def summary(kind: str, subject: str | None, count: int) -> str:
    """``2 failed member(s)``: what a report counted, for the audit."""
    return f"{count} {NOUNS.get(kind, kind)}"


def prefect_ui(settings) -> str:
    """The Prefect UI of this installation: the server `serve` talks to, else its own."""
    api = os.environ.get("PREFECT_API_URL")
    if api:
        return api.rstrip("/").removesuffix("/api")
    host = settings.prefect_host
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{host}:{settings.prefect_port}"


def run_url(settings, run_id: str | None) -> str | None:
    return f"{prefect_ui(settings)}/runs/flow-run/{run_id}" if run_id else None


def _failed_run(engine, touchpoint: str) -> str | None:
    """The flow run of the latest failure of ``touchpoint`` (the audit keeps it)."""
    from sqlalchemy import select

    from flows.store.tables import AuditRow

    with engine.store.read_session() as session:
        return session.scalar(select(AuditRow.flow_run_id).where(
            AuditRow.action == "journey.failed", AuditRow.touchpoint == touchpoint)
            .order_by(AuditRow.seq.desc()).limit(1))


def _examples(detail: dict[str, Any], line) -> list[str]:
    return [line(e) for e in detail.get("examples", [])]


def render(engine, kind: str, subject: str | None, *, count: int, total: int, period: str,
           detail: dict[str, Any]) -> tuple[str, list[str]]:
    """(subject line, lines) of the report of ``count`` occurrences ``period``."""
    settings = engine.settings
    base = settings.base_url.rstrip("/")
    in_all = f"({total} in all)"
    if kind == "failed":
        tp = detail.get("touchpoint") or subject
        lines = [f"{count} member(s) of the touch point {tp} failed {period} {in_all}.", "",
                 f"Latest failures, at step {detail.get('step', '?')}:"]
        lines += _examples(detail, lambda e: f"  {e.get('customer_id')}: {e.get('reason')}")
        run = _failed_run(engine, tp)
        lines += ["", f"The latest run: {run_url(settings, run)}" if run
                  else f"The runs: {prefect_ui(settings)}/runs",
                  "", "Once the cause is fixed, run them again with:",
                  f"  touchpoints journeys retry {tp}",
                  "", "Each failure is in the audit trail with the action journey.failed."]
        return f"{count} failed in {tp}", lines
    if kind == "gave-up":
        lines = [(f"{count} unit(s) of work of the touch point {subject} were given up {period} "
                 f"{in_all}: their runs were launched again and again without finishing, and "
                 "their members are failed."), "", "Latest:"]
        lines += _examples(detail, lambda e: f"  {e.get('unit')}: {e.get('reason')}"
                           + (f"\n    last run: {run_url(settings, e['run'])}"
                              if e.get("run") else ""))
        lines += ["", ("Look at the runs in the Prefect UI, fix the cause, then run the members "
                      "again with:"), f"  touchpoints journeys retry {subject}",
                  "", "Each is in the audit trail with the action unit.failed."]
        return f"{count} unit(s) given up in {subject}", lines
    if kind == "refused":
        lines = [(f"{count} {subject} event(s) were refused by their contract {period} "
                 f"{in_all}: their data does not fit the fields: of {subject} in "
                 "touchpoints.yaml, so nothing was stored or started."), "", "Latest:"]
        lines += _examples(detail, lambda e: f"  {e.get('event_id') or '(no id)'} from "
                           f"{e.get('source', '?')}: " + "; ".join(
                               f"{k}: {v}" for k, v in (e.get("errors") or {}).items()))
        lines += ["", ("Fix the sender, or the contract. Each event type's data schema is in "
                      f"the API documentation: {base}/docs"),
                  "", "Each is in the audit trail with the action event.refused."]
        return f"{count} {subject} event(s) refused", lines
    if kind == "smtp":
        lines = [f"{count} attempt(s) to reach the SMTP server {detail.get('server', '')} "
                 f"failed {period} {in_all}.".replace("  ", " "), "", "Latest:"]
        lines += _examples(detail, lambda e: f"  {e.get('at', '')[:16]} {e.get('reason')}")
        lines += ["", ("Emails that could not be handed over are deferred and tried again. "
                      "Check the server and TOUCHPOINTS_SMTP_URL; `touchpoints status` "
                      "shows the backlog.")]
        return "SMTP server unreachable", lines
    now = detail.get("now")
    at = (detail.get("at") or "")[:16].replace("T", " ")
    still = f" Still so: {now}, at the last check ({at} UTC)." if now is not None else ""
    if kind == "stuck-members":
        lines = [(f"{count} member(s) of the touch point {subject} became stuck {period} "
                 f"{in_all}: they wait at a step whose time passed more than "
                 f"{detail.get('grace', '15 minutes')} ago, and no run is queued or running "
                 f"for them.{still}"), "", "Latest:"]
        lines += _examples(detail, lambda e: f"  {e.get('customer_id')} at {e.get('pointer')}, "
                           f"due {(e.get('due_at') or '')[:16]} (journey {e.get('journey_id')})")
        lines += ["", ("Is the service's dispatch loop running? `touchpoints status` shows it; "
                      "`touchpoints resume-due` resumes them here and now."),
                  f"The runs: {prefect_ui(settings)}/runs"]
        return f"{count} member(s) stuck in {subject}", lines
    if kind == "stuck-units":
        lines = [(f"{count} unit(s) of work of the touch point {subject} waited more than "
                  f"{detail.get('grace', '10 minutes')} for a run to take them {period} "
                  f"{in_all}: queued, or launched and never started.{still}"), "", "Latest:"]
        lines += _examples(detail, lambda e: f"  {e.get('label') or e.get('unit')}: "
                           f"{e.get('status')} since {(e.get('since') or '')[:16]}"
                           + (f"\n    run: {run_url(settings, e['run'])}" if e.get("run")
                              else ""))
        lines += ["", ("Is a worker running for the work pool, and the Prefect server up? "
                      "`touchpoints status` shows the service's parts.")]
        return f"{count} unit(s) not taken by a run in {subject}", lines
    if kind == "undispatched":
        lines = [(f"{count} event(s) were still not dispatched a minute after they arrived "
                 f"{period} {in_all}.{still}"), "", "Latest:"]
        lines += _examples(detail, lambda e: f"  {e.get('event_id')} ({e.get('type')}), "
                           f"received {(e.get('received_at') or '')[:16]}")
        lines += ["", ("The housekeeping loop dispatches them again; if they stay, see the "
                      f"service's log and {base}/healthz.")]
        return f"{count} event(s) not dispatched", lines
    if kind == "stalled-tasks":
        lines = [(f"{count} task(s) of the team {subject} went past their last escalation "
                  f"level {period} {in_all} and are still open.{still}"), "", "Latest:"]
        lines += _examples(detail, lambda e: f"  {e.get('title')} (due "
                           f"{(e.get('due_at') or '')[:16]}, escalated to {e.get('to')})"
                           + (f"\n    {e['link']}" if e.get("link") else ""))
        lines += ["", "Nobody is reminded again: find an owner, or complete the task."]
        return f"{count} task(s) of {subject} past their last escalation", lines
    lines = [f"{count} {kind} alert(s) {period} {in_all}."]
    return f"{count} {kind}", lines
