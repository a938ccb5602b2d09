"""The shipped directory fields do what ops leads expect of them: the CRM's last contact counts
for the check-in touch point (inactivity 30d), and the sample customers are greeted by the names
they go by."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from flows.store.tables import Event
from tests.store.support import csv_file

REPO = Path(__file__).resolve().parents[1]
HEADER = "id,name,email,timezone,last_contact_at"


@pytest.fixture
def shipped_engine(store, tmp_path):
    from flows.config import load_config
    from flows.engine.core import Engine
    from flows.settings import Settings

    settings = Settings(data_dir=tmp_path / "data", config_file=REPO / "touchpoints.yaml",
                        secret_key="test")
    return Engine(settings, config=load_config(REPO / "touchpoints.yaml"), store=store)


def checked_in(engine, now: datetime) -> list[str]:
    """Who the check-in touch point starts for at ``now`` (the service's inactivity sweep)."""
    from flows.service.housekeeping import Housekeeper

    Housekeeper(engine, launcher=None).inactivity_triggers(now)
    with engine.store.session() as session:
        return sorted(session.scalars(select(Event.customer_id).where(
            Event.type == "inactivity.trigger")))


def test_thirty_days_after_an_import_customers_the_crm_saw_recently_get_no_check_in(
        shipped_engine, tmp_path, monkeypatch):
    from flows import clock
    from flows.store.customers import import_customers

    imported = datetime.now(UTC)
    first = csv_file(tmp_path / "day0.csv", "C-1,Ada Lovelace,ada@example.com,UTC,",
                     "C-2,Grace Hopper,grace@example.com,UTC,", header=HEADER)
    assert import_customers(shipped_engine.store, first, actor="test").ok
    # the nightly CRM export of day 25 says someone spoke to Ada on day 24
    monkeypatch.setattr(clock, "now", lambda: imported + timedelta(days=25))
    spoke = (imported + timedelta(days=24)).isoformat(timespec="seconds")
    later = csv_file(tmp_path / "day25.csv", f"C-1,Ada Lovelace,ada@example.com,UTC,{spoke}",
                     "C-2,Grace Hopper,grace@example.com,UTC,", header=HEADER)
    assert import_customers(shipped_engine.store, later, actor="test").ok

    assert checked_in(shipped_engine, imported + timedelta(days=30, hours=1)) == ["C-2"]


def test_a_customer_the_crm_last_saw_45_days_ago_gets_a_check_in_the_day_after_the_import(
        shipped_engine, tmp_path):
    from flows.store.customers import import_customers

    imported = datetime.now(UTC)
    long_ago = (imported - timedelta(days=45)).isoformat(timespec="seconds")
    path = csv_file(tmp_path / "crm.csv", f"C-1,Ada Lovelace,ada@example.com,UTC,{long_ago}",
                    "C-2,Grace Hopper,grace@example.com,UTC,", header=HEADER)
    assert import_customers(shipped_engine.store, path, actor="test").ok

    assert checked_in(shipped_engine, imported + timedelta(days=1)) == ["C-1"]


def test_the_sample_customers_whose_family_name_comes_first_are_greeted_by_their_given_name(
        shipped_engine):
    from flows.engine.preview import preview
    from flows.store.customers import get_customer, import_customers

    import_customers(shipped_engine.store, REPO / "docs" / "examples" / "customers.csv",
                     actor="test")
    with shipped_engine.store.session() as session:
        lan, mei_lin, zoe = (get_customer(session, cid) for cid in ("C-1007", "C-1036", "C-1001"))

    assert (lan.first_name, mei_lin.first_name, zoe.first_name) == ("Lan", "Mei Lin", "Zoë")
    welcome = preview(shipped_engine, "sale", lan)[0]
    assert welcome.subject.startswith("Welcome to Northwind Fibre, Lan:")
    assert "Nguyễn" not in welcome.text.split("\n")[0]
