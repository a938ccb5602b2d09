"""A run's artifact comes from SQL aggregates over that run's audit rows, with at most 50 rows
a section: its cost does not grow with the run or with the rest of the trail."""

from __future__ import annotations

from sqlalchemy import event

from flows.engine.report import MAX_ROWS, run_report
from flows.store import audit

RUN = "run-1"


def rows(action: str, n: int, run: str = RUN, **extra) -> list[dict]:
    return [dict(action=action, result="ok", actor="system", touchpoint="outage",
                 customer_id=f"C-{i}", flow_run_id=run, reason=extra.get("reason", ""),
                 detail={"to": f"c{i}@example.com", "subject": "Outage"}) for i in range(n)]


def test_the_artifact_counts_every_row_lists_fifty_and_says_how_many_more(store):
    with store.session() as session:
        audit.record_many(session, rows("email.sent", MAX_ROWS + 10)
                          + rows("email.suppressed", 2, reason="unsubscribed")
                          + rows("email.sent", 7, run="another-run"))
    with store.session() as session:
        statements: list[str] = []
        listener = lambda *args: statements.append(args[2])
        event.listen(store.engine, "before_cursor_execute", listener)
        try:
            markdown = run_report(session, touchpoint="outage", journey_id="j-1",
                                  flow_run_id=RUN, summary={"open": 0, "completed": 62})
        finally:
            event.remove(store.engine, "before_cursor_execute", listener)
    assert "| email.sent | 60 |" in markdown and "| email.suppressed | 2 |" in markdown
    assert "## Sent (60)" in markdown and "…and 10 more" in markdown
    assert markdown.count("@example.com | Outage |") == MAX_ROWS  # the other run's are not here
    assert "## Skipped (2)" in markdown and "unsubscribed" in markdown
    queries = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(queries) == 3  # the counts, then one bounded query per section present


def test_a_run_with_no_audit_rows_still_says_where_the_journey_stands(store):
    with store.session() as session:
        markdown = run_report(session, touchpoint="sale", journey_id="j-2", flow_run_id=None,
                              summary={"open": 1, "completed": 0})
    assert "Journey `j-2`" in markdown and "Members still in the journey: 1" in markdown
