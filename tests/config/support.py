"""Building small touch-point folders (touchpoints.yaml + templates/) for the config tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

HEADER = """\
version: 1
defaults:
  sender: "Northwind Fibre <hello@northwind.example>"
  reply_to: support@northwind.example
  postal_address: "Northwind Fibre Ltd, 12 Harbour Road, Bristol"
  timezone: Europe/London
  send_window: {start: "08:00", end: "20:00", days: [mon, tue, wed, thu, fri, sat]}
categories:
  service: {transactional: true, description: "Service notices"}
  surveys: {transactional: false, description: "Short questions"}
  marketing: {transactional: false, description: "News and offers"}
teams:
  install:
    email: installs@northwind.example
    sla: 1d
    escalation:
      - {after: 0h, to: install-lead@northwind.example}
  support: {email: support@northwind.example, sla: 4h}
events:
  contract.signed:
    description: The CRM marks a contract as signed.
    example: {plan: "Fibre 500", contract_id: CT-1}
  outage.declared:
    description: The NOC declares an outage.
    example: {outage_id: OUT-1, regions: [north], eta: "2026-11-23T18:00:00+00:00"}
  ticket.opened:
    description: The helpdesk opens a ticket.
    example: {ticket_id: TKT-1, category: dropouts, summary: "Drops every evening"}
touchpoints:
"""

#: templates every test folder has: name → (text part, html part); None leaves a part out
TEMPLATES: dict[str, tuple[str | None, str | None]] = {
    "welcome": ("Hello {{ customer.first_name }}, welcome to {{ company.name }}.\n",
                "<p>Hello {{ customer.first_name }}</p>\n"),
    "outage": ("Back by {{ trigger.data.eta | localtime(customer.timezone) }}.\n",
               "<p>{{ trigger.data.eta }}</p>\n"),
    "only_text": ("Just text.\n", None),
    "broken": ("Hello {% if %}\n", "<p>fine</p>\n"),
    "wants_eta": ("Line one\nBack by {{ trigger.data.eta }}\n", "<p>fine</p>\n"),
    "asks_later": ("Score {{ steps.later_survey.score }}\n", "<p>fine</p>\n"),
    "survey": ("{{ survey.text }} {{ links.survey }}\n", "<p>{{ survey.text }}</p>\n"),
    "history": (("{% for t in trigger.data.history %}{{ t.data.ticket_id }} {% endfor %}"
                 "{{ trigger.data.category }} x{{ trigger.data.count }}\n"), "<p>h</p>\n"),
    "_system/handoff": ("{{ task.title }} due {{ task.due_at }} {{ links.ack }}\n",
                        "<p>{{ task.title }} <a href='{{ links.complete }}'>done</a></p>\n"),
}


def write_templates(root: Path) -> Path:
    templates = root / "templates"
    for name, parts in TEMPLATES.items():
        for suffix, body in zip((".txt", ".html"), parts):
            if body is not None:
                path = templates / f"{name}{suffix}"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(body, encoding="utf-8")
    return templates


def write_config(root: Path, touchpoints: str, *, header: str = HEADER) -> Path:
    """``root/touchpoints.yaml`` made of the shared header and ``touchpoints`` (indented
    under ``touchpoints:``), with the shared templates next to it."""
    write_templates(root)
    path = root / "touchpoints.yaml"
    path.write_text(header + textwrap.indent(textwrap.dedent(touchpoints), "  "),
                    encoding="utf-8")
    return path


WELCOME = """\
sale:
  description: Welcome new customers.
  trigger: {event: contract.signed}
  audience: customer
  steps:
    - {id: welcome, kind: email, subject: "Welcome, {{ customer.first_name }}", template: welcome, category: service}
"""
