"""Date and inactivity triggers as indexed queries fire exactly whom the loop over every customer
fired (property-tested against that loop, kept here as the reference), ask the indexes rather
than read the customer table, and between full scans fire held dates at their moment."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, event, select

from flows.config.triggers import DateTrigger, InactivityTrigger
from flows.engine.trigger_scan import CATCH_UP, RESCAN, TriggerScanner
from flows.store.tables import Customer, Event, WorkUnit

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ZONES = ["UTC", "Europe/London", "America/New_York", "America/St_Johns", "Asia/Kathmandu",
         "Pacific/Kiritimati", "Pacific/Pago_Pago", "Etc/GMT+12", "Australia/Lord_Howe",
         "Pacific/Chatham", "America/Sao_Paulo", "Asia/Tokyo"]
PER_EXAMPLE = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]  # rows reset each time


@lru_cache(maxsize=1)
def shipped_config():
    from flows.config import load_config

    return load_config(REPO / "touchpoints.yaml")


def engine_with(store, tmp_path, **triggers):
    """An engine on ``store`` whose only touch points are ``name=trigger`` (the shipped renewal
    touch point with that trigger in place of its own)."""
    from flows.engine.core import Engine
    from flows.settings import Settings

    config = shipped_config()
    base = config.touchpoints["renewal"]
    touchpoints = {}
    for name, trigger in triggers.items():
        touchpoints[name] = base.model_copy(update={"trigger": trigger})
        touchpoints[name]._name = name  # as the config loader names them
    settings = Settings(data_dir=tmp_path / "data", config_file=REPO / "touchpoints.yaml",
                        secret_key="test")
    return Engine(settings, config=config.model_copy(update={"touchpoints": touchpoints}),
                  store=store)


def reset(store, customers, fired=()):
    """customers: (id, zone, contract_start, contract_end, last_contact_at, created_at)."""
    with store.session() as session:
        for table in (WorkUnit, Event, Customer):
            session.execute(delete(table))
        session.add_all([Customer(id=cid, name=cid, email=f"{cid.lower()}@example.com",
                                  timezone=zone, contract_start=start, contract_end=end,
                                  last_contact_at=contact, created_at=created, attributes={})
                         for cid, zone, start, end, contact, created in customers])
        session.add_all([Event(id=eid, type=eid.split(":")[0] + ".trigger", customer_id=None,
                               data={}, occurred_at=NOW, received_at=NOW, source="scheduler",
                               status="dispatched") for eid in fired])


def stored(store, fired=()) -> dict[str, dict]:
    with store.session() as session:
        return {e.id: e.data for e in session.scalars(select(Event)) if e.id not in fired}


# --------------------------------------------------------------------------- the reference
def reference_dates(name, trigger, customers, now, fired) -> dict[str, dict]:
    """The loop the scan replaces: every customer, every time."""
    rel, due = trigger.date, {}
    for cid, zone, start, end, _, _ in sorted(customers):
        anchor = {"contract_start": start, "contract_end": end}[rel.field]
        if anchor is None:
            continue
        when = rel.resolve(anchor, trigger.at, ZoneInfo(zone))
        event_id = f"date:{name}:{cid}:{anchor.isoformat()}"
        if now - CATCH_UP <= when <= now and event_id not in fired:
            due[event_id] = {"field": rel.field, "date": anchor.isoformat(),
                             "fires_at": when.isoformat()}
    return due


def reference_quiet(name, trigger, customers, now, fired) -> dict[str, dict]:
    due = {}
    for cid, _, _, _, contact, created in sorted(customers):
        last = contact or created
        if last <= now - trigger.inactivity:
            event_id = f"inactivity:{name}:{cid}:{last.date().isoformat()}"
            if event_id not in fired:
                due[event_id] = {"last_contact": last.date().isoformat()}
    return due


# --------------------------------------------------------------------------- strategies
nows = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31)).map(
    lambda d: d.replace(tzinfo=UTC))
date_triggers = st.builds(
    lambda days, hours, direction, column, at: DateTrigger.model_validate(
        {"date": f"{days}d {hours}h {direction} {column}" if hours else f"{days}d {direction} {column}",
         "at": at.strftime("%H:%M")}),
    st.integers(0, 400), st.sampled_from([0, 0, 1, 13, 36]), st.sampled_from(["before", "after"]),
    st.sampled_from(["contract_start", "contract_end"]),
    st.sampled_from([time(0, 0), time(1, 30), time(2, 30), time(9, 0), time(23, 59)]) | st.times())


@st.composite
def date_cases(draw):
    now, trigger = draw(nows), draw(date_triggers)
    rel = trigger.date
    sign = -1 if rel.direction == "before" else 1
    target = (now - sign * rel.offset).date()  # the anchor that fires today, near enough
    anchors = st.one_of(st.none(), st.integers(-10, 4).map(lambda k: target + timedelta(days=k)),
                        st.dates(date(2020, 1, 1), date(2030, 12, 31)))
    rows = draw(st.lists(st.tuples(st.sampled_from(ZONES), anchors, anchors, st.booleans()),
                         min_size=1, max_size=30))
    customers = [(f"C-{i:03d}", zone, start, end, None, datetime(2025, 1, 1, tzinfo=UTC))
                 for i, (zone, start, end, _) in enumerate(rows)]
    every = reference_dates("renewal", trigger, customers, now, ())
    fired = {eid for eid, (*_, gone) in zip(sorted(every), rows) if gone}  # some fired already
    return now, trigger, customers, fired


@st.composite
def quiet_cases(draw):
    now = draw(nows)
    threshold = draw(st.sampled_from([timedelta(hours=1), timedelta(days=1), timedelta(days=30)])
                     | st.timedeltas(timedelta(hours=1), timedelta(days=60)))
    moments = st.timedeltas(timedelta(0), timedelta(days=90)).map(lambda d: now - d)
    rows = draw(st.lists(st.tuples(st.none() | moments, moments, st.sampled_from(["", "same", "old"])),
                         min_size=1, max_size=30))
    customers, fired = [], set()
    for i, (contact, created, mark) in enumerate(rows):
        cid = f"C-{i:03d}"
        customers.append((cid, "UTC", None, None, contact, created))
        last = (contact or created).date()
        if mark:  # a firing of this silence, or of an earlier one (which does not count)
            day = last if mark == "same" else last - timedelta(days=40)
            fired.add(f"inactivity:check-in:{cid}:{day.isoformat()}")
    return now, InactivityTrigger(inactivity=threshold), customers, fired


# --------------------------------------------------------------------------- properties
@settings(max_examples=30, deadline=None, suppress_health_check=PER_EXAMPLE)
@given(case=date_cases())
def test_the_date_scan_fires_exactly_whom_the_loop_over_every_customer_fired(store, tmp_path, case):
    now, trigger, customers, fired = case
    reset(store, customers, fired)
    engine = engine_with(store, tmp_path, renewal=trigger)

    count = TriggerScanner(engine).dates(now, full=True)

    expected = reference_dates("renewal", trigger, customers, now, fired)
    assert stored(store, fired) == expected
    assert count == len(expected)


@pytest.mark.parametrize("at", ["00:00", "23:59"])
@pytest.mark.parametrize("now", [NOW.replace(hour=0, minute=1), NOW.replace(hour=23, minute=58)],
                         ids=["just-after-midnight", "just-before-midnight"])
@pytest.mark.parametrize("rule", ["90d before contract_end", "1d 13h after contract_start"])
def test_at_both_edges_of_the_window_in_the_farthest_zones_the_scan_matches_the_loop(
        sqlite_store, tmp_path, at, now, rule):
    trigger = DateTrigger.model_validate({"date": rule, "at": at})
    sign = -1 if trigger.date.direction == "before" else 1
    target = (now - sign * trigger.date.offset).date()
    customers = [(f"E-{k + 20:02d}-{zone}", zone, target + timedelta(days=k),
                  target + timedelta(days=k), None, NOW) for k in range(-12, 5) for zone in ZONES]
    reset(sqlite_store, customers)

    TriggerScanner(engine_with(sqlite_store, tmp_path, renewal=trigger)).dates(now, full=True)

    expected = reference_dates("renewal", trigger, customers, now, ())
    assert stored(sqlite_store) == expected
    days = {cid[:4] for cid, *_ in customers}
    partly = {day for day in days if 0 < sum(day in eid for eid in expected) < len(ZONES)}
    assert partly  # the window's edge cuts through a day: some zones in, some out


@settings(max_examples=30, deadline=None, suppress_health_check=PER_EXAMPLE)
@given(case=quiet_cases())
def test_the_inactivity_query_fires_exactly_whom_the_loop_over_every_customer_fired(
        store, tmp_path, case):
    now, trigger, customers, fired = case
    reset(store, customers, fired)
    engine = engine_with(store, tmp_path, **{"check-in": trigger})

    count = TriggerScanner(engine).inactivity(now, full=True)

    expected = reference_quiet("check-in", trigger, customers, now, fired)
    assert stored(store, fired) == expected
    assert count == len(expected)


@settings(max_examples=25, deadline=None, suppress_health_check=PER_EXAMPLE)
@given(case=date_cases(), steps=st.lists(st.sampled_from(
    [timedelta(seconds=5), timedelta(minutes=7), timedelta(hours=3), RESCAN + timedelta(seconds=1),
     timedelta(days=2)]), min_size=1, max_size=8),
    threshold=st.sampled_from([timedelta(hours=2), timedelta(days=1)]))
def test_tick_after_tick_the_held_firings_and_the_ranges_fire_what_the_loop_fired(
        sqlite_store, tmp_path, case, steps, threshold):
    """From a start-up scan on, through held dates and inactivity ranges between full scans."""
    now, trigger, customers, _ = case
    customers = [(cid, zone, start, end, now - timedelta(hours=3 * i), now - timedelta(days=400))
                 for i, (cid, zone, start, end, _, _) in enumerate(customers)]
    reset(sqlite_store, customers)
    quiet = InactivityTrigger(inactivity=threshold)
    scanner = TriggerScanner(engine_with(sqlite_store, tmp_path, renewal=trigger, **{"check-in": quiet}))
    fired: set[str] = set()
    for step in [timedelta(0), *steps]:
        now += step
        scanner.dates(now)
        scanner.inactivity(now)
        expected = {**reference_dates("renewal", trigger, customers, now, fired),
                    **reference_quiet("check-in", quiet, customers, now, fired)}
        assert stored(sqlite_store, fired) == expected, f"at {now}"
        fired |= set(expected)


# --------------------------------------------------------------------------- held firings
def customer(cid, end, zone="Europe/London"):
    return (cid, zone, end - timedelta(days=730), end, NOW, NOW - timedelta(days=400))


def renewal_engine(store, tmp_path):
    return engine_with(store, tmp_path, renewal=DateTrigger.model_validate(
        {"date": "90d before contract_end", "at": "09:00"}))


def test_a_renewal_due_later_today_fires_at_its_local_time_without_another_scan(
        sqlite_store, tmp_path):
    day = date(2026, 12, 1)
    reset(sqlite_store, [customer("T-1", day + timedelta(days=90), zone="Asia/Tokyo")])
    scanner = TriggerScanner(renewal_engine(sqlite_store, tmp_path))
    nine_tokyo = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)  # 09:00 in Tokyo

    assert scanner.dates(nine_tokyo - timedelta(minutes=30)) == 0  # the start-up scan holds it
    assert scanner.dates(nine_tokyo - timedelta(seconds=1)) == 0
    assert scanner.dates(nine_tokyo) == 1
    assert scanner.dates(nine_tokyo + timedelta(seconds=5)) == 0
    assert list(stored(sqlite_store)) == ["date:renewal:T-1:2027-03-01"]


def test_a_held_renewal_whose_contract_moved_fires_for_the_new_date_only_when_that_comes(
        sqlite_store, tmp_path):
    end = date(2027, 3, 1)
    reset(sqlite_store, [customer("M-1", end)])
    scanner = TriggerScanner(renewal_engine(sqlite_store, tmp_path))
    nine = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    assert scanner.dates(nine - timedelta(minutes=50)) == 0
    with sqlite_store.session() as session:  # renewed: the contract now ends a year later
        session.get(Customer, "M-1").contract_end = end + timedelta(days=365)

    assert scanner.dates(nine + timedelta(seconds=5)) == 0
    assert stored(sqlite_store) == {}


def test_a_customer_imported_after_the_scan_is_found_by_the_next_full_scan(sqlite_store, tmp_path):
    reset(sqlite_store, [])
    scanner = TriggerScanner(renewal_engine(sqlite_store, tmp_path))
    assert scanner.dates(NOW) == 0
    reset(sqlite_store, [customer("L-1", (NOW + timedelta(days=88)).date())])  # two days late

    assert scanner.dates(NOW + RESCAN - timedelta(seconds=5)) == 0  # not in the held firings
    assert scanner.dates(NOW + RESCAN) == 1  # the hourly scan's catch-up


def test_changing_the_trigger_scans_again_at_once(sqlite_store, tmp_path):
    reset(sqlite_store, [customer("G-1", (NOW + timedelta(days=60)).date())])
    engine = renewal_engine(sqlite_store, tmp_path)
    scanner = TriggerScanner(engine)
    assert scanner.dates(NOW) == 0
    sixty = DateTrigger.model_validate({"date": "60d before contract_end", "at": "00:00"})
    engine.config = engine_with(sqlite_store, tmp_path, renewal=sixty).config

    assert scanner.dates(NOW + timedelta(seconds=5)) == 1


# --------------------------------------------------------------------------- the indexes
def plans(store, work) -> list[str]:
    """The SQLite query plans of the SELECTs that ``work`` runs on the customer table."""
    statements = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "customers" in statement:
            statements.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        work()
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    with store.engine.connect() as connection:
        return [" | ".join(row[3] for row in connection.exec_driver_sql(
            f"EXPLAIN QUERY PLAN {statement}", parameters)) for statement, parameters in statements]


def test_the_scans_search_the_indexes_and_never_read_the_whole_customer_table(
        sqlite_store, tmp_path):
    reset(sqlite_store, [customer(f"I-{i}", (NOW + timedelta(days=i)).date()) for i in range(50)])
    engine = engine_with(sqlite_store, tmp_path, renewal=DateTrigger.model_validate(
        {"date": "90d before contract_end"}), **{"check-in": InactivityTrigger(inactivity="30d")})
    scanner = TriggerScanner(engine)

    date_plans = plans(sqlite_store, lambda: scanner.dates(NOW, full=True))
    quiet_plans = plans(sqlite_store, lambda: (scanner.inactivity(NOW, full=True),
                                               scanner.inactivity(NOW + timedelta(seconds=5))))

    assert date_plans and all("SEARCH customers USING INDEX ix_customers_contract_end" in p
                              for p in date_plans), date_plans
    assert len(quiet_plans) == 2, quiet_plans
    for plan in quiet_plans:
        assert "SCAN customers" not in plan and "ix_customers_last_contact" in plan, plan
        assert "SEARCH events USING" in plan and "(id=?)" in plan, plan  # the anti-join by key


def test_a_tick_that_could_not_store_its_firings_leaves_them_for_the_next(
        sqlite_store, tmp_path, monkeypatch):
    from flows.engine import trigger_scan
    from flows.errors import StoreError

    nine = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    reset(sqlite_store, [customer("F-1", date(2027, 3, 1)),
                         ("F-2", "UTC", None, None, nine - timedelta(days=30, seconds=3), NOW)])
    scanner = TriggerScanner(engine_with(sqlite_store, tmp_path, renewal=DateTrigger.model_validate(
        {"date": "90d before contract_end", "at": "09:00"}),
        **{"check-in": InactivityTrigger(inactivity="30d")}))
    assert scanner.dates(nine - timedelta(minutes=5)) + scanner.inactivity(nine - timedelta(minutes=5)) == 0
    real = trigger_scan.store_firings

    def locked(*args, **kwargs):
        raise StoreError("the database is locked")

    monkeypatch.setattr(trigger_scan, "store_firings", locked)
    for scan in (scanner.dates, scanner.inactivity):
        with pytest.raises(StoreError):
            scan(nine)
    monkeypatch.setattr(trigger_scan, "store_firings", real)

    assert scanner.dates(nine + timedelta(seconds=5)) == 1
    assert scanner.inactivity(nine + timedelta(seconds=5)) == 1
