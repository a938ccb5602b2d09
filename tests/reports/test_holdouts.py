"""The holdout comparison: a touch point's treated members against its control group, for the
goal rate (Wilson intervals, a difference of proportions) and for later NPS, with n and 95%
intervals, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flows.reports.holdouts import difference, effects, to_text, wilson
from flows.store import audit
from flows.store.tables import Journey, Member, Survey

T0 = datetime(2026, 9, 1, 9, tzinfo=UTC)


def _member(session, n: int, cohort: str | None, touchpoint: str = "check-in") -> str:
    cid = f"C-{n}"
    session.add(Journey(id=f"j{n}", touchpoint=touchpoint, entry_key=cid, customer_id=cid,
                        status="done", started_at=T0))
    session.flush()
    session.add(Member(journey_id=f"j{n}", customer_id=cid, status="done", cohort=cohort))
    return cid


def _answer(session, cid: str, score: int, after: timedelta, question: str = "nps") -> None:
    sid = f"s-{cid}-{after.total_seconds():.0f}"
    session.add(Survey(id=sid, key=sid, journey_id="elsewhere", touchpoint="install",
                       step_id="nps", customer_id=cid, question=question, text="?",
                       created_at=T0 + after, expires_at=T0 + after + timedelta(days=14),
                       score=score, answered_at=T0 + after))


def _fill(session) -> None:
    treated = [_member(session, n, "treated") for n in range(10)]
    held = [_member(session, n, "holdout") for n in range(10, 20)]
    _member(session, 99, None)                       # before the holdout: in neither group
    _member(session, 98, None, touchpoint="sale")    # a touch point without one
    goals = treated[:6] + held[:2]
    audit.record_many(session, [dict(action="journey.goal", result="goal", actor="system",
                                     touchpoint="check-in", customer_id=cid,
                                     journey_id=f"j{cid[2:]}", at=T0, reason="Customer acted")
                                for cid in goals + treated[:1]])  # a goal twice counts once
    for cid, score in zip(treated, [10, 9, 8, 3], strict=False):
        _answer(session, cid, score, timedelta(days=20))
    _answer(session, treated[0], 0, timedelta(days=40))         # only the first answer counts
    _answer(session, treated[5], 0, -timedelta(days=5))         # before it entered
    _answer(session, treated[6], 0, timedelta(days=120))        # too late
    _answer(session, treated[7], 1, timedelta(days=20), question="csat")
    for cid, score in zip(held, [5, 6, 10], strict=False):
        _answer(session, cid, score, timedelta(days=30))


def test_the_goal_rate_and_later_nps_of_treated_and_held_out_members_with_intervals(store):
    with store.session() as session:
        _fill(session)
        session.commit()
    with store.read_session() as session:
        data = effects(session)

    assert list(data) == ["check-in"]
    goal = data["check-in"]["goal"]
    assert goal["treated"] == {"n": 10, "reached": 6, "rate": 60.0, "ci": [31.3, 83.2]}
    assert goal["holdout"] == {"n": 10, "reached": 2, "rate": 20.0, "ci": [5.7, 51.0]}
    assert goal["difference"] == {"points": 40.0, "ci": [0.8, 79.2]}
    nps = data["check-in"]["nps"]
    assert nps["treated"] == {"n": 4, "nps": 25.0, "ci": [-56.3, 100.0]}
    assert nps["holdout"] == {"n": 3, "nps": -33.3, "ci": [-100.0, 73.4]}
    assert nps["difference"] == {"points": 58.3, "ci": [-75.8, 192.4]}


def test_a_window_and_a_touch_point_narrow_the_comparison(store):
    with store.session() as session:
        _fill(session)
        session.commit()
    with store.read_session() as session:
        assert effects(session, since=T0 + timedelta(days=1)) == {}
        assert effects(session, touchpoint="sale") == {}
        narrow = effects(session, nps_within=timedelta(days=25))["check-in"]["nps"]
    assert narrow["treated"]["n"] == 4 and narrow["holdout"]["n"] == 0
    assert narrow["difference"] is None


def test_the_text_section_shows_n_and_the_intervals(store):
    with store.session() as session:
        _fill(session)
        session.commit()
    with store.read_session() as session:
        text = " ".join(to_text(effects(session)).split())
    assert "check-in goal treated n=10 60% [31.3, 83.2] goal holdout n=10 20% [5.7, 51]" in text
    assert "goal difference +40 points [0.8, 79.2]" in text
    assert "NPS holdout n=3 -33.3 [-100, 73.4] NPS difference +58.3 points [-75.8, 192.4]" in text
    assert to_text({}) == ""


@given(st.integers(1, 5000), st.data())
def test_the_wilson_interval_holds_the_observed_rate_inside_zero_and_one(n, data):
    k = data.draw(st.integers(0, n))
    low, high = wilson(k, n)
    assert 0 <= low <= k / n <= high <= 1
    wider = wilson(k, n)  # the same data four times over is surer
    narrower = wilson(4 * k, 4 * n)
    assert narrower[1] - narrower[0] <= wider[1] - wider[0] + 1e-12


def test_no_members_no_interval():
    assert wilson(0, 0) is None and difference(0.5, 0, 0.5, 10) is None


@pytest.mark.parametrize(("k", "n", "expected"), [(6, 10, (0.3127, 0.8318)),
                                                  (0, 20, (0.0, 0.1611)),
                                                  (50, 100, (0.4038, 0.5962))])
def test_the_wilson_interval_matches_published_values(k, n, expected):
    assert wilson(k, n) == pytest.approx(expected, abs=1e-4)


def test_touchpoints_report_shows_the_comparison_as_text_and_json(store, store_settings,
                                                                   monkeypatch, capsys):
    from flows.cli import main
    from flows.settings import reset_settings
    from tests.reports.test_report_cli import ROOT

    with store.session() as session:
        _fill(session)
        session.commit()
    monkeypatch.setenv("TOUCHPOINTS_CONFIG_FILE", str(ROOT / "touchpoints.yaml"))
    reset_settings()
    main(["report"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Holdouts: treated vs control (95% intervals) check-in goal treated n=10 60%" in text
    main(["report", "--format", "json"])
    data = json.loads(capsys.readouterr().out)
    assert data["holdouts"]["check-in"]["goal"]["difference"] == {"points": 40.0,
                                                                  "ci": [0.8, 79.2]}
