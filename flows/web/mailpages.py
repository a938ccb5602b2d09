"""The mail catcher pages (/mail), served only when the embedded catcher is in use.

The HTML part is shown in a sandboxed iframe (``srcdoc``, autoescaped: no scripts, no same
origin, no remote images under the page's CSP); the text part is escaped and its links made
clickable, and the survey/task/unsubscribe links of the message are listed with paths that
work on this host. Off loopback both pages need an operator login (flows/web/operator.py).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup, escape

from flows.errors import NotFoundError
from flows.web.operator import gate
from flows.web.pages import engine_of, render

router = APIRouter(include_in_schema=False)

MAIL_ID = re.compile(r"^[0-9]{1,30}-[0-9a-f]{1,32}$")
URL = re.compile(r"https?://[^\s<>\"'()]+")
HREF = re.compile(r"""href\s*=\s*["'](https?://[^"']+)["']""", re.IGNORECASE)
LIMIT = 500
#: the iframe's srcdoc inherits this CSP: inline styles of the email may apply, nothing else
MAIL_CSP = ("default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
PURPOSES = [("/s/", "Survey page"), ("/t/", "Task page"), ("/u/", "Unsubscribe page"),
            ("/p/", "Preferences page"), ("/teams/", "Team task list")]


def _mailbox(request: Request):
    from flows.mail.mailbox import Mailbox

    return Mailbox(engine_of(request).settings.mailbox_dir)


def _when(received_at: str) -> str:
    try:
        moment = datetime.fromisoformat(received_at)  # Python 3.11 reads the Z suffix
    except ValueError:
        return received_at
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _trim(url: str) -> str:
    return url.rstrip(".,;:!?")


def _local(request: Request, url: str) -> str:
    """A link to this app's own pages, made relative so it works on the host serving /mail."""
    base = engine_of(request).settings.base_url.rstrip("/")
    if url.startswith(base + "/"):
        return url[len(base):]
    return url


def linkify(text: str) -> Markup:
    """Escape the text part and turn its http(s) URLs into links."""
    escaped = str(escape(text))
    out, last = [], 0
    for match in URL.finditer(escaped):
        url = _trim(match.group(0))
        out.append(escaped[last:match.start()])
        out.append(f'<a href="{url}" rel="noopener noreferrer">{url}</a>')
        last = match.start() + len(url)
    out.append(escaped[last:])
    return Markup("".join(out))


def message_links(request: Request, text: str, html: str) -> list[dict[str, str]]:
    """The app's own links in a message (survey, task, unsubscribe...), once each."""
    found: list[str] = [_trim(u) for u in URL.findall(text or "")]
    found += [u.replace("&amp;", "&") for u in HREF.findall(html or "")]
    links, seen = [], set()
    for url in found:
        local = _local(request, url)
        if not local.startswith("/") or local in seen:
            continue
        seen.add(local)
        label = next((name for prefix, name in PURPOSES if local.startswith(prefix)), None)
        if label is None:
            continue
        action = re.search(r"[?&]action=(ack|complete)", local)
        if action:
            label += " (acknowledge)" if action.group(1) == "ack" else " (complete)"
        links.append({"href": local, "label": label})
    return links


@router.get("/mail", response_class=HTMLResponse)
def mail_list(request: Request) -> Response:
    if (login := gate(request)) is not None:
        return login
    rows: list[dict[str, Any]] = []
    for summary in reversed(_mailbox(request).list(limit=LIMIT)):
        rows.append({"id": summary.id, "when": _when(summary.received_at),
                     "to": ", ".join(summary.to), "subject": summary.subject})
    return render(request, "mail_list.html", {"messages": rows})


@router.get("/mail/{mail_id}", response_class=HTMLResponse)
def mail_detail(request: Request, mail_id: str) -> Response:
    if (login := gate(request)) is not None:
        return login
    if not MAIL_ID.match(mail_id):
        return render(request, "mail_missing.html", status=404)
    try:
        caught = _mailbox(request).get(mail_id)
    except NotFoundError:
        return render(request, "mail_missing.html", status=404)
    html = caught.html or ""
    srcdoc = ('<base target="_blank">' + html) if html else ""
    return render(request, "mail_detail.html", {
        "subject": caught.summary.subject,
        "headers": [("Received", _when(caught.summary.received_at)),
                    ("Envelope from", caught.summary.mail_from),
                    ("Envelope to", ", ".join(caught.summary.to))] + list(caught.headers),
        "links": message_links(request, caught.text or "", html),
        "html": srcdoc,
        "text": caught.text if caught.text else None,
        "text_linked": linkify(caught.text or ""),
    }, csp=MAIL_CSP)
