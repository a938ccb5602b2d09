"""A small touchpoints.yaml for the contact policy and holdout tests, and a way to walk one
journey's steps through the engine's own batch path (real store, real SMTP) without Prefect."""

from __future__ import annotations

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CONFIG = """
version: 1
defaults:
  sender: "Northwind Fibre <hello@northwind.example>"
  postal_address: "Northwind Fibre Ltd, 12 Harbour Road, Bristol BS1 4XX, United Kingdom"
  timezone: Europe/London
{defaults}
categories:
  outage:    {{transactional: true,  description: "Outage notices"}}
  surveys:   {{transactional: false, description: "Short questions"}}
  check-ins: {{transactional: false, description: "Check-ins"}}
  marketing: {{transactional: false, description: "News and offers"}}
teams:
  support: {{email: support-queue@northwind.example, sla: 4h}}
events:
  news.published: {{description: "Marketing publishes a newsletter.", example: {{issue: 7}}}}
  poll.opened: {{description: "Product opens a poll.", example: {{topic: wifi}}}}
  outage.declared: {{description: "An outage.", example: {{outage_id: OUT-1}}}}
  check.due: {{description: "A check-in is due.", example: {{}}}}
touchpoints:
  news:
    description: A newsletter to every customer we name.
    trigger: {{event: news.published}}
    audience: {{segment: "customer.id in event.data.get('ids', [])"}}
    steps:
      - {{id: letter, kind: email, subject: "News", template: t/note, category: marketing}}
  poll:
    description: A one-question survey.
    trigger: {{event: poll.opened}}
    audience: customer
    entry: {{rule: every_time}}
    {poll_holdout}
    steps:
      - {{id: ask, kind: survey, question: nps, subject: "A question", template: t/poll}}
  notice:
    description: An outage notice.
    trigger: {{event: outage.declared}}
    audience: customer
    entry: {{rule: every_time}}
    steps:
      - {{id: tell, kind: email, subject: "Outage", template: t/note, category: outage}}
  check-in:
    description: A check-in, a task for support, and a week to see whether the customer acts.
    trigger: {{event: check.due}}
    audience: {{segment: "customer.id in event.data.get('ids', [])"}}
    {holdout}
    steps:
      - {{id: hello, kind: email, subject: "Hello", template: t/note, category: check-ins}}
      - {{id: heads_up, kind: email, subject: "Outage", template: t/note, category: outage}}
      - {{id: follow_up, kind: handoff, team: support, title: "Call {{{{ customer.name }}}}"}}
      - id: reached
        kind: branch
        when:
          - if: "customer.region == 'north'"
            steps: [{{id: won, kind: exit, goal: "Customer acted"}}]
"""


def write_config(folder: Path, *, defaults: str = "", holdout: str = "",
                 poll_holdout: str = "") -> Path:
    shutil.copytree(REPO / "templates", folder / "templates", dirs_exist_ok=True)  # handoff's
    (folder / "templates" / "t").mkdir(parents=True, exist_ok=True)
    for name, body in (("note", "Hello {{ customer.first_name }}."),
                       ("poll", "Tell us: {{ links.survey }}")):
        (folder / "templates" / "t" / f"{name}.txt").write_text(body + "\n", encoding="utf-8")
        (folder / "templates" / "t" / f"{name}.html").write_text(f"<p>{body}</p>\n",
                                                                 encoding="utf-8")
    path = folder / "touchpoints.yaml"
    path.write_text(CONFIG.format(defaults=defaults, holdout=holdout,
                                                poll_holdout=poll_holdout), encoding="utf-8")
    return path


def enter(engine, touchpoint: str, now, *, customer_id: str | None = None,
          event_id: str = "evt-1", **data) -> dict:
    from flows.engine.journeys import JourneyOps

    tp = engine.touchpoint(touchpoint)
    event = {"id": event_id, "type": getattr(tp.trigger, "event", "x"),
             "customer_id": customer_id, "occurred_at": now.isoformat(), "data": data}
    with engine.store.session() as session:
        entered = JourneyOps(engine).enter(session, touchpoint=tp, event=event,
                                           customer_id=customer_id, flow_run_id=None, now=now)
        session.commit()
    return entered


def run_step(engine, touchpoint: str, step_id: str, journey_id: str, wave: str, now,
             lane: str = "") -> dict:
    """Every batch of one step for the wave, as the compiled flow runs them."""
    from flows.config.models import iter_steps
    from flows.engine.journeys import JourneyOps

    tp = engine.touchpoint(touchpoint)
    step = next(s for s in iter_steps(tp.steps) if s.id == step_id)
    ops, after, tally = JourneyOps(engine), 0, {}
    while True:
        with engine.store.session() as session:
            done = ops.run_batch(session, touchpoint=tp, step=step, journey_id=journey_id,
                                 wave=wave, lane=lane, after=after, flow_run_id=None, now=now)
            session.commit()
        if not done["count"]:
            return tally
        after = done["last"]
        for name, n in done["outcomes"].items():
            tally[name] = tally.get(name, 0) + n


def resume(engine, journey_id: str, pointer: str, now, mode: str = "at") -> str:
    from flows.engine.journeys import JourneyOps

    with engine.store.session() as session:
        claimed = JourneyOps(engine).claim(session, journey_id=journey_id, pointer=pointer,
                                           mode=mode, now=now)
        session.commit()
    return claimed["wave"]
