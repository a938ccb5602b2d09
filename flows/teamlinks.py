"""Team task-list links: each one is a ``team_links`` row that expires and can be revoked.

The link itself is a signed token ``{"team", "link": <row id>}`` (purpose ``team-tasks``); the
signature proves we made it, the row decides whether it still works. Links minted before rows
existed (``{"team"}`` only, valid 400 days and impossible to revoke) no longer open anything:
ask for a new one with ``touchpoints tasks link TEAM``.

Task links handed out by a team list carry ``via: <row id>``, so revoking (or the expiry of) a
team link also closes the task pages it opened. Escalation emails share one link per team
(created by ``system:escalation``), minted again once less than half its lifetime is left.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from flows import clock
from flows.errors import NotFoundError, TouchpointsError
from flows.store.tables import TeamLink

MAX_DAYS = 365
SHARED_BY = "system:escalation"


def _days(days: float) -> float:
    if not isinstance(days, (int, float)) or not 0 < days <= MAX_DAYS:
        raise TouchpointsError(f"a team link lasts 1 to {MAX_DAYS} days, not {days!r}",
                               hint="e.g. `touchpoints tasks link install --days 30`")
    return float(days)


def mint(session, team: str, *, days: float, actor: str,
         now: datetime | None = None) -> TeamLink:
    """A new link for the team, valid ``days``; audited as ``team_link.created``."""
    from flows.store import audit

    now = now or clock.now()
    lifetime = _days(days)
    link = TeamLink(id=f"TL-{secrets.token_hex(6)}", team=team, created_at=now,
                    expires_at=now + timedelta(days=lifetime), revoked_at=None,
                    created_by=actor[:200])
    session.add(link)
    session.flush()
    audit.record(session, action="team_link.created", result="created", actor=actor,
                 reason=f"team link {link.id} for {team}, valid {lifetime:g} days",
                 detail={"link_id": link.id, "team": team,
                         "expires_at": link.expires_at.isoformat()}, at=now)
    return link


def token_for(signer, link: TeamLink) -> str:
    return signer.token("team-tasks", team=link.team, link=link.id)


def url_for(signer, link: TeamLink) -> str:
    return signer.url("team-tasks", team=link.team, link=link.id)


def is_active(link: TeamLink | None, now: datetime | None = None) -> bool:
    now = now or clock.now()
    return link is not None and link.revoked_at is None and link.expires_at > now


def active(session, link_id: Any, team: Any = None, now: datetime | None = None) -> TeamLink | None:
    """The live row behind a link id (for ``team``, when given), else None."""
    if not isinstance(link_id, str) or len(link_id) > 32:
        return None
    link = session.get(TeamLink, link_id)
    if not is_active(link, now) or (team is not None and link.team != team):
        return None
    return link


def resolve(session, claims: dict[str, Any] | None, now: datetime | None = None) -> TeamLink | None:
    """The live row a verified team-tasks token names; None for old-style or dead links."""
    if not claims or not isinstance(claims.get("team"), str):
        return None
    return active(session, claims.get("link"), claims["team"], now)


def current_shared(session, team: str, days: float, now: datetime | None = None) -> TeamLink | None:
    """The team's shared link if it still has at least half its lifetime left."""
    now = now or clock.now()
    return session.scalars(
        select(TeamLink).where(TeamLink.team == team, TeamLink.created_by == SHARED_BY,
                               TeamLink.revoked_at.is_(None),
                               TeamLink.expires_at > now + timedelta(days=days / 2))
        .order_by(TeamLink.expires_at.desc()).limit(1)).first()


def shared_url(engine, session, team: str) -> str:
    """The URL of the team's shared link (escalation emails), minted when there is none."""
    days = engine.settings.team_link_days
    link = current_shared(session, team, days) or mint(session, team, days=days, actor=SHARED_BY)
    return url_for(engine.signer, link)


def revoke(session, link_id: str, *, actor: str) -> TeamLink:
    """Revoke a link (and the task pages opened from it); revoking twice is harmless."""
    from flows.store import audit

    link = session.get(TeamLink, link_id) if isinstance(link_id, str) and len(link_id) <= 32 else None
    if link is None:
        raise NotFoundError(f"no team link {link_id!r}",
                            hint="list them with `touchpoints tasks links`")
    if link.revoked_at is None:
        now = clock.now()
        link.revoked_at = now
        audit.record(session, action="team_link.revoked", result="revoked", actor=actor,
                     reason=f"team link {link.id} for {link.team} revoked",
                     detail={"link_id": link.id, "team": link.team}, at=now)
    return link


def list_links(session, team: str | None = None, *, include_dead: bool = False,
               now: datetime | None = None) -> list[dict[str, Any]]:
    now = now or clock.now()
    query = select(TeamLink).order_by(TeamLink.created_at, TeamLink.id)
    if team:
        query = query.where(TeamLink.team == team)
    rows = []
    for link in session.scalars(query):
        status = ("revoked" if link.revoked_at is not None
                  else "expired" if link.expires_at <= now else "active")
        if status == "active" or include_dead:
            rows.append({"id": link.id, "team": link.team, "status": status,
                         "created_at": link.created_at, "expires_at": link.expires_at,
                         "revoked_at": link.revoked_at, "created_by": link.created_by})
    return rows
