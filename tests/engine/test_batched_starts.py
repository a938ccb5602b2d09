"""Starts of one-customer journeys queued together share one Prefect run (a flow run costs
about a second of Prefect server time) and one task run (each costs the server 60-85 ms): every
journey is entered and walked in it, the run carries a ``customer:<id>`` tag for each, and its
artifact lists every journey; its mail goes over one SMTP connection. A refused start does not
stop the others."""

from __future__ import annotations

from sqlalchemy import select

from flows.store.tables import Journey, WorkUnit
from tests.engine.test_journeys import mail_to

SIGNED = ["C-1001", "C-1002", "C-1003"]


def task_run_names(client, flow_run_id, timeout: float = 60) -> list[str]:
    """The task runs of a run by task name, once the server has recorded its last (``report``):
    the server records task runs from events, a moment after they ran."""
    import time

    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout
    while True:
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[flow_run_id])))
        names = sorted(t.name for t in tasks)
        if "report" in names or time.monotonic() > deadline:
            return names
        time.sleep(0.5)


def test_queued_starts_of_one_touch_point_share_a_run_and_each_customer_is_tagged(
        engine, smtp_server, prefect_server):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.engine.dispatch import Dispatcher
    from flows.engine.launch import InProcessLauncher
    from flows.engine.redrive import UnitDriver
    from flows.store.tables import Customer

    outbox = Dispatcher(engine, InProcessLauncher(), outbox=True)
    example = dict(engine.config.event_types()["contract.signed"].example or {})
    for customer in SIGNED + ["C-1001"]:  # the repeat is refused by the entry rule
        outbox.emit(type="contract.signed", customer_id=customer, data=example, source="test",
                    actor="test")
    launcher = InProcessLauncher()
    assert UnitDriver(engine, launcher).launch_queued() == 4
    with engine.store.session() as session:
        journeys = session.scalars(select(Journey).where(Journey.touchpoint == "sale")).all()
        emails = {c.id: c.email for c in session.scalars(select(Customer))}
        units = session.scalars(select(WorkUnit).where(WorkUnit.kind == "start")).all()
    assert sorted(j.customer_id for j in journeys) == SIGNED
    for customer in SIGNED:
        assert len(mail_to(smtp_server, emails[customer])) == 1, customer
    assert len(smtp_server.messages) > len(SIGNED)  # the welcomes and the install team's tasks
    assert smtp_server.connections == 1  # all of the batch's mail over one SMTP connection
    assert {u.status for u in units} == {"done"}
    assert len({u.flow_run_id for u in units}) == 1  # one run for the four starts

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(units[0].flow_run_id)
        artifacts = client.read_artifacts(flow_run_filter=FlowRunFilter(  # this run's only
            id=FlowRunFilterId(any_=[run.id])))
        names = task_run_names(client, run.id)
    # the lease, one start for the whole batch (named after it), the report
    assert len(names) == 3 and "lease" in names and "report" in names, names
    assert any("4 customers" in n for n in names), names
    assert {f"customer:{c}" for c in SIGNED} <= set(run.tags)
    assert "4 customers (C-1001 … C-1001)" in run.name or "4 customers" in run.name
    report = next(a for a in artifacts if a.flow_run_id == run.id)
    for journey in journeys:
        assert journey.customer_id in report.data and journey.id in report.data
    assert "Not started" in report.data  # the repeated start, with its reason


def test_starts_of_segment_touch_points_keep_a_run_each(engine):
    from flows.engine.launch import InProcessLauncher
    from flows.engine.redrive import UnitDriver

    driver = UnitDriver(engine, InProcessLauncher())
    units = [{"id": f"start:outage:{n}", "kind": "start", "touchpoint": "outage", "params": {}}
             for n in range(3)]
    units += [{"id": f"start:sale:{n}", "kind": "start", "touchpoint": "sale",
               "params": {"customer_id": f"C-{n}"}} for n in range(3)]
    groups = driver._batches(units)
    assert [len(g) for g in groups] == [1, 1, 1, 3]
