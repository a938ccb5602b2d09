"""A fan-out larger than one wave is split into waves, each a unit of work of its own: the
entering run walks the first wave through every step at once (the first email does not wait
for the last batch), and the other waves are queued for whichever worker is free, or driven
by the same run when there is no service to launch them."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from flows.store.tables import Member, WorkUnit
from tests.engine.test_journeys import mail_to
from tests.engine.test_redrive import north_addresses

WAVE = 2


@pytest.fixture
def small_waves(engine, monkeypatch):
    from flows.settings import get_settings, reset_settings

    monkeypatch.setenv("TOUCHPOINTS_WAVE_SIZE", str(WAVE))
    reset_settings()
    engine.settings = get_settings()  # the engine flows find is the one for these settings
    return engine


def test_a_fan_out_is_split_into_waves_of_the_configured_size(small_waves, emit, smtp_server):
    engine = small_waves
    emit("outage.declared", regions=["north"], outage_id="OUT-W1")
    addresses = north_addresses(engine)
    assert len(addresses) > WAVE
    for address in addresses:
        assert len(mail_to(smtp_server, address)) == 1, address
    with engine.store.session() as session:
        units = session.scalars(select(WorkUnit).where(WorkUnit.kind == "wave",
                                                       WorkUnit.label.like("% · wave %"))).all()
        assert {unit.status for unit in units} == {"done"}
        assert session.scalar(select(Member).where(Member.status.in_(("active", "failed")))) is None
    expected = -(-len(addresses) // WAVE)
    assert len(units) == expected - 1  # every wave but the first, which the entering run drove
    assert min(u.label.rsplit(" ", 1)[-1] for u in units) == f"2/{expected}"


def test_under_the_service_the_other_waves_wait_for_a_worker_and_the_first_mails_at_once(
        small_waves, emit, smtp_server, monkeypatch):
    from flows.engine import compiler
    from flows.engine.launch import InProcessLauncher
    from flows.engine.redrive import UnitDriver

    engine = small_waves
    monkeypatch.setattr(compiler, "served", lambda: True)
    emit("outage.declared", regions=["north"], outage_id="OUT-W2")
    acknowledged = [m for m in smtp_server.messages]
    assert 0 < len({m.envelope_to[0] for m in acknowledged}) <= WAVE  # the first wave only
    with engine.store.session() as session:
        queued = session.scalars(select(WorkUnit).where(WorkUnit.kind == "wave",
                                                        WorkUnit.status == "queued")).all()
    assert queued and all(" · wave " in unit.label for unit in queued)

    assert UnitDriver(engine, InProcessLauncher()).launch_queued() >= len(queued)  # and timeouts
    for address in north_addresses(engine):
        assert len(mail_to(smtp_server, address)) == 1, address
