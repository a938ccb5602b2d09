"""Importing customers from CSV and JSON files: bad rows are reported where they are in the
file, good rows are kept, and importing the same file twice changes nothing."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select

from flows.errors import NotFoundError, TouchpointsError
from flows.store import audit
from flows.store.customers import import_customers, import_rows
from flows.store.tables import AuditRow, Customer, Preference
from tests.store.support import csv_file, write

GOOD = [
    "C-1001,Ada Lovelace,ada@example.com,Europe/London,north,Fibre 500,2025-01-01,2026-12-31,sam@northwind.example,surveys;Marketing",
    "C-1002,Zoë Ångström-Nørgaard,zoe@example.com,Europe/Oslo,north,,,,,",
    "C-1003,Grace Hopper,grace@example.com,America/New_York,south,Fibre 100,2024-05-01,,,",
]


def customers(store) -> dict[str, Customer]:
    with store.session() as session:
        return {c.id: c for c in session.scalars(select(Customer))}


def prefs(store) -> dict[tuple[str, str], tuple[bool, str]]:
    with store.session() as session:
        return {(p.customer_id, p.category): (p.subscribed, p.source)
                for p in session.scalars(select(Preference))}


def test_a_csv_file_is_imported_with_its_preferences_and_extra_columns(store, tmp_path):
    path = csv_file(tmp_path / "crm.csv", *[row + ",gold" for row in GOOD],
                    header="id,name,email,timezone,region,plan,contract_start,contract_end,"
                           "account_owner,unsubscribed,Loyalty Tier")
    report = import_customers(store, path, actor="cli:ops")
    assert (report.created, report.updated, report.unchanged, report.rejected) == (3, 0, 0, 0)
    ada = customers(store)["C-1001"]
    assert (ada.name, ada.email, ada.timezone, ada.region, ada.plan) == (
        "Ada Lovelace", "ada@example.com", "Europe/London", "north", "Fibre 500")
    assert (ada.contract_start, ada.contract_end) == (date(2025, 1, 1), date(2026, 12, 31))
    assert ada.account_owner == "sam@northwind.example"
    assert ada.attributes == {"loyalty_tier": "gold"}
    assert customers(store)["C-1002"].plan is None
    assert prefs(store) == {("C-1001", "surveys"): (False, "import"),
                            ("C-1001", "marketing"): (False, "import")}


def test_bad_csv_rows_are_reported_by_line_and_the_good_rows_are_kept(store, tmp_path):
    path = csv_file(
        tmp_path / "crm.csv",
        GOOD[0],
        "C-2001,Bob,bob@,Europe/London,,,,,,",                           # line 3
        ",No Id,noid@example.com,Europe/London,,,,,,",                   # line 4
        "C-2003,Mars,mars@example.com,Mars/Olympus_Mons,,,,,,",          # line 5
        "",                                                              # line 6: blank
        'C-2004,"Two',                                                   # line 7 ...
        'Lines",two@example.com,UTC,,,,,,',                              # ... and 8
        "C-2005,Late,late@example.com,UTC,,,2026-02-01,2025-01-01,,",    # line 9
        "C-2006,Date,date@example.com,UTC,,,01/02/2025,,,",              # line 10
        "C-2007,Owner,owner@example.com,UTC,,,,,not-an-email,",          # line 11
        "C-2008,Too,many@example.com,UTC,,,,,,,extra,values",            # line 12
        GOOD[1],                                                         # line 13
        "C-1001,Ada Again,ada2@example.com,UTC,,,,,,",                   # line 14
        "C-2009,Bad Cat,cat@example.com,UTC,,,,,,surveys;no way",        # line 15
    )
    report = import_customers(store, path, actor="cli:ops")
    assert (report.created, report.rejected) == (2, 10)
    assert sorted(customers(store)) == ["C-1001", "C-1002"]
    name = str(path)
    assert report.problems() == [
        f"{name}:3: email: 'bob@' is not an email address",
        f"{name}:4: id is required",
        f"{name}:5: timezone: 'Mars/Olympus_Mons' is not a time zone (use a name like Europe/London)",
        f"{name}:7: name: holds a line break or another control character",
        f"{name}:9: contract_end 2025-01-01 is before contract_start 2026-02-01",
        f"{name}:10: contract_start: '01/02/2025' is not a date (use YYYY-MM-DD)",
        f"{name}:11: account_owner: 'not-an-email' is not an email address",
        f"{name}:12: has 12 values but the header names 10 columns (a comma inside a value needs quotes)",
        f"{name}:14: id C-1001 appears twice (first on line 2)",
        f"{name}:15: unsubscribed: 'no way' is not a category name",
    ]


def test_a_missing_required_value_names_every_problem_of_the_row(store, tmp_path):
    path = csv_file(tmp_path / "crm.csv", "C-1,,,,,,,,,")
    [error] = import_customers(store, path, actor="cli:ops").errors
    assert error.reason == "name is required; email is required; timezone is required"
    assert (error.line, error.customer_id) == (2, "C-1")


def test_importing_the_same_file_twice_changes_nothing(store, tmp_path):
    path = csv_file(tmp_path / "crm.csv", *GOOD)
    first = import_customers(store, path, actor="cli:ops")
    before = {cid: (c.updated_at, c.created_at) for cid, c in customers(store).items()}
    before_prefs = prefs(store)
    second = import_customers(store, path, actor="cli:ops")
    assert (first.created, second.created, second.updated, second.unchanged) == (3, 0, 0, 3)
    assert {cid: (c.updated_at, c.created_at) for cid, c in customers(store).items()} == before
    assert prefs(store) == before_prefs
    with store.session() as session:
        rows = audit.query(session, action="customers.imported")
        assert len(rows) == 2 and session.scalar(select(func.count()).select_from(AuditRow)) == 2
        assert rows[1].detail["unchanged"] == 3 and rows[1].detail["file"] == str(path)
        assert rows[0].detail["sha256"] == rows[1].detail["sha256"]


def test_a_changed_row_updates_only_that_customer(store, tmp_path):
    import_customers(store, csv_file(tmp_path / "a.csv", *GOOD), actor="cli:ops")
    before = customers(store)
    changed = GOOD[2].replace("Fibre 100", "Fibre 900")
    report = import_customers(store, csv_file(tmp_path / "b.csv", GOOD[0], GOOD[1], changed),
                              actor="cli:ops")
    after = customers(store)
    assert (report.updated, report.unchanged) == (1, 2)
    assert after["C-1003"].plan == "Fibre 900"
    assert after["C-1003"].updated_at > before["C-1003"].updated_at
    assert after["C-1001"].updated_at == before["C-1001"].updated_at


def test_an_import_unsubscribes_but_never_resubscribes(store, tmp_path):
    import_customers(store, csv_file(tmp_path / "a.csv", GOOD[0]), actor="cli:ops")
    without = GOOD[0].replace("surveys;Marketing", "")
    report = import_customers(store, csv_file(tmp_path / "b.csv", without), actor="cli:ops")
    assert report.unchanged == 1
    assert prefs(store)[("C-1001", "surveys")] == (False, "import")
    with store.session() as session:
        session.get(Preference, ("C-1001", "surveys")).subscribed = True
    report = import_customers(store, csv_file(tmp_path / "c.csv", GOOD[0]), actor="cli:ops")
    assert report.updated == 1 and prefs(store)[("C-1001", "surveys")] == (False, "import")


def test_unsubscribes_from_unknown_categories_are_refused_when_the_categories_are_known(store, tmp_path):
    path = csv_file(tmp_path / "a.csv", GOOD[0], GOOD[1].replace(",,,,,", ",,,,,newsletter"))
    report = import_customers(store, path, actor="cli:ops",
                              categories={"surveys", "marketing", "service"})
    assert report.created == 1
    expected = (f"{path}:3: unsubscribed: unknown category 'newsletter' "
                "(the categories are: marketing, service, surveys)")
    assert report.problems() == [expected]


def test_a_json_list_is_imported_and_bad_items_are_named_by_item_and_line(store, tmp_path):
    path = write(tmp_path / "crm.json", """[
  {"id": "C-1", "name": "Ada", "email": "ada@example.com", "timezone": "Europe/London",
   "unsubscribed": ["surveys"], "attributes": {"tier": "gold"}, "segment": 7},
  {
    "id": "C-2", "name": "Bo", "email": "bo@example", "timezone": "UTC"
  },
  "not an object",
  {"id": 1003, "name": "Číslo", "email": "cislo@example.cz", "timezone": "Europe/Prague",
   "contract_start": "2025-03-01", "contract_end": "2026-02-28"}
]
""")
    report = import_customers(store, path, actor="cli:ops")
    assert (report.created, report.rejected) == (2, 2)
    assert report.problems() == [
        f"{path}:4: item 2: email: 'bo@example' is not an email address",
        f"{path}:7: item 3: is not an object but str",
    ]
    rows = customers(store)
    assert rows["C-1"].attributes == {"tier": "gold", "segment": 7}
    assert rows["1003"].name == "Číslo" and rows["1003"].contract_end == date(2026, 2, 28)
    assert prefs(store) == {("C-1", "surveys"): (False, "import")}


def test_a_json_object_with_a_customers_list_is_imported(store, tmp_path):
    path = write(tmp_path / "crm.json", '{"exported": "2026-11-01",\n "customers": [\n'
                 '  {"id": "C-1", "name": "Ada", "email": "ada@example.com", "timezone": "UTC"},\n'
                 '  {"id": "C-2", "name": "Bo", "email": "bo@example.com"}\n]}')
    report = import_customers(store, path, actor="cli:ops")
    assert report.created == 1
    assert report.problems() == [f"{path}:4: item 2: timezone is required"]


def test_non_ascii_names_round_trip_exactly(store, tmp_path):
    names = ["Zoë Ångström-Nørgaard", "Ђорђе Вајферт", "渡辺 美咲", "Siân O'Connor", "Łukasz Żółć 🚀"]
    rows = [f"C-{i},{name},u{i}@example.com,UTC,,,,,," for i, name in enumerate(names)]
    import_customers(store, csv_file(tmp_path / "intl.csv", *rows), actor="cli:ops")
    assert [customers(store)[f"C-{i}"].name for i in range(len(names))] == names
    again = import_customers(store, csv_file(tmp_path / "intl.csv", *rows), actor="cli:ops")
    assert again.unchanged == len(names)


def test_an_excel_csv_with_a_byte_order_mark_and_semicolons_is_read(store, tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffid;name;email;timezone;unsubscribed\r\n"
                     'C-1;Ada;ada@example.com;Europe/London;"surveys;marketing"\r\n'.encode())
    report = import_customers(store, path, actor="cli:ops")
    assert report.created == 1 and set(prefs(store)) == {("C-1", "surveys"), ("C-1", "marketing")}


@pytest.mark.parametrize("name, content, message", [
    ("crm.xlsx", "x", "cannot import a .xlsx file"),
    ("crm.csv", "name,email\nAda,ada@example.com\n", "crm.csv:1: the header has no column id, timezone"),
    ("crm.csv", "id,name,email,timezone,email\n", "names column email twice"),
    ("crm.csv", "", "the file is empty"),
    ("crm.json", '[{"id": "C-1",}]', "crm.json:1:15: not valid JSON"),
    ("crm.json", '{"people": []}', "expected a list of customers"),
])
def test_problems_with_the_whole_file_stop_the_import(sqlite_store, tmp_path, name, content, message):
    path = write(tmp_path / name, content)
    with pytest.raises(TouchpointsError, match=message) as caught:
        import_customers(sqlite_store, path, actor="cli:ops")
    assert caught.value.hint or "twice" in message or "empty" in message
    assert customers(sqlite_store) == {}


def test_a_file_that_is_not_utf8_is_refused_with_the_line(sqlite_store, tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("id,name,email,timezone\nC-1,Zoë,zoe@example.com,UTC\n".encode("latin-1"))
    with pytest.raises(TouchpointsError, match="latin1.csv:2: the file is not UTF-8") as caught:
        import_customers(sqlite_store, path, actor="cli:ops")
    assert "UTF-8" in caught.value.hint


def test_a_missing_file_is_not_found(sqlite_store, tmp_path):
    with pytest.raises(NotFoundError, match="no such file"):
        import_customers(sqlite_store, tmp_path / "nope.csv", actor="cli:ops")


def test_import_rows_takes_api_bodies_and_numbers_errors_from_zero(store):
    with store.session() as session:
        report = import_rows(session, [
            {"id": "C-1", "name": "Ada", "email": "ada@example.com", "timezone": "UTC"},
            {"id": "C-2", "name": "Bo", "email": "bo@example.com", "timezone": "Nowhere"},
        ], actor="api:k1")
    assert (report.created, [e.index for e in report.errors]) == (1, [1])
    assert report.as_dict()["errors"][0]["reason"].startswith("timezone: 'Nowhere'")
    with store.session() as session:
        [row] = audit.query(session, action="customers.imported")
        assert (row.actor, row.result, row.detail["rejected"]) == ("api:k1", "partial", 1)


def test_a_large_file_is_imported_in_chunks(store, tmp_path):
    rows = [f"C-{i:05d},Customer {i},c{i}@example.com,UTC,r{i % 3},,,,," for i in range(1_200)]
    path = csv_file(tmp_path / "big.csv", *rows)
    assert import_customers(store, path, actor="cli:ops").created == 1_200
    assert import_customers(store, path, actor="cli:ops").unchanged == 1_200
