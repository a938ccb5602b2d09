"""Who a journey is for: entry keys and segments streamed from the store in batches."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from sqlalchemy import select

from flows.engine.context import build_context
from flows.errors import ExpressionError
from flows.steps.base import CustomerView
from flows.store.tables import Customer
from flows.templating import compile_expression


def entry_key(touchpoint, *, event: dict, customer: CustomerView | None, config,
              now: datetime) -> str:
    """The key the entry rule locks on (see docs/architecture.md, "Entry rules")."""
    rule = touchpoint.entry.rule
    parts: list[str] = []
    if customer is not None:
        parts.append(customer.id)
    if touchpoint.entry.key:
        ctx = build_context(config=config, customer=customer, event=event, trigger=event,
                            results={}, journey_id="", touchpoint=touchpoint.name, now=now)
        from flows.templating import evaluate
        parts.append(str(evaluate(touchpoint.entry.key, ctx)))
    if rule == "once_per_cycle":
        start = customer.contract_start.isoformat() if customer and customer.contract_start else "-"
        parts.append(f"cycle:{start}")
    elif rule == "every_time" or rule in ("once", "after_end") and not parts:
        parts.append(f"event:{event.get('id')}")
    return "|".join(parts)


def iter_segment(session, touchpoint, *, event: dict, config, batch_size: int,
                 now: datetime) -> Iterator[list[str]]:
    """Yield customer ids matching the segment, a batch at a time (keyset pagination)."""
    from flows.store.customers import to_view

    from flows.engine.pushdown import sql_filter

    expression = touchpoint.audience.segment
    test = compile_expression(expression)
    narrowed = sql_filter(expression, event)  # what SQL can say; the expression still decides
    base = build_context(config=config, customer=None, event=event, trigger=event, results={},
                         journey_id="", touchpoint=touchpoint.name, now=now)
    last = ""
    while True:
        rows = session.scalars(select(Customer).where(Customer.id > last, *narrowed)
                               .order_by(Customer.id).limit(batch_size)).all()
        if not rows:
            return
        last = rows[-1].id
        chosen = []
        for row in rows:
            base["customer"] = to_view(row).as_context()
            try:
                if test(**base):
                    chosen.append(row.id)
            except Exception as exc:
                raise ExpressionError(
                    f"touch point {touchpoint.name}: segment {expression!r} failed for customer "
                    f"{row.id}: {exc}", hint="check the expression with `touchpoints check`") from exc
        if chosen:
            yield chosen
