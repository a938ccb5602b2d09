"""A few weeks of figures for the page and artifact tests: surveys of three touch points,
tasks of three teams and the outages of tests/reports/test_outages.py. Fixed dates; ask for
the report ``since=SINCE``."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from flows.store.tables import Journey, Survey, Task
from tests.reports.test_outages import _fill as fill_outages

SINCE = datetime(2026, 10, 26, tzinfo=UTC)  # Monday of 2026-W44
WEEKS = 6
TOUCHPOINTS = {"sale": ("csat", 4.2), "install": ("nps", 8.2), "outage": ("csat", 3.4)}
TEAMS = {"install": 0.9, "billing": 0.7, "account-management": 0.5}  # share acknowledged in SLA


def fill(session, *, seed: int = 7) -> None:
    rng = random.Random(seed)
    fill_outages(session)
    session.add(Journey(id="sample", touchpoint="sale", entry_key="sample", customer_id="C-1",
                        status="done", started_at=SINCE))
    n = 0
    for week in range(WEEKS):
        monday = SINCE + timedelta(weeks=week)
        for tp, (question, mean) in TOUCHPOINTS.items():
            top = 10 if question == "nps" else 5
            for _ in range(12):
                n += 1
                at = monday + timedelta(hours=rng.randrange(9, 24 * 6))
                score = max(0 if top == 10 else 1, min(top, round(rng.gauss(mean + week / 8, 1.6))))
                session.add(Survey(id=f"w{n}", key=f"w{n}", journey_id="sample", touchpoint=tp,
                                   step_id=f"{tp}_{question}", customer_id=f"C-{n}",
                                   question=question, text="?", created_at=at - timedelta(days=1),
                                   expires_at=at + timedelta(days=7), score=score,
                                   comment="Nobody called back" if score <= 3 else None,
                                   answered_at=at))
        for team, share in TEAMS.items():
            for _ in range(5):
                n += 1
                created = monday + timedelta(hours=rng.randrange(9, 24 * 5))
                late = rng.random() > share
                acked = created + timedelta(hours=30 if late else rng.randrange(1, 20))
                session.add(Task(id=f"w{n}", key=f"w{n}", journey_id="sample", touchpoint="sale",
                                 customer_id=f"C-{n}", team=team, title="x", body="",
                                 created_at=created, due_at=created + timedelta(days=1),
                                 status="completed", acknowledged_at=acked,
                                 completed_at=acked + timedelta(hours=4),
                                 escalation_level=1 if late else 0))
