"""The survey page: /s/{token}, its POST and the thank-you page."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from flows import clock
from flows.store.tables import Survey
from tests.web.support import (
    add_customer,
    add_survey,
    add_waiting_journey,
    audit_rows,
    csrf_token,
    events,
    get,
    member,
)


@pytest.fixture
def customer(engine):
    return add_customer(engine)


def survey_url(engine, survey_id: str) -> str:
    return "/s/" + engine.signer.token("survey", survey=survey_id)


def answer(client, url: str, **fields):
    page = client.get(url)
    return client.post(url, data={"csrf_token": csrf_token(page.text), **fields},
                       follow_redirects=False)


def test_the_nps_page_offers_scores_0_to_10_as_labelled_radio_buttons(client, engine, customer):
    url = survey_url(engine, add_survey(engine, customer, question="nps"))
    page = client.get(url)
    assert page.status_code == 200
    radios = re.findall(r'<input type="radio" id="score-(\d+)" name="score" value="(\d+)"', page.text)
    assert [int(v) for _, v in radios] == list(range(11))
    for n in range(11):
        assert f'<label for="score-{n}">' in page.text
    assert "<fieldset" in page.text and "<legend>How likely are you to recommend" in page.text
    assert '<label for="comment">' in page.text
    assert 'name="viewport"' in page.text
    assert "<script" not in page.text


def test_the_csat_page_offers_scores_1_to_5_with_words(client, engine, customer):
    page = client.get(survey_url(engine, add_survey(engine, customer, question="csat")))
    values = re.findall(r'name="score" value="(\d+)"', page.text)
    assert values == ["1", "2", "3", "4", "5"]
    assert "Very satisfied" in page.text


def test_a_custom_question_offers_its_choices(client, engine, customer):
    page = client.get(survey_url(engine, add_survey(engine, customer, question="custom",
                                                    text="Which day suits you?",
                                                    choices=["Monday", "Friday <late>"])))
    assert re.findall(r'name="answer" value="([^"]+)"', page.text) == ["Monday", "Friday &lt;late&gt;"]
    assert "<legend>Which day suits you?</legend>" in page.text


def test_an_answer_is_stored_audited_and_resumes_the_waiting_journey(client, engine, customer,
                                                                     launcher):
    journey_id = add_waiting_journey(engine, customer, results={"sale_csat": {"sent": True}})
    survey_id = add_survey(engine, customer, question="csat", journey_id=journey_id)
    url = survey_url(engine, survey_id)

    response = answer(client, url, score="2", comment="The engineer was late")

    assert response.status_code == 303
    assert response.headers["location"] == f"{url}/thanks"
    thanks = client.get(response.headers["location"])
    assert thanks.status_code == 200 and "We have your answer" in thanks.text
    stored = get(engine, Survey, survey_id)
    assert (stored.score, stored.comment) == (2, "The engineer was late")
    assert stored.answered_at is not None
    [row] = audit_rows(engine, "survey.answered")
    assert row.actor == "web" and row.customer_id == customer and row.journey_id == journey_id
    [event] = events(engine, "survey.answered")
    assert event.id == f"survey-{survey_id}"
    assert event.data["result"] == {"answered": True, "score": 2, "answer": None,
                                    "comment": "The engineer was late"}
    assert [r["journey_id"] for r in launcher.resumed] == [journey_id]
    results = member(engine, journey_id).results
    assert results["sale_csat"]["score"] == 2 and results["sale_csat"]["sent"] is True
    assert results["await_csat"]["outcome"] == "event"


def test_a_second_answer_is_refused_and_keeps_the_first(client, engine, customer):
    survey_id = add_survey(engine, customer)
    url = survey_url(engine, survey_id)
    token = csrf_token(client.get(url).text)
    first = client.post(url, data={"csrf_token": token, "score": "9"}, follow_redirects=False)
    second = client.post(url, data={"csrf_token": token, "score": "1"}, follow_redirects=False)
    assert first.status_code == 303
    assert second.status_code == 410
    assert get(engine, Survey, survey_id).score == 9
    assert len(events(engine, "survey.answered")) == 1


def test_forged_expired_and_used_links_get_the_same_polite_page(client, engine, customer):
    used = add_survey(engine, customer)
    answer(client, survey_url(engine, used), score="10")
    expired = add_survey(engine, customer, expires_at=clock.now() - timedelta(minutes=1))
    good = survey_url(engine, add_survey(engine, customer))
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    other_purpose = "/s/" + engine.signer.token("preferences", customer=customer)

    pages = [client.get(u) for u in (survey_url(engine, used), survey_url(engine, expired), forged,
                                     other_purpose, "/s/not-a-token")]

    assert {p.status_code for p in pages} == {410}
    assert len({p.text for p in pages}) == 1
    assert "can't be used any more" in pages[0].text
    assert "csrf_token" not in pages[0].text


def test_posting_to_an_expired_survey_is_refused_with_the_same_page(client, engine, customer):
    survey_id = add_survey(engine, customer)
    url = survey_url(engine, survey_id)
    token = csrf_token(client.get(url).text)
    with engine.store.session() as session:
        session.get(Survey, survey_id).expires_at = clock.now() - timedelta(seconds=1)
    response = client.post(url, data={"csrf_token": token, "score": "7"}, follow_redirects=False)
    assert response.status_code == 410
    assert response.text == client.get("/s/forged").text
    assert get(engine, Survey, survey_id).answered_at is None


def test_a_post_without_the_csrf_cookie_is_refused_and_stores_nothing(client, engine, customer):
    survey_id = add_survey(engine, customer)
    url = survey_url(engine, survey_id)
    token = csrf_token(client.get(url).text)
    client.cookies.clear()
    response = client.post(url, data={"csrf_token": token, "score": "9"}, follow_redirects=False)
    assert response.status_code == 403
    assert get(engine, Survey, survey_id).answered_at is None
    assert events(engine, "survey.answered") == []


def test_a_post_with_a_made_up_csrf_token_is_refused(client, engine, customer):
    survey_id = add_survey(engine, customer)
    url = survey_url(engine, survey_id)
    client.get(url)
    client.cookies.clear()
    client.cookies.set("tp_csrf", "forged")
    response = client.post(url, data={"csrf_token": "forged", "score": "9"}, follow_redirects=False)
    assert response.status_code == 403
    assert get(engine, Survey, survey_id).answered_at is None


def test_a_post_from_another_site_is_refused(client, engine, customer):
    survey_id = add_survey(engine, customer)
    url = survey_url(engine, survey_id)
    token = csrf_token(client.get(url).text)
    for header in ({"Origin": "https://evil.example"}, {"Referer": "https://evil.example/x"}):
        response = client.post(url, data={"csrf_token": token, "score": "9"}, headers=header,
                               follow_redirects=False)
        assert response.status_code == 403
    assert get(engine, Survey, survey_id).answered_at is None
    same_site = client.post(url, data={"csrf_token": token, "score": "9"},
                            headers={"Origin": "http://testserver"}, follow_redirects=False)
    assert same_site.status_code == 303


def test_the_csrf_cookie_is_strict_and_http_only(client, engine, customer):
    page = client.get(survey_url(engine, add_survey(engine, customer)))
    cookie = page.headers["set-cookie"].lower()
    assert cookie.startswith("tp_csrf=") and "samesite=strict" in cookie and "httponly" in cookie
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("question,score", [("nps", "11"), ("nps", "-1"), ("csat", "0"),
                                            ("csat", "6"), ("nps", "nine"), ("nps", "")])
def test_a_score_out_of_range_shows_the_form_again_and_stores_nothing(client, engine, customer,
                                                                      question, score):
    survey_id = add_survey(engine, customer, question=question)
    response = answer(client, survey_url(engine, survey_id), score=score, comment="kept <b>")
    assert response.status_code == 400
    assert 'role="alert"' in response.text
    assert "kept &lt;b&gt;</textarea>" in response.text
    assert get(engine, Survey, survey_id).answered_at is None


def test_a_custom_answer_must_be_one_of_the_choices(client, engine, customer):
    survey_id = add_survey(engine, customer, question="custom", choices=["Yes", "No"])
    url = survey_url(engine, survey_id)
    assert answer(client, url, answer="Maybe").status_code == 400
    assert answer(client, url, answer="No").status_code == 303
    assert get(engine, Survey, survey_id).answer == "No"


def test_opening_the_page_changes_nothing(client, engine, customer):
    journey_id = add_waiting_journey(engine, customer)
    survey_id = add_survey(engine, customer, journey_id=journey_id)
    before = len(audit_rows(engine))
    for _ in range(3):
        assert client.get(survey_url(engine, survey_id)).status_code == 200
    assert get(engine, Survey, survey_id).answered_at is None
    assert len(audit_rows(engine)) == before
    assert events(engine) == []
    assert member(engine, journey_id).status == "waiting"


def test_the_thank_you_page_of_an_unanswered_survey_is_the_polite_page(client, engine, customer):
    url = survey_url(engine, add_survey(engine, customer))
    response = client.get(url + "/thanks")
    assert response.status_code == 410
    assert response.text == client.get("/s/forged").text
