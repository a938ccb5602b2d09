"""Team links in the store, on SQLite and PostgreSQL: made, resolved, shared, revoked, listed;
and the failed-authentication audit rows written through the same store."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select

from flows import clock, teamlinks
from flows.links import Signer
from flows.store.tables import AuditRow
from flows.web.ratelimit import FailedAuthLimiter, write_rows

SIGNER = Signer("a-test-secret", "http://127.0.0.1:8000")


def test_a_link_resolves_while_it_lives_and_not_after_revocation(store):
    with store.session() as session:
        link = teamlinks.mint(session, "install", days=30, actor="test:ops")
        link_id = link.id
    claims = SIGNER.verify("team-tasks", teamlinks.token_for(SIGNER, link))
    with store.session() as session:
        assert teamlinks.resolve(session, claims).id == link_id
        assert teamlinks.resolve(session, {**claims, "team": "billing"}) is None
        assert teamlinks.resolve(session, {"team": "install"}) is None  # old style
        assert teamlinks.resolve(session, claims, clock.now() + timedelta(days=31)) is None
        teamlinks.revoke(session, link_id, actor="test:ops")
    with store.session() as session:
        assert teamlinks.resolve(session, claims) is None
        [row] = teamlinks.list_links(session, "install", include_dead=True)
        assert row["status"] == "revoked" and teamlinks.list_links(session) == []
        actions = session.scalars(select(AuditRow.action).order_by(AuditRow.seq)).all()
    assert actions == ["team_link.created", "team_link.revoked"]


def test_the_shared_link_is_reused_until_half_its_life_is_gone(store):
    with store.session() as session:
        old = teamlinks.mint(session, "install", days=30, actor=teamlinks.SHARED_BY,
                             now=clock.now() - timedelta(days=16))
        fresh = teamlinks.mint(session, "install", days=30, actor=teamlinks.SHARED_BY)
        teamlinks.mint(session, "install", days=300, actor="cli:someone")  # never shared
        assert teamlinks.current_shared(session, "install", 30).id == fresh.id
        assert teamlinks.current_shared(session, "install", 0).id == fresh.id
        teamlinks.revoke(session, fresh.id, actor="test")
        assert teamlinks.current_shared(session, "install", 30) is None
        assert teamlinks.current_shared(session, "install", 0).id == old.id


def test_failed_authentication_rows_are_written_with_their_counts(store):
    limiter = FailedAuthLimiter(window_s=60, per_key=3, per_address=5)
    rows = []
    for _ in range(20):
        rows += limiter.failure(address="192.0.2.1", key_id="0123456789ab", reason="wrong")[1]
    write_rows(store, limiter, rows + limiter.drain(), logging.getLogger("test"))
    with store.session() as session:
        written = session.scalars(select(AuditRow).where(AuditRow.action == "auth.failed")).all()
        assert [r.detail["count"] for r in written] == [1, 19]
        assert {r.actor for r in written} == {"api:0123456789ab"}
