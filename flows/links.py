"""Signed, purpose-bound, expiring links to the web app (surveys, tasks, unsubscribe)."""

from __future__ import annotations

from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from flows.errors import TouchpointsError

#: purpose -> (URL path template, maximum age in seconds)
PURPOSES: dict[str, tuple[str, int]] = {
    "survey": ("/s/{token}", 60 * 86400),
    "task": ("/t/{token}", 180 * 86400),
    "task-ack": ("/t/{token}?action=ack", 180 * 86400),
    "task-complete": ("/t/{token}?action=complete", 180 * 86400),
    "unsubscribe": ("/u/{token}", 400 * 86400),
    "preferences": ("/p/{token}", 400 * 86400),
    # the team_links row decides (expiry, revocation: flows/teamlinks.py); this only bounds it
    "team-tasks": ("/teams/{token}", 366 * 86400),
}
# task-ack and task-complete open the same page as task: the token is signed for "task".
_SIGNED_AS = {"task-ack": "task", "task-complete": "task"}


class InvalidLink(TouchpointsError):
    """A link is forged, expired or for another purpose. Pages show one polite answer for all."""


class Signer:
    def __init__(self, secret: str, base_url: str) -> None:
        self.secret = secret
        self.base_url = base_url.rstrip("/")

    def _serializer(self, purpose: str) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self.secret, salt=f"touchpoints:{purpose}")

    def token(self, purpose: str, **claims: Any) -> str:
        signed_as = _SIGNED_AS.get(purpose, purpose)
        if signed_as not in PURPOSES:
            raise ValueError(f"unknown link purpose {purpose!r}")
        return self._serializer(signed_as).dumps(claims)

    def url(self, purpose: str, **claims: Any) -> str:
        path, _ = PURPOSES[purpose]
        return self.base_url + path.format(token=self.token(purpose, **claims))

    def verify(self, purpose: str, token: str) -> dict[str, Any]:
        _, max_age = PURPOSES[purpose]
        try:
            claims = self._serializer(purpose).loads(token, max_age=max_age)
        except SignatureExpired as exc:
            raise InvalidLink("this link has expired") from exc
        except BadSignature as exc:
            raise InvalidLink("this link is not valid") from exc
        if not isinstance(claims, dict):
            raise InvalidLink("this link is not valid")
        return claims


def signer_from_settings(settings) -> Signer:
    return Signer(settings.signing_key(), settings.base_url)
