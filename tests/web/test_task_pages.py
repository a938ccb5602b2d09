"""The task page /t/{token}, its acknowledge/complete forms, and the team list /teams/{token}."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from flows import clock, teamlinks
from flows.store.tables import Task
from tests.web.support import (
    add_customer,
    add_task,
    add_waiting_journey,
    audit_rows,
    csrf_token,
    events,
    get,
    member,
    path_of,
)


@pytest.fixture
def customer(engine):
    return add_customer(engine)


def task_url(engine, task_id: str, purpose: str = "task") -> str:
    return path_of(engine.signer.url(purpose, task=task_id))


def test_the_task_page_shows_the_task_the_customer_and_the_escalation(client, engine, customer):
    task_id = add_task(engine, customer, body="Plan: Fibre 500\n<b>ring first</b>",
                       owner="priya@northwind.example")
    page = client.get(task_url(engine, task_id))
    assert page.status_code == 200
    text = page.text
    assert "Schedule the install for Ada Lovelace" in text
    assert "&lt;b&gt;ring first&lt;/b&gt;" in text
    assert "Ada Lovelace (C-1001)" in text and "ada@example.com" in text and "Fibre 500" in text
    assert "install-lead@northwind.example is told as soon as it is overdue" in text
    assert "ops-director@northwind.example is told 1 day after it falls overdue" in text
    assert "Due in" in text and "Open" in text
    assert 'action="/t/' in text and '/ack"' in text and '/complete"' in text
    assert '<label for="outcome">' in text and '<label for="ack-by">' in text
    assert 'value="priya@northwind.example"' in text


@pytest.mark.parametrize("purpose,highlighted", [("task-ack", "acknowledge"),
                                                 ("task-complete", "complete")])
def test_the_action_links_only_highlight_their_button(client, engine, customer, purpose,
                                                      highlighted):
    task_id = add_task(engine, customer)
    url = task_url(engine, task_id, purpose)
    assert "?action=" in url
    page = client.get(url)
    assert page.status_code == 200
    assert re.search(rf'class="card action highlight" id="{highlighted}"', page.text)
    assert len(re.findall("action highlight", page.text)) == 1
    assert get(engine, Task, task_id).status == "open"
    assert audit_rows(engine, "task.acknowledged") == [] and events(engine) == []


def test_acknowledging_records_who_audits_and_emits_the_event(client, engine, customer, launcher):
    journey_id = add_waiting_journey(engine, customer, touchpoint="recurring-issue",
                                     pointer="await_owner", waiting_for="task.acknowledged")
    task_id = add_task(engine, customer, journey_id=journey_id, step_id="assign_owner")
    url = task_url(engine, task_id)
    token = csrf_token(client.get(url + "?action=ack").text)

    response = client.post(f"{url}/ack", data={"csrf_token": token, "by": "priya@northwind.example"},
                           follow_redirects=False)

    assert response.status_code == 303 and response.headers["location"] == f"{url}?done=ack"
    assert "Acknowledged" in client.get(response.headers["location"]).text
    task = get(engine, Task, task_id)
    assert (task.status, task.acknowledged_by) == ("acknowledged", "priya@northwind.example")
    [row] = audit_rows(engine, "task.acknowledged")
    assert row.actor == "web:priya@northwind.example"
    [event] = events(engine, "task.acknowledged")
    assert event.id == f"task-ack-{task_id}"
    assert event.data["acknowledged_by"] == "priya@northwind.example"
    assert event.data["journey_id"] == journey_id and event.data["step_id"] == "assign_owner"
    assert [r["journey_id"] for r in launcher.resumed] == [journey_id]
    assert member(engine, journey_id).results["assign_owner"]["status"] == "acknowledged"


def test_completing_stores_the_outcome_and_emits_the_event(client, engine, customer, launcher):
    journey_id = add_waiting_journey(engine, customer, touchpoint="billing", pointer="await_resolution",
                                     waiting_for="task.completed")
    task_id = add_task(engine, customer, journey_id=journey_id, step_id="investigate")
    url = task_url(engine, task_id)
    token = csrf_token(client.get(url).text)

    response = client.post(f"{url}/complete", follow_redirects=False, data={
        "csrf_token": token, "by": "sam@northwind.example", "outcome": "Refunded £13.17."})

    assert response.status_code == 303
    task = get(engine, Task, task_id)
    assert (task.status, task.completed_by, task.outcome) == ("completed", "sam@northwind.example",
                                                              "Refunded £13.17.")
    [event] = events(engine, "task.completed")
    assert event.id == f"task-done-{task_id}"
    assert event.data["outcome"] == "Refunded £13.17."
    assert event.data["completed_by"] == "sam@northwind.example"
    assert [r["journey_id"] for r in launcher.resumed] == [journey_id]
    page = client.get(response.headers["location"]).text
    assert "Completed" in page and "Refunded £13.17." in page
    assert 'action="/t/' not in page  # no forms on a completed task


def test_completing_twice_is_refused(client, engine, customer):
    task_id = add_task(engine, customer)
    url = task_url(engine, task_id)
    token = csrf_token(client.get(url).text)
    data = {"csrf_token": token, "by": "sam@northwind.example", "outcome": "Booked for Tuesday."}
    assert client.post(f"{url}/complete", data=data, follow_redirects=False).status_code == 303
    again = client.post(f"{url}/complete", data={**data, "outcome": "Other"}, follow_redirects=False)
    assert again.status_code == 409
    assert "already completed" in again.text
    assert get(engine, Task, task_id).outcome == "Booked for Tuesday."
    assert len(events(engine, "task.completed")) == 1


def test_completing_needs_an_outcome_and_an_email(client, engine, customer):
    task_id = add_task(engine, customer)
    url = task_url(engine, task_id)
    token = csrf_token(client.get(url).text)
    no_outcome = client.post(f"{url}/complete", data={"csrf_token": token, "by": "sam@x.example",
                                                      "outcome": "  "})
    no_email = client.post(f"{url}/ack", data={"csrf_token": token, "by": ""})
    assert no_outcome.status_code == 400 and "outcome" in no_outcome.text
    assert no_email.status_code == 400
    assert get(engine, Task, task_id).status == "open"


def test_task_posts_need_the_csrf_token(client, engine, customer):
    task_id = add_task(engine, customer)
    url = task_url(engine, task_id)
    client.get(url)
    response = client.post(f"{url}/ack", data={"by": "sam@northwind.example"})
    assert response.status_code == 403
    assert get(engine, Task, task_id).status == "open"


def test_a_forged_task_link_gets_the_polite_page(client, engine, customer):
    add_task(engine, customer)
    assert client.get("/t/forged").status_code == 410
    survey_token = engine.signer.token("survey", survey="x")
    assert client.get(f"/t/{survey_token}").status_code == 410


def test_the_team_page_lists_open_tasks_with_due_badges_and_signed_links(client, engine, customer):
    now = clock.now()
    overdue = add_task(engine, customer, title="Overdue install", due_at=now - timedelta(hours=5),
                       created_at=now - timedelta(days=2))
    later = add_task(engine, customer, title="Later install", due_at=now + timedelta(days=3))
    acknowledged = add_task(engine, customer, title="Acknowledged install", status="acknowledged")
    add_task(engine, customer, title="Done install", status="completed")
    add_task(engine, customer, team="billing", title="Billing question")

    with engine.store.session() as session:
        url = teamlinks.url_for(engine.signer, teamlinks.mint(session, "install", days=30,
                                                              actor="test:ops"))
    page = client.get(path_of(url))

    assert page.status_code == 200
    text = page.text
    assert "Overdue install" in text and "Later install" in text and "Acknowledged install" in text
    assert "Done install" not in text and "Billing question" not in text
    assert text.index("Overdue install") < text.index("Later install")
    assert "Overdue by 5 hours" in text and "1 overdue" in text
    links = re.findall(r'href="(/t/[^"]+)"', text)
    assert len(links) == 3
    for link, task_id in zip(links, (overdue, acknowledged, later), strict=True):
        assert engine.signer.verify("task", link.removeprefix("/t/"))["task"] == task_id
    assert client.get(links[0]).status_code == 200


def test_a_team_link_for_an_unknown_team_or_forged_gets_the_polite_page(client, engine):
    assert client.get("/teams/" + engine.signer.token("team-tasks", team="nobody")).status_code == 410
    assert client.get("/teams/forged").status_code == 410


def test_a_made_up_done_flag_does_not_claim_a_change(client, engine, customer):
    task_id = add_task(engine, customer)
    page = client.get(task_url(engine, task_id) + "?done=complete")
    assert page.status_code == 200 and 'role="status"' not in page.text
