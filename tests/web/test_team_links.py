"""Team task-list links are team_links rows: they expire, can be revoked (closing the task
pages they opened), are made and listed by the CLI, and every change is audited."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from flows import clock, teamlinks
from flows.errors import NotFoundError, TouchpointsError
from flows.store.tables import Task, TeamLink
from tests.fixtures.terminal import wide_terminal
from tests.web.support import add_customer, add_task, audit_rows, csrf_token, get, path_of


@pytest.fixture
def cli(engine, dispatcher, monkeypatch):
    from typer.testing import CliRunner

    from flows.cli import _register_all, app
    from flows.cli import tasks as tasks_cli

    monkeypatch.setattr(tasks_cli, "_engine", lambda: engine)
    monkeypatch.setattr(tasks_cli, "_dispatcher", lambda _engine: dispatcher)
    wide_terminal(monkeypatch)
    _register_all()
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args), catch_exceptions=False)


def mint(engine, team: str = "install", *, days: float = 30, ago: timedelta = timedelta(0)):
    with engine.store.session() as session:
        link = teamlinks.mint(session, team, days=days, actor="test:ops", now=clock.now() - ago)
        return link.id, path_of(teamlinks.url_for(engine.signer, link))


def task_hrefs(page) -> list[str]:
    return re.findall(r'href="(/t/[^"]+)"', page.text)


def team_link_on(engine, page) -> str | None:
    """The team-link row id the page links to (tokens are re-signed, so compare rows)."""
    found = re.findall(r'href="/teams/([^"]+)"', page.text)
    return engine.signer.verify("team-tasks", found[0])["link"] if found else None


def test_the_cli_makes_a_link_that_opens_the_team_list_and_is_audited(cli, client, engine):
    add_task(engine, add_customer(engine), title="Install at Ada's")
    made = cli("tasks", "link", "install")
    assert made.exit_code == 0
    url = made.stdout.strip()
    page = client.get(path_of(url))
    assert page.status_code == 200 and "Install at Ada&#39;s" in page.text
    [row] = audit_rows(engine, "team_link.created")
    link = get(engine, TeamLink, row.detail["link_id"])
    assert row.actor.startswith("cli:") and link.team == "install"
    assert abs(link.expires_at - (clock.now() + timedelta(days=30))) < timedelta(minutes=1)
    assert link.id in made.stderr and "revoke-link" in made.stderr


def test_the_default_lifetime_is_a_setting(cli, engine, monkeypatch):
    monkeypatch.setattr(engine, "settings", engine.settings.model_copy(update={"team_link_days": 7}))
    cli("tasks", "link", "install")
    cli("tasks", "link", "install", "--days", "90")
    short, long = sorted((get(engine, TeamLink, r.detail["link_id"]) for r in
                          audit_rows(engine, "team_link.created")), key=lambda link: link.expires_at)
    assert (short.expires_at - short.created_at) == timedelta(days=7)
    assert (long.expires_at - long.created_at) == timedelta(days=90)


def test_the_team_link_days_setting_reads_the_environment(monkeypatch):
    from flows.settings import Settings

    monkeypatch.setenv("TOUCHPOINTS_TEAM_LINK_DAYS", "14")
    assert Settings().team_link_days == 14 and Settings.model_fields["team_link_days"].default == 30


@pytest.mark.parametrize("days", ["0", "366", "-1"])
def test_a_lifetime_outside_1_to_365_days_is_refused(cli, days):
    assert cli("tasks", "link", "install", "--days", days).exit_code != 0


def test_minting_outside_the_bounds_says_what_to_do(engine):
    with engine.store.session() as session, pytest.raises(TouchpointsError, match="1 to 365"):
        teamlinks.mint(session, "install", days=400, actor="test")


def test_a_revoked_link_and_the_task_pages_it_opened_stop_working(cli, client, engine):
    task_id = add_task(engine, add_customer(engine))
    email_task_link = path_of(engine.signer.url("task", task=task_id))
    link_id, team_url = mint(engine)
    [href] = task_hrefs(client.get(team_url))
    assert engine.signer.verify("task", href.removeprefix("/t/")) == {"task": task_id,
                                                                     "via": link_id}
    task_page = client.get(href)
    assert task_page.status_code == 200 and team_link_on(engine, task_page) == link_id  # way back
    token = csrf_token(task_page.text)

    revoked = cli("tasks", "revoke-link", link_id)

    assert revoked.exit_code == 0 and link_id in revoked.stdout
    assert client.get(team_url).status_code == 410
    assert client.get(href).status_code == 410
    refused = client.post(f"{href}/ack", data={"by": "sam@northwind.example", "csrf_token": token})
    assert refused.status_code == 410 and get(engine, Task, task_id).status == "open"
    assert client.get(email_task_link).status_code == 200  # links from emails do not depend on it
    [row] = audit_rows(engine, "team_link.revoked")
    assert row.detail == {"link_id": link_id, "team": "install"} and row.actor.startswith("cli:")
    assert cli("tasks", "revoke-link", link_id).exit_code == 0  # twice is harmless
    assert len(audit_rows(engine, "team_link.revoked")) == 1


def test_an_expired_link_gets_the_polite_page(client, engine):
    _, dead = mint(engine, days=30, ago=timedelta(days=30, minutes=1))
    _, alive = mint(engine, days=30, ago=timedelta(days=29))
    assert client.get(dead).status_code == 410
    assert client.get(alive).status_code == 200


def test_an_old_style_400_day_link_no_longer_opens_anything(client, engine):
    old = "/teams/" + engine.signer.token("team-tasks", team="install")
    assert client.get(old).status_code == 410


def test_a_link_for_another_team_or_a_forged_row_id_gets_the_polite_page(client, engine):
    link_id, _ = mint(engine, "install")
    other = "/teams/" + engine.signer.token("team-tasks", team="billing", link=link_id)
    assert client.get(other).status_code == 410
    made_up = "/teams/" + engine.signer.token("team-tasks", team="install", link="TL-000000000000")
    assert client.get(made_up).status_code == 410


def test_links_lists_those_in_force_and_all_with_all(cli, engine):
    keep, _ = mint(engine, "install")
    gone, _ = mint(engine, "install")
    expired, _ = mint(engine, "install", days=1, ago=timedelta(days=2))
    cli("tasks", "revoke-link", gone)
    listed = cli("tasks", "links").stdout
    assert keep in listed and gone not in listed and expired not in listed
    every = cli("tasks", "links", "--all", "--team", "install").stdout
    assert all(i in every for i in (keep, gone, expired))
    assert "revoked" in every and "expired" in every


def test_revoking_an_unknown_link_says_how_to_list_them(engine):
    with engine.store.session() as session, pytest.raises(NotFoundError, match="no team link"):
        teamlinks.revoke(session, "TL-nope", actor="test")


def test_escalations_share_one_link_per_team_and_make_a_new_one_once_it_is_revoked(engine):
    with engine.store.session() as session:
        first = teamlinks.shared_url(engine, session, "install")
        again = teamlinks.shared_url(engine, session, "install")
        billing = teamlinks.shared_url(engine, session, "billing")
    assert first == again and first != billing
    [link_id] = {r.detail["link_id"] for r in audit_rows(engine, "team_link.created")
                 if r.detail["team"] == "install"}
    with engine.store.session() as session:
        teamlinks.revoke(session, link_id, actor="test")
        fresh = teamlinks.shared_url(engine, session, "install")
    claims = engine.signer.verify("team-tasks", fresh.rsplit("/", 1)[1])
    assert claims["link"] != link_id


def test_a_task_page_from_an_email_offers_the_shared_team_link_only_when_one_is_live(client,
                                                                                  engine):
    task_id = add_task(engine, add_customer(engine))
    url = path_of(engine.signer.url("task", task=task_id))
    assert team_link_on(engine, client.get(url)) is None  # a GET makes no link
    assert audit_rows(engine, "team_link.created") == []
    with engine.store.session() as session:
        shared = teamlinks.shared_url(engine, session, "install")
    shared_id = engine.signer.verify("team-tasks", shared.rsplit("/", 1)[1])["link"]
    assert team_link_on(engine, client.get(url)) == shared_id
