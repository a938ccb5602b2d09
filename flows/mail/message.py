"""Building email messages safely.

* display names, subjects and header values are folded to one line before they reach a
  header, and the SMTP policy refuses linefeeds as a second guard: customer data can never
  start a new header;
* the Message-ID is derived from the ledger key, so a retried send carries the same id;
* non-transactional mail carries the legal footer and RFC 8058 one-click unsubscribe headers.
"""

from __future__ import annotations

import hashlib
import html as html_lib
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formataddr, formatdate, parseaddr

from flows.templating import one_line

POLICY = policy.SMTP.clone(raise_on_defect=True)


def _domain(sender: str) -> str:
    address = parseaddr(one_line(sender))[1]
    return address.rpartition("@")[2] or "touchpoints.local"


def message_id_for(key: str, sender: str) -> str:
    """A Message-ID that is the same for the same ledger key."""
    return f"<{hashlib.sha256(key.encode('utf-8')).hexdigest()[:32]}@{_domain(sender)}>"


def safe_address(value: str | tuple[str, str]) -> str:
    """``Name <addr>`` with the name folded to one line and encoded as needed. Pass a
    ``(name, address)`` pair for names from customer data: they are never re-parsed."""
    name, address = value if isinstance(value, tuple) else parseaddr(one_line(value))
    address = one_line(address)
    if not address or "@" not in address:
        raise ValueError(f"not an email address: {value!r}")
    local, _, domain = address.rpartition("@")
    return str(Address(display_name=one_line(name), username=local, domain=domain))


def text_footer(postal_address: str, unsubscribe_url: str | None, preferences_url: str | None) -> str:
    lines = ["", "--", one_line(postal_address)]
    if unsubscribe_url:
        lines.append(f"Unsubscribe from these emails: {unsubscribe_url}")
    if preferences_url:
        lines.append(f"Choose which emails you get: {preferences_url}")
    return "\n".join(lines) + "\n"


def html_footer(postal_address: str, unsubscribe_url: str | None, preferences_url: str | None) -> str:
    esc = html_lib.escape
    links = []
    if unsubscribe_url:
        links.append(f'<a href="{esc(unsubscribe_url)}">Unsubscribe</a>')
    if preferences_url:
        links.append(f'<a href="{esc(preferences_url)}">Email preferences</a>')
    joined = " · ".join(links)
    return ('<div class="tp-footer" style="margin-top:24px;padding-top:12px;border-top:1px solid #ddd;'
            'font-size:12px;color:#555">'
            f"<p>{esc(one_line(postal_address))}</p>" + (f"<p>{joined}</p>" if joined else "") + "</div>")


def _with_html_footer(html: str, footer: str) -> str:
    marker = html.lower().rfind("</body>")
    return html[:marker] + footer + html[marker:] if marker != -1 else html + footer


def build_message(*, sender: str, to: str | tuple[str, str], subject: str, text: str, html: str, key: str,
                  reply_to: str | None = None, transactional: bool, postal_address: str,
                  unsubscribe_url: str | None, preferences_url: str | None,
                  extra_headers: dict[str, str] | None = None) -> EmailMessage:
    if not transactional and not unsubscribe_url:
        raise ValueError("a non-transactional email needs an unsubscribe link")
    message = EmailMessage(policy=POLICY)
    message["From"] = safe_address(sender)
    message["To"] = safe_address(to)
    if reply_to:
        message["Reply-To"] = safe_address(reply_to)
    message["Subject"] = one_line(subject)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = message_id_for(key, sender)
    message["X-Touchpoints-Key"] = one_line(key)
    if not transactional:
        message["List-Unsubscribe"] = f"<{one_line(unsubscribe_url)}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    for name, value in (extra_headers or {}).items():
        message[one_line(name)] = one_line(value)
    unsubscribe = None if transactional else unsubscribe_url
    preferences = None if transactional else preferences_url
    message.set_content(text.rstrip("\n") + "\n" + text_footer(postal_address, unsubscribe, preferences))
    message.add_alternative(_with_html_footer(html, html_footer(postal_address, unsubscribe, preferences)),
                            subtype="html")
    return message


def display(value: str) -> str:
    """For logs: an address header as text."""
    name, address = parseaddr(value)
    return formataddr((name, address))
