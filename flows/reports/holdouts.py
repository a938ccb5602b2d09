"""Does a touch point work? Its treated members against its holdout (control) group.

For every touch point whose members carry a cohort (``holdout:`` in touchpoints.yaml, see
flows/engine/holdouts.py), two comparisons, each with n and a 95% confidence interval:

* the **goal rate**: the share of members that reached a goal of the journey (an audit row
  with result ``goal``), each group with a Wilson interval, and the difference treated minus
  holdout with a normal-approximation interval;
* **later NPS**: each member's first NPS answer (from any touch point) given after the member
  entered and within ``nps_within`` (default 90 days); NPS = 100 × (promoters − detractors) / n,
  with the normal-approximation interval of a mean of +1/0/−1 scores, and the difference.

An interval whose difference excludes 0 says the touch point changes the outcome (at 95%); a
small n shows as a wide interval, never as a verdict. Two GROUP BY queries (goals) and one
windowed query over the answers; SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from math import sqrt
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from flows.store.tables import AuditRow, Journey, Member, Survey

HOLDOUT, TREATED = "holdout", "treated"
Z95 = 1.959963984540054
NPS_WITHIN = timedelta(days=90)


# --------------------------------------------------------------------------- statistics
def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (None when n is 0)."""
    if n <= 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low = 0.0 if successes == 0 else max(0.0, centre - half)   # exact at the edges
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def difference(p1: float, n1: int, p2: float, n2: int,
               z: float = Z95) -> tuple[float, tuple[float, float]] | None:
    """p1 − p2 and its normal-approximation interval (None when a group is empty)."""
    if n1 <= 0 or n2 <= 0:
        return None
    se = sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    d = p1 - p2
    return d, (d - z * se, d + z * se)


def nps_figure(promoters: int, detractors: int, n: int, z: float = Z95) -> dict[str, Any]:
    """NPS with its interval: the mean of +1 (promoter), 0, −1 (detractor), times 100."""
    if n <= 0:
        return {"n": 0, "nps": None, "ci": None, "variance": None}
    pro, det = promoters / n, detractors / n
    mean = pro - det
    variance = pro + det - mean * mean
    half = z * sqrt(variance / n)
    return {"n": n, "nps": round(100 * mean, 1),
            "ci": [round(max(-100.0, 100 * (mean - half)), 1),
                   round(min(100.0, 100 * (mean + half)), 1)],
            "variance": variance, "mean": mean}


# --------------------------------------------------------------------------- queries
def _where(since: datetime | None, touchpoint: str | None) -> list:
    out = [Member.cohort.in_((HOLDOUT, TREATED))]
    if since is not None:
        out.append(Journey.started_at >= since)
    if touchpoint:
        out.append(Journey.touchpoint == touchpoint)
    return out


def _goals(session: Session, since, touchpoint) -> dict[tuple[str, str], list[int]]:
    """(touch point, cohort) → [members, members that reached a goal]."""
    reached = (select(AuditRow.journey_id, AuditRow.customer_id)
               .where(AuditRow.result == "goal", AuditRow.journey_id.is_not(None))
               .distinct().subquery())
    q = (select(Journey.touchpoint, Member.cohort, func.count(),
                func.sum(case((reached.c.journey_id.is_not(None), 1), else_=0)))
         .select_from(Member)
         .join(Journey, Journey.id == Member.journey_id)
         .outerjoin(reached, and_(reached.c.journey_id == Member.journey_id,
                                  reached.c.customer_id == Member.customer_id))
         .where(*_where(since, touchpoint))
         .group_by(Journey.touchpoint, Member.cohort))
    return {(tp, cohort): [n, int(goals or 0)] for tp, cohort, n, goals in session.execute(q)}


def _later_nps(session: Session, since, touchpoint,
               within: timedelta) -> dict[tuple[str, str], list[int]]:
    """(touch point, cohort) → [answers, promoters, detractors], one answer per member: its
    first NPS answer after it entered, within ``within``."""
    answered = and_(Survey.customer_id == Member.customer_id, Survey.question == "nps",
                    Survey.answered_at.is_not(None), Survey.score.is_not(None),
                    Survey.answered_at >= Journey.started_at)
    first = func.row_number().over(partition_by=Member.id, order_by=Survey.answered_at)
    ranked = (select(Journey.touchpoint.label("tp"), Member.cohort.label("cohort"),
                     Journey.started_at.label("entered"), Survey.answered_at.label("at"),
                     Survey.score.label("score"), first.label("rank"))
              .select_from(Member)
              .join(Journey, Journey.id == Member.journey_id)
              .join(Survey, answered)
              .where(*_where(since, touchpoint))
              .subquery())
    q = (select(ranked.c.tp, ranked.c.cohort, ranked.c.entered, ranked.c.at, ranked.c.score)
         .where(ranked.c.rank == 1))
    out: dict[tuple[str, str], list[int]] = {}
    for tp, cohort, entered, at, score in session.execute(q):
        if at - entered > within:  # compared in Python: interval arithmetic differs by dialect
            continue
        counts = out.setdefault((tp, cohort), [0, 0, 0])
        counts[0] += 1
        counts[1] += score >= 9
        counts[2] += score <= 6
    return out


def _rounded(interval) -> list[float] | None:
    return None if interval is None else [round(100 * interval[0], 1), round(100 * interval[1], 1)]


def effects(session: Session, *, since: datetime | None = None, touchpoint: str | None = None,
            nps_within: timedelta = NPS_WITHIN) -> dict[str, dict[str, Any]]:
    """{touch point: {"goal": {...}, "nps": {...}}} for every touch point with a holdout; rates
    and NPS in percent / NPS points, intervals as [low, high]."""
    goals = _goals(session, since, touchpoint)
    nps = _later_nps(session, since, touchpoint, nps_within)
    out: dict[str, dict[str, Any]] = {}
    for tp in sorted({tp for tp, _ in goals}):
        goal: dict[str, Any] = {}
        for cohort in (TREATED, HOLDOUT):
            n, reached = goals.get((tp, cohort), [0, 0])
            goal[cohort] = {"n": n, "reached": reached,
                            "rate": round(100 * reached / n, 1) if n else None,
                            "ci": _rounded(wilson(reached, n))}
        t, h = goals.get((tp, TREATED), [0, 0]), goals.get((tp, HOLDOUT), [0, 0])
        diff = difference(t[1] / t[0] if t[0] else 0, t[0], h[1] / h[0] if h[0] else 0, h[0])
        goal["difference"] = None if diff is None else {
            "points": round(100 * diff[0], 1), "ci": _rounded(diff[1])}
        scores: dict[str, Any] = {}
        figures = {}
        for cohort in (TREATED, HOLDOUT):
            answers, promoters, detractors = nps.get((tp, cohort), [0, 0, 0])
            figures[cohort] = nps_figure(promoters, detractors, answers)
            scores[cohort] = {k: figures[cohort][k] for k in ("n", "nps", "ci")}
        ft, fh = figures[TREATED], figures[HOLDOUT]
        if ft["n"] and fh["n"]:
            d = ft["mean"] - fh["mean"]
            half = Z95 * sqrt(ft["variance"] / ft["n"] + fh["variance"] / fh["n"])
            scores["difference"] = {"points": round(100 * d, 1),
                                    "ci": [round(100 * (d - half), 1), round(100 * (d + half), 1)]}
        else:
            scores["difference"] = None
        out[tp] = {"goal": goal, "nps": scores}
    return out


# --------------------------------------------------------------------------- text
def _ci(interval) -> str:
    return "n/a" if interval is None else f"[{interval[0]:g}, {interval[1]:g}]"


def to_text(data: dict[str, dict[str, Any]]) -> str:
    """The holdout section of `touchpoints report` (empty when no touch point has one)."""
    if not data:
        return ""
    lines = ["", "Holdouts: treated vs control (95% intervals)"]
    for tp, entry in data.items():
        g, s = entry["goal"], entry["nps"]
        lines.append(f"  {tp}")
        for cohort in (TREATED, HOLDOUT):
            f = g[cohort]
            rate = "n/a" if f["rate"] is None else f"{f['rate']:g}%"
            lines.append(f"    goal    {cohort:<8} n={f['n']:<6} {rate:>7} {_ci(f['ci'])}")
        d = g["difference"]
        lines.append("    goal    difference " + ("n/a" if d is None else
                                                  f"{d['points']:+g} points {_ci(d['ci'])}"))
        for cohort in (TREATED, HOLDOUT):
            f = s[cohort]
            value = "n/a" if f["nps"] is None else f"{f['nps']:g}"
            lines.append(f"    NPS     {cohort:<8} n={f['n']:<6} {value:>7} {_ci(f['ci'])}")
        d = s["difference"]
        lines.append("    NPS     difference " + ("n/a" if d is None else
                                                  f"{d['points']:+g} points {_ci(d['ci'])}"))
    return "\n".join(lines) + "\n"
