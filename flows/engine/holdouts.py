"""Holdouts: a touch point's control group.

A touch point with ``holdout: 10%`` puts that share of its entrants in the cohort ``holdout``
(``members.cohort``) and the rest in ``treated``. The draw is deterministic: a hash of the touch
point, the journey's entry key and the customer id, so re-running an entry decides the same
way, and each new entry key (a new contract cycle, a new outage) is a fresh draw. Every holdout
is audited (``journey.holdout``).

A holdout member walks the journey like any other (waits, branches, goals and exits are
recorded), but no non-transactional email reaches the customer: emails and surveys to the
customer are suppressed with the reason ``holdout`` (flows/engine/delivery.py). Transactional
mail (an outage notice, an invoice) still goes, and so does mail to teams and account owners:
handoff tasks are created as usual. Touch points without ``holdout`` leave ``cohort`` empty.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

HOLDOUT = "holdout"
TREATED = "treated"
REASON = "holdout"


def draw(touchpoint: str, entry_key: str, customer_id: str) -> float:
    """A number in [0, 1) fixed by its inputs."""
    digest = hashlib.sha256(f"{touchpoint}\x1f{entry_key}\x1f{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64


def cohort_of(touchpoint, entry_key: str, customer_id: str) -> str | None:
    share = getattr(touchpoint, "holdout", None)
    if not share:
        return None
    return HOLDOUT if draw(touchpoint.name, entry_key, customer_id) < share else TREATED


def assign(session, *, touchpoint, journey, members: list, flow_run_id: str | None,
           now: datetime) -> int:
    """Set the cohort of ``members`` (new rows of ``journey``) and audit each holdout; the
    number held out."""
    if not getattr(touchpoint, "holdout", None):
        return 0
    from flows.store import audit

    held = []
    for member in members:
        member.cohort = cohort_of(touchpoint, journey.entry_key, member.customer_id)
        if member.cohort == HOLDOUT:
            held.append(member.customer_id)
    if held:
        share = f"{touchpoint.holdout * 100:g}%"
        audit.record_many(session, [dict(
            action="journey.holdout", result=HOLDOUT, actor="system",
            touchpoint=touchpoint.name, customer_id=cid, journey_id=journey.id,
            flow_run_id=flow_run_id, at=now,
            reason=f"in the {share} control group: no non-transactional customer email",
            detail={"entry_key": journey.entry_key, "share": touchpoint.holdout})
            for cid in held])
    return len(held)


def is_held_out(ctx, customer_id: str) -> bool:
    """Whether the batch's member for ``customer_id`` is in the control group."""
    return customer_id in getattr(ctx, "holdouts", ())
