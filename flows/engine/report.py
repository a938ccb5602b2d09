"""The markdown artifact each flow run leaves: what was sent to whom, what was skipped and
why, what was handed to whom, and who is waiting for what."""

from __future__ import annotations

from sqlalchemy import func, select

from flows.store.tables import AuditRow

MAX_ROWS = 50

SECTIONS = [
    ("Sent", ("email.sent",), ("customer_id", "to", "subject")),
    ("Skipped", ("email.suppressed", "email.bounced", "email.failed", "journey.refused"),
     ("customer_id", "to", "reason")),
    ("Deferred", ("email.deferred",), ("customer_id", "to", "reason")),
    ("Handed off", ("handoff.created",), ("customer_id", "team", "reason")),
    ("Waiting", ("journey.waiting",), ("customer_id", "step", "reason")),
    ("Left the journey", ("journey.exited", "journey.goal"), ("customer_id", "result", "reason")),
]


def _cell(row: AuditRow, column: str) -> str:
    detail = row.detail or {}
    value = getattr(row, column, None) if hasattr(row, column) else detail.get(column)
    if value is None:
        value = detail.get(column, "")
    return str(value).replace("|", "\\|").replace("\n", " ")


def run_report(session, *, touchpoint: str, journey_id: str | None, flow_run_id: str | None,
               summary: dict) -> str:
    """The run's artifact from SQL aggregates over its audit rows (indexed by flow run), and
    at most MAX_ROWS rows a section: the same cost for a run of 10 members or 100,000."""
    counts: dict[str, int] = {}
    if flow_run_id:
        counts = dict(session.execute(
            select(AuditRow.action, func.count()).where(AuditRow.flow_run_id == flow_run_id)
            .group_by(AuditRow.action)).all())
    lines = [f"# {touchpoint}", ""]
    if journey_id:
        lines.append(f"Journey `{journey_id}`.")
    if summary.get("refused"):
        lines.append(f"Not started: {summary['refused']}.")
    if summary.get("journeys"):  # a batch of starts: every customer of the run, findable here
        lines += ["", f"## Journeys started in this run ({len(summary['journeys'])})", "",
                  "| customer_id | journey | status |", "| --- | --- | --- |"]
        lines += [f"| {j['customer_id']} | `{j['journey_id']}` | {j.get('status') or ''} |"
                  for j in summary["journeys"]]
    if counts:
        lines += ["", "| action | count |", "| --- | ---: |"]
        lines += [f"| {action} | {n} |" for action, n in sorted(counts.items())]
    for title, actions, columns in SECTIONS:
        total = sum(counts.get(action, 0) for action in actions)
        if not total:
            continue
        chosen = session.scalars(select(AuditRow).where(
            AuditRow.flow_run_id == flow_run_id, AuditRow.action.in_(actions))
            .order_by(AuditRow.seq).limit(MAX_ROWS)).all()
        lines += ["", f"## {title} ({total})", "",
                  "| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
        lines += ["| " + " | ".join(_cell(r, c) for c in columns) + " |" for r in chosen]
        if total > MAX_ROWS:
            lines.append(f"\n…and {total - MAX_ROWS} more (see `touchpoints audit`).")
    if summary.get("open") is not None:
        lines += ["", f"Members still in the journey: {summary['open']}; completed in this run: "
                      f"{summary.get('completed', 0)}."]
    return "\n".join(lines) + "\n"
