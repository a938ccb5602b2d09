"""Cross-site request forgery protection for the form pages.

Double-submit cookie: a GET of a form page sets the cookie ``tp_csrf`` (``SameSite=Strict``,
``HttpOnly``, ``Secure`` on https) holding a token signed with the app's secret, and puts the
same token in a hidden form field. A POST is accepted only when

* the cookie and the field are present, equal (compared in constant time) and carry a valid,
  unexpired signature, and
* the ``Origin`` header, or failing that the ``Referer``, names this site, when either is sent.

The RFC 8058 one-click unsubscribe POST from a mail client is the one exception; the
unsubscribe route handles it before calling :func:`check`.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from fastapi import Request
from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE = "tp_csrf"
FIELD = "csrf_token"
MAX_AGE = 2 * 86400  # a form left open for two days must be reloaded


class CSRFError(Exception):
    """The POST did not prove it came from our own form."""


class CSRF:
    def __init__(self, secret: str, base_url: str) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="touchpoints:csrf")
        self.base_url = base_url.rstrip("/")
        self.secure = base_url.startswith("https://")

    # ------------------------------------------------------------------ issuing
    def _valid(self, token: str | None) -> bool:
        if not token or len(token) > 500:
            return False
        try:
            self._serializer.loads(token, max_age=MAX_AGE)
        except BadSignature:
            return False
        return True

    def token_for(self, request: Request) -> str:
        """The token to put in the form: the cookie's if it is still valid, else a new one."""
        current = request.cookies.get(COOKIE)
        if self._valid(current):
            return current
        return self._serializer.dumps(secrets.token_urlsafe(16))

    def set_cookie(self, response, token: str) -> None:
        response.set_cookie(COOKIE, token, max_age=MAX_AGE, path="/", httponly=True,
                            samesite="strict", secure=self.secure)

    # ------------------------------------------------------------------ checking
    def _allowed_origins(self, request: Request) -> set[str]:
        own = f"{request.url.scheme}://{request.url.netloc}"
        base = urlsplit(self.base_url)
        return {own.lower(), f"{base.scheme}://{base.netloc}".lower()}

    def _check_origin(self, request: Request) -> None:
        origin = request.headers.get("origin")
        if origin is not None:
            if origin.lower().rstrip("/") not in self._allowed_origins(request):
                raise CSRFError(f"the form was sent from another site ({origin})")
            return
        referer = request.headers.get("referer")
        if referer:
            parts = urlsplit(referer)
            if f"{parts.scheme}://{parts.netloc}".lower() not in self._allowed_origins(request):
                raise CSRFError("the form was sent from another site")

    def check(self, request: Request, form) -> None:
        """Raise :class:`CSRFError` unless the POST came from one of our own forms."""
        self._check_origin(request)
        cookie = request.cookies.get(COOKIE)
        field = form.get(FIELD)
        if not cookie or not isinstance(field, str) or not field:
            raise CSRFError("the form's security token is missing")
        if not hmac.compare_digest(cookie.encode(), field.encode()):
            raise CSRFError("the form's security token does not match")
        if not self._valid(cookie):
            raise CSRFError("the form's security token has expired")
