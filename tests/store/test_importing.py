"""Importing the fields a CRM knows better than a name can tell: how the customer is greeted
(``first_name`` / ``preferred_name``) and when we were last in touch (``last_contact_at``), each
landing in its own column, not in ``attributes``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from flows.store.customers import get_customer, import_customers, upsert_customer
from flows.store.tables import Customer
from tests.store.support import csv_file

HEADER = "id,name,email,timezone,first_name,last_contact_at"


def customer(store, customer_id: str) -> Customer:
    with store.session() as session:
        row = session.scalar(select(Customer).where(Customer.id == customer_id))
        session.expunge(row)
        return row


def greeting(store, customer_id: str) -> str:
    with store.session() as session:
        return get_customer(session, customer_id).first_name


def test_a_first_name_column_is_how_the_customer_is_greeted(store, tmp_path):
    path = csv_file(tmp_path / "crm.csv",
                    "C-1,Nguyễn Thị Lan,lan@example.com,Europe/London,Lan,",
                    "C-2,Mei Lin Chen,meilin@example.com,Europe/London,Mei Lin,",
                    header=HEADER)
    report = import_customers(store, path, actor="test")

    assert report.ok
    assert (greeting(store, "C-1"), greeting(store, "C-2")) == ("Lan", "Mei Lin")
    assert customer(store, "C-1").preferred_name == "Lan"
    assert "first_name" not in customer(store, "C-1").attributes


def test_a_customer_without_a_first_name_is_greeted_by_the_first_word_of_the_name(store, tmp_path):
    path = csv_file(tmp_path / "crm.csv", "C-1,Zoë Harper,zoe@example.com,Europe/London,,",
                    header=HEADER)
    import_customers(store, path, actor="test")

    assert greeting(store, "C-1") == "Zoë"
    assert customer(store, "C-1").preferred_name is None


def test_a_preferred_name_column_works_too_and_two_different_names_are_a_bad_row(store, tmp_path):
    path = csv_file(tmp_path / "crm.csv",
                    "C-1,Nguyễn Thị Lan,lan@example.com,Europe/London,Lan",
                    "C-2,Mei Lin Chen,meilin@example.com,Europe/London,Mei Lin,Mei",
                    header="id,name,email,timezone,preferred_name,first_name")
    report = import_customers(store, path, actor="test")

    assert greeting(store, "C-1") == "Lan"
    assert report.rejected == 1 and report.errors[0].line == 3
    assert "first_name 'Mei' and preferred_name 'Mei Lin' differ" in report.errors[0].reason


def test_last_contact_at_lands_in_its_column_in_utc_with_a_date_in_the_customers_own_zone(
        store, tmp_path):
    path = csv_file(tmp_path / "crm.csv",
                    "C-1,Ada Lovelace,ada@example.com,Europe/London,,2026-07-01",
                    "C-2,Grace Hopper,grace@example.com,America/New_York,,2026-07-01T09:30",
                    "C-3,Alan Turing,alan@example.com,Europe/London,,2026-07-01T09:30:00Z",
                    header=HEADER)
    assert import_customers(store, path, actor="test").ok

    assert customer(store, "C-1").last_contact_at == datetime(2026, 6, 30, 23, 0, tzinfo=UTC)
    assert customer(store, "C-2").last_contact_at == datetime(2026, 7, 1, 13, 30, tzinfo=UTC)
    assert customer(store, "C-3").last_contact_at == datetime(2026, 7, 1, 9, 30, tzinfo=UTC)
    assert "last_contact_at" not in customer(store, "C-1").attributes


def test_an_older_last_contact_never_hides_a_newer_one_and_the_same_file_changes_nothing(
        store, tmp_path):
    newer = csv_file(tmp_path / "new.csv", "C-1,Ada Lovelace,ada@example.com,UTC,,2026-07-10",
                     header=HEADER)
    older = csv_file(tmp_path / "old.csv", "C-1,Ada Lovelace,ada@example.com,UTC,,2026-07-01",
                     header=HEADER)
    import_customers(store, newer, actor="test")

    assert import_customers(store, newer, actor="test").unchanged == 1
    assert import_customers(store, older, actor="test").unchanged == 1
    assert customer(store, "C-1").last_contact_at == datetime(2026, 7, 10, tzinfo=UTC)


def test_a_last_contact_that_is_not_a_time_or_is_in_the_future_is_a_bad_row(store, tmp_path):
    future = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
    path = csv_file(tmp_path / "crm.csv",
                    "C-1,Ada Lovelace,ada@example.com,UTC,,last tuesday",
                    f"C-2,Grace Hopper,grace@example.com,UTC,,{future}",
                    header=HEADER)
    report = import_customers(store, path, actor="test")

    assert report.rejected == 2 and report.created == 0
    assert "'last tuesday' is not a date or time" in report.errors[0].reason
    assert "is in the future" in report.errors[1].reason


def test_the_api_upsert_takes_the_same_fields(store):
    with store.session() as session:
        upsert_customer(session, {"id": "C-9", "name": "Nguyễn Thị Lan", "email": "lan@example.com",
                                  "timezone": "UTC", "first_name": "Lan",
                                  "last_contact_at": "2026-07-01T10:00:00+00:00"}, actor="test")
    assert greeting(store, "C-9") == "Lan"
    assert customer(store, "C-9").last_contact_at == datetime(2026, 7, 1, 10, tzinfo=UTC)
