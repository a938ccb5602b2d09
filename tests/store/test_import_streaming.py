"""Customer files are read a piece at a time and saved a chunk at a time: the rows, their
lines and the whole-file errors are those of reading the whole file at once (``json.loads``,
``csv.reader`` over the whole text), and what is stored is what checking and upserting each
row on its own would store, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from flows.errors import ImportRowsError, TouchpointsError
from flows.store import audit, customer_files, importing
from flows.store.customer_checks import CHUNK
from flows.store.customer_files import CustomerFile
from flows.store.db import Store
from flows.store.importing import import_customers, upsert_customer
from flows.store.tables import AuditRow, Customer, Preference
from tests.store.support import write

HEADER = "id,name,email,timezone,plan,contract_end,last_contact_at,unsubscribed,tier"


@contextmanager
def read_size(size: int):
    """Read files ``size`` bytes (and JSON characters) at a time, to cut values anywhere."""
    before = customer_files.READ_SIZE
    customer_files.READ_SIZE = size
    try:
        yield
    finally:
        customer_files.READ_SIZE = before


def rows_of(path: Path, size: int = 1 << 20, content: bytes | None = None) -> list[tuple]:
    """The rows of the file at ``path`` (or of ``content``, named ``path``)."""
    stream = io.BytesIO(content) if content is not None else None
    with read_size(size), CustomerFile(path, stream) as source:
        return [(r.index, r.data, r.line, r.item, r.problem) for r in source.rows()]


def physical_lines(text: str) -> int:
    """Lines as the csv module counts them (``\\n``, ``\\r\\n`` and ``\\r``)."""
    return len(io.StringIO(text, newline="").readlines())


# --------------------------------------------------------------------------- JSON, read
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                 max_size=3),
    max_leaves=8)
json_items = st.lists(st.dictionaries(st.sampled_from(["id", "name", "note", "é"]), json_values,
                                      max_size=4) | json_values, max_size=6)
gaps = st.sampled_from(["", " ", "\n", "\r\n", "\n\n  ", "\t", "\r"])
sizes = st.sampled_from([1, 2, 3, 7, 64, 1 << 20])


def json_document(items, gap_list, indent, wrapped) -> tuple[str, list[int]]:
    """The items as a JSON list (in an object when ``wrapped``), and the line of each."""
    text = '{"exported": "2026-11-01",\n "customers": ' if wrapped else ""
    text += "[" + gap_list[0]
    lines = []
    for i, item in enumerate(items):
        if i:
            text += "," + gap_list[i % len(gap_list)]
        lines.append(text.count("\n") + 1)  # as json's positions count lines
        text += json.dumps(item, indent=indent, ensure_ascii=i % 2 == 0)
    text += gap_list[-1] + "]"
    if wrapped:
        text += ', "after": [1, {"a": null}]}'
    return text + gap_list[-1], lines


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=json_items, gap_list=st.lists(gaps, min_size=1, max_size=4),
       indent=st.sampled_from([None, 1, 2]), wrapped=st.booleans(), size=sizes)
def test_a_json_list_read_piece_by_piece_gives_every_item_with_the_line_it_starts_on(
        items, gap_list, indent, wrapped, size):
    text, lines = json_document(items, gap_list, indent, wrapped)

    assert rows_of(Path("crm.json"), size, text.encode()) == [(i, item, lines[i], i + 1, None)
                                   for i, item in enumerate(json.loads(text)
                                                            if not wrapped else items)]


def mutated(text: str, where: int, how: int, char: str) -> str:
    where %= len(text) + 1
    return [text[:where] + text[where + 1:], text[:where] + char + text[where:],
            text[:where]][how]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=json_items, indent=st.sampled_from([None, 2]), wrapped=st.booleans(),
       where=st.integers(0, 10**4), how=st.integers(0, 2), size=sizes,
       char=st.sampled_from(list(' ,:[]{}"\n1ae.-')))
def test_a_broken_json_file_is_refused_where_json_loads_of_the_whole_file_refuses_it(
        items, indent, wrapped, where, how, size, char):
    text = mutated(json_document(items, [" "], indent, wrapped)[0], where, how, char)
    path = Path("crm.json")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        with pytest.raises(TouchpointsError) as caught:
            rows_of(path, size, text.encode())
        assert caught.value.message == f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}"
        return
    if isinstance(doc, dict) and isinstance(doc.get("customers"), list):
        doc = doc["customers"]
    if not isinstance(doc, list):
        with pytest.raises(TouchpointsError, match="expected a list of customers"):
            rows_of(path, size, text.encode())
        return
    assert [data for _, data, *_ in rows_of(path, size, text.encode())] == doc


# --------------------------------------------------------------------------- CSV, read
cells = st.text(alphabet=st.sampled_from(list('ab ,;"\n\r\té')), max_size=6)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.lists(st.lists(cells, min_size=5, max_size=5), max_size=8),
       terminator=st.sampled_from(["\n", "\r\n"]), blank_every=st.integers(0, 3), size=sizes)
def test_a_csv_file_read_piece_by_piece_gives_every_row_with_the_line_it_starts_on(
        records, terminator, blank_every, size):
    out = io.StringIO(newline="")
    lone_cr = any("\r" in cell for record in records for cell in record)  # minimal would not quote
    writer = csv.writer(out, lineterminator=terminator,
                        quoting=csv.QUOTE_ALL if lone_cr else csv.QUOTE_MINIMAL)
    writer.writerow(["id", "name", "email", "timezone", "note"])
    expected = []
    for number, record in enumerate(records):
        if blank_every and number % blank_every == 0:
            out.write(terminator)
        line = physical_lines(out.getvalue()) + 1
        writer.writerow(record)
        if any(cell.strip() for cell in record):
            data = {name: cell.strip() for name, cell in zip(
                ("id", "name", "email", "timezone", "note"), record, strict=True)}
            if not data["note"]:
                del data["note"]
            expected.append((len(expected), data, line, None, None))
    assert rows_of(Path("crm.csv"), size, out.getvalue().encode()) == expected


def test_the_sha256_is_of_every_byte_of_the_file(tmp_path):
    csv_path = tmp_path / "crm.csv"
    csv_path.write_bytes("\ufeffid;name;email;timezone\r\nC-1;Zoë;zoe@example.com;UTC\r\n".encode())
    json_path = write(tmp_path / "crm.json", '[{"id": "C-1"}]\n\n   \n')
    for path in (csv_path, json_path):
        with CustomerFile(path) as source:
            list(source.rows())
            assert source.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- importing
def crm_row(i: int, *, plan: str = "Fibre 500", contact: str = "2026-07-01",
            unsubscribed: str = "") -> str:
    if i % 97 == 5:
        return f"C-{i:05d},Bad {i},bad{i}@,UTC,,,,,"
    if i % 89 == 7:
        return f"C-{i:05d},Late {i},late{i}@example.com,Mars/Base,,,,,"
    return (f"C-{i:05d},Customer {i},c{i}@example.com,Europe/London,{plan},2027-0{1 + i % 9}-01,"
            f"{contact},{unsubscribed or ('surveys' if i % 7 == 0 else '')},t{i % 3}")


def crm_file(path: Path, count: int, by=None) -> Path:
    rows = [crm_row(i, **(by(i) if by else {})) for i in range(count)]
    rows.insert(count - 3, rows[10])  # a repeated id, chunks after the first
    return write(path, "\n".join([HEADER, *rows]) + "\n")


def snapshot(store: Store) -> tuple[dict, dict]:
    with store.session() as session:
        people = {c.id: (c.name, c.email, c.timezone, c.plan, c.contract_end, c.last_contact_at,
                         c.attributes) for c in session.scalars(select(Customer))}
        prefs = {(p.customer_id, p.category): (p.subscribed, p.source)
                 for p in session.scalars(select(Preference))}
    return people, prefs


def one_by_one(store: Store, path: Path) -> dict[str, int]:
    """What upserting each row on its own stores (the unchunked path), counted by its audit."""
    seen: set[str] = set()
    counts = {"created": 0, "updated": 0, "rejected": 0}
    with CustomerFile(path) as source, store.session() as session:
        for row in source.rows():
            if row.data.get("id") in seen:
                counts["rejected"] += 1
                continue
            try:
                upsert_customer(session, row.data, actor="oracle", source="import")
            except ImportRowsError:
                counts["rejected"] += 1
                continue
            seen.add(row.data["id"])
        for action in ("created", "updated"):
            counts[action] = session.scalar(select(func.count()).select_from(AuditRow).where(
                AuditRow.action == f"customer.{action}", AuditRow.actor == "oracle"))
    return counts


@pytest.fixture
def chunk(monkeypatch) -> int:
    """Chunks of 40 rows, so a few hundred rows make several chunks."""
    monkeypatch.setattr(importing, "CHUNK", 40)
    return 40


@pytest.fixture
def oracle(tmp_path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'oracle.db'}")
    store.migrate()
    yield store
    store.dispose()


def test_a_file_of_several_chunks_stores_what_upserting_each_row_would(store, oracle, tmp_path,
                                                                      chunk):
    count = 5 * chunk + 15
    first = crm_file(tmp_path / "first.csv", count)
    report = import_customers(store, first, actor="cli:ops")
    expected = one_by_one(oracle, first)

    assert snapshot(store) == snapshot(oracle)
    assert (report.created, report.rejected) == (expected["created"], expected["rejected"])
    with store.session() as session:
        before = dict(session.execute(select(Customer.id, Customer.updated_at)).all())

    second = crm_file(tmp_path / "second.csv", count, by=lambda i: {
        "plan": "Fibre 900" if i % 5 == 0 else "Fibre 500",
        "contact": "2026-06-01" if i % 2 else "2026-07-20",
        "unsubscribed": "marketing" if i % 11 == 0 else ""})
    report = import_customers(store, second, actor="cli:ops")
    expected = one_by_one(oracle, second)

    assert snapshot(store) == snapshot(oracle)
    assert (report.created, report.updated, report.rejected) == (
        0, expected["updated"], expected["rejected"])
    assert report.unchanged == count - expected["updated"] - expected["rejected"] + 1
    with store.session() as session:
        after = dict(session.execute(select(Customer.id, Customer.updated_at)).all())
    plan_or_contact = {f"C-{i:05d}" for i in range(count) if i % 5 == 0 or i % 2 == 0}
    assert {cid for cid in after if after[cid] != before[cid]} == plan_or_contact & set(after)


def test_bad_rows_deep_in_a_file_keep_their_lines(store, tmp_path):
    rows = ['C-00000,"Two\nLines",two@example.com,UTC,,,,,']  # lines 2-3: a bad row itself
    rows += [crm_row(i) for i in range(1, 1_300)]
    path = write(tmp_path / "crm.csv", "\n".join([HEADER, *rows]) + "\n")
    report = import_customers(store, path, actor="cli:ops")

    bad = [i for i in range(1, 1_300) if i % 97 == 5 or i % 89 == 7]
    assert [e.line for e in report.errors] == [2] + [i + 3 for i in bad]
    problems = report.problems()
    assert problems[0] == f"{path}:2: name: holds a line break or another control character"
    assert f"{path}:{1_169 + 3}: email: 'bad1169@' is not an email address" in problems
    assert f"{path}:{1_164 + 3}: timezone: 'Mars/Base' is not a time zone (use a name like " \
           "Europe/London)" in problems


def test_bad_items_deep_in_a_json_file_keep_their_item_and_line(store, tmp_path):
    items = [{"id": f"C-{i}", "name": f"N {i}", "email": f"c{i}@example.com",
              "timezone": "UTC" if i % 400 != 399 else "Nowhere"} for i in range(1_200)]
    path = write(tmp_path / "crm.json", json.dumps(items, indent=2))
    report = import_customers(store, path, actor="cli:ops")

    per_item = 2 + len(items[0])  # "{", its keys, "}," : 6 lines
    assert report.created == 1_197
    assert report.problems() == [f"{path}:{2 + i * per_item}: item {i + 1}: timezone: 'Nowhere' "
                                 "is not a time zone (use a name like Europe/London)"
                                 for i in (399, 799, 1199)]


def test_only_the_first_bad_rows_are_listed_and_the_rest_are_counted(store, tmp_path, monkeypatch):
    monkeypatch.setattr(importing, "MAX_LISTED", 3)
    rows = [f"C-{i},Bo,bo{i}@,UTC,,,,," for i in range(8)] + [crm_row(1)]
    report = import_customers(store, write(tmp_path / "crm.csv", "\n".join([HEADER, *rows])),
                              actor="cli:ops")

    assert (report.created, report.rejected, len(report.errors)) == (1, 8, 3)
    assert [e.line for e in report.errors] == [2, 3, 4]
    assert report.problems()[-1] == f"{tmp_path / 'crm.csv'}: 5 more rejected row(s) not listed (only the first 3 are)"
    assert report.as_dict()["errors_omitted"] == 5 and not report.ok


@pytest.mark.parametrize("name, tail, message", [
    ("crm.json", "\n{oops}", r"crm.json:\d+:1: not valid JSON: Expecting ',' delimiter"),
    ("crm.csv", "\nC-9,\xff", r"crm.csv:\d+: the file is not UTF-8 text"),
    ("crm.csv", '\nC-9,"' + "x" * 140_000 + '",big@example.com,UTC',
     r"crm.csv:\d+: not valid CSV: field larger than field limit"),
])
def test_a_broken_file_found_after_the_first_chunks_is_rolled_back_whole(
        store, tmp_path, chunk, name, tail, message):
    count = 5 * chunk + 10
    if name.endswith(".json"):
        body = json.dumps([{"id": f"C-{i}", "name": "N", "email": f"c{i}@example.com",
                            "timezone": "UTC"} for i in range(count)], indent=1)[:-2] + tail
        raw = body.encode()
    else:
        body = "\n".join([HEADER, *(crm_row(i) for i in range(count))])
        raw = (body + tail).encode("latin-1") if "\xff" in tail else (body + tail).encode()
    path = tmp_path / name
    path.write_bytes(raw)
    with pytest.raises(TouchpointsError, match=message):
        import_customers(store, path, actor="cli:ops")

    assert snapshot(store) == ({}, {})
    with store.session() as session:
        assert audit.query(session, action="customers.imported") == []


def test_waits_follow_dates_chunk_by_chunk_over_every_good_row_once(store, tmp_path):
    calls: list[list[str]] = []

    @contextmanager
    def around(session, ids):
        calls.append(list(ids))
        yield
        stored = set(session.scalars(select(Customer.id).where(Customer.id.in_(ids))))
        assert stored == set(ids)  # saved inside the block, in the same transaction

    count = 2 * CHUNK + 150  # chunks of the real size
    report = import_customers(store, crm_file(tmp_path / "crm.csv", count), actor="cli:ops",
                              around=around)

    assert [len(ids) for ids in calls] == [CHUNK, CHUNK, report.created - 2 * CHUNK]
    flat = [cid for ids in calls for cid in ids]
    assert len(flat) == len(set(flat)) == report.created
    with store.session() as session:
        [row] = audit.query(session, action="customers.imported")
    assert row.detail["sha256"] == hashlib.sha256((tmp_path / "crm.csv").read_bytes()).hexdigest()
