"""The report as text (the terminal), CSV (a spreadsheet) and Markdown (the weekly Prefect
artifact). JSON is the report's own dict."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

KIND_TITLES = {"outage": "Outages", "maintenance": "Planned maintenance"}


def _minutes(value) -> str:
    return "-" if value is None else f"{value} min"


def _latency(figure: dict) -> str:
    if not figure.get("n"):
        return "none yet"
    return (f"p50 {_minutes(figure['p50_minutes'])}, p95 {_minutes(figure['p95_minutes'])} "
            f"(n={figure['n']})")


def _score(figure: dict) -> str:
    if "nps" in figure:
        return f"NPS {figure['nps']}"
    if "csat" in figure:
        return f"CSAT {figure['csat']}%"
    return "custom question"


def _weekly(data: dict[str, Any]):
    from flows.reports.weekly_rows import rows

    return rows(data)


def to_text(data: dict[str, Any]) -> str:
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
            lines.append(f"  {tp}/{step}: {_score(f)} (n={f['answered']}), response rate "
                         f"{f['response_rate']}%")
    lines.append("Detractors")
    for d in data["detractors"]:
        lines.append(f"  {d['customer_id']} ({d['touchpoint']}) scored {d['score']}: "
                     f"{d['comment'] or '-'}; "
                     f"follow-up {'done' if d['follow_up_done'] else 'open'}")
    lines.append("Teams")
    for team, f in sorted(data["teams"].items()):
        lines.append(f"  {team}: {f['created']} tasks ({f['due']} due or done), acknowledged in "
                     f"SLA {f['acknowledged_in_sla_pct']}%, completed in SLA "
                     f"{f['completed_in_sla_pct']}%, median ack {f['median_ack_hours']}h, "
                     f"median complete {f['median_complete_hours']}h, escalations "
                     f"{f['escalations'] or 'none'}")
    for kind, section in data.get("outages", {}).items():
        total = section["total"]
        lines.append(f"{KIND_TITLES.get(kind, kind)}: {total['incidents']}, "
                     f"{total['customers_notified']} customers told")
        lines.append(f"  notice after declaring: {_latency(total['notice'])}")
        lines.append(f"  resolution notice after the fix: {_latency(total['resolution'])}")
        if kind == "outage":
            per = total["updates_per_customer"]
            lines.append(f"  updates: {total['updates_sent']} sent, "
                         f"{'-' if per is None else per} per customer")
        for e in section["incidents"]:
            lines.append(f"  {e['id']} ({e['declared_at'] or '?'}): {e['customers']} customers, "
                         f"notice {_latency(e['notice'])}; resolution {_latency(e['resolution'])}"
                         + (f"; updates {e['updates_sent']} (max {e['max_updates_per_customer']} "
                            f"per customer)" if kind == "outage" else ""))
    weeks, weekly = _weekly(data)
    if weeks:
        lines.append(f"Weekly trends ({weeks[0]} to {weeks[-1]}, '-' = no data)")
        for row in weekly:
            lines.append(f"  {row.figure} · {row.name}: "
                         + " ".join("-" if c is None else str(c) for c in row.cells))
    return "\n".join(lines)


def to_csv(data: dict[str, Any]) -> str:
    """One row per figure: section, name, step (or week), figure, value."""
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
    for kind, section in data.get("outages", {}).items():
        for e in [{"id": "all", **section["total"]}, *section["incidents"]]:
            for figure in ("notice", "resolution"):
                for key, value in e[figure].items():
                    writer.writerow([kind, e["id"], "", f"{figure} {key}", value])
            for key in ("customers", "customers_notified", "updates_sent",
                        "updates_per_customer"):
                if key in e:
                    writer.writerow([kind, e["id"], "", key, e[key]])
    trends = data.get("trends") or {}
    for figure in ("nps", "csat", "journeys", "emails", "responses", "sla"):
        for name, series in trends.get(figure, {}).items():
            for week, values in sorted(series.items()):
                for key, value in values.items():
                    writer.writerow([f"weekly {figure}", name, week, key, value])
    return buffer.getvalue()


def _md(value: Any) -> str:
    return "-" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(data: dict[str, Any], *, title: str) -> str:
    """The weekly artifact: the headline figures as Markdown tables."""
    lines = [f"# {title}", "", f"Generated {data['generated_at'][:16].replace('T', ' ')} UTC"
             + (f", since {data['since'][:10]}" if data["since"] else "") + ".", ""]
    lines += ["## Surveys", "", "| touch point | step | score | answers | response rate |",
              "| --- | --- | --- | --- | --- |"]
    for tp, steps in sorted(data["surveys"].items()):
        for step, f in steps.items():
            lines.append(f"| {_md(tp)} | {_md(step)} | {_score(f)} | {f['answered']} | "
                         f"{_md(f['response_rate'])}% |")
    lines += ["", "## Team SLAs", "",
              ("| team | tasks | acknowledged in SLA | completed in SLA | median ack (h) | "
              "escalations |"), "| --- | --- | --- | --- | --- | --- |"]
    for team, f in sorted(data["teams"].items()):
        escalations = sum(f["escalations"].values())
        lines.append(f"| {_md(team)} | {f['created']} | {_md(f['acknowledged_in_sla_pct'])}% | "
                     f"{_md(f['completed_in_sla_pct'])}% | {_md(f['median_ack_hours'])} | "
                     f"{escalations} |")
    for kind, section in data.get("outages", {}).items():
        total = section["total"]
        lines += ["", f"## {KIND_TITLES.get(kind, kind)}", "",
                  (f"{total['incidents']} declared, {total['customers_notified']} customers told; "
                  f"notice {_latency(total['notice'])}; resolution notice "
                  f"{_latency(total['resolution'])}."), ""]
        if section["incidents"]:
            lines += [("| id | customers | notice p50 | notice p95 | updates per customer | "
                      "resolution p50 | resolution p95 |"),
                      "| --- | --- | --- | --- | --- | --- | --- |"]
            for e in section["incidents"]:
                lines.append(f"| {_md(e['id'])} | {e['customers']} | "
                             f"{_minutes(e['notice']['p50_minutes'])} | "
                             f"{_minutes(e['notice']['p95_minutes'])} | "
                             f"{_md(e['updates_per_customer'])} | "
                             f"{_minutes(e['resolution']['p50_minutes'])} | "
                             f"{_minutes(e['resolution']['p95_minutes'])} |")
    weeks, weekly = _weekly(data)
    if weeks and weekly:
        lines += ["", "## Week by week", "", "| figure | name | " + " | ".join(weeks) + " |",
                  "| --- | --- | " + " | ".join("---" for _ in weeks) + " |"]
        for row in weekly:
            lines.append(f"| {_md(row.figure)} | {_md(row.name)} | "
                         + " | ".join(_md(c) for c in row.cells) + " |")
    if data["detractors"]:
        lines += ["", "## Detractors", "", ("| customer | touch point | score | comment | "
                  "follow-up |"), "| --- | --- | --- | --- | --- |"]
        for d in data["detractors"]:
            lines.append(f"| {_md(d['customer_id'])} | {_md(d['touchpoint'])} | {d['score']} | "
                         f"{_md(d['comment'])} | {'done' if d['follow_up_done'] else 'open'} |")
    return "\n".join(lines) + "\n"
