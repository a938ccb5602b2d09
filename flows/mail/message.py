"""Building email messages safely.

* display names, subjects and header values are folded to one line before they reach a
  header, and the policy refuses linefeeds in header values as a second guard: customer data
  can never start a new header;
* the Message-ID is derived from the ledger key, so a retried send carries the same id;
* every message carries the postal address in its footer; non-transactional mail also carries
  unsubscribe and preferences links and the RFC 8058 one-click unsubscribe headers.
"""

from __future__ import annotations

import hashlib
import html as html_lib
import re
import unicodedata
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import formatdate, parseaddr

from flows.templating import one_line

#: headers whose ASCII values are written as they are, never folded or encoded: a mail client
#: must find the unsubscribe URL and the key in them verbatim
VERBATIM = frozenset({"list-unsubscribe", "list-unsubscribe-post", "x-touchpoints-key"})
MAX_LINE = 998  # RFC 5322 hard limit, CRLF excluded
#: set by build_message itself; extra_headers may not replace them
RESERVED = frozenset({
    "from", "to", "cc", "bcc", "reply-to", "sender", "subject", "date", "message-id",
    "mime-version", "content-type", "content-transfer-encoding", "return-path",
    "list-unsubscribe", "list-unsubscribe-post", "x-touchpoints-key",
})
HEADER_NAME = re.compile(r"^[!-9;-~]{1,76}$")  # printable ASCII without ':' (RFC 5322 ftext)
LINK = re.compile(r"^https?://[^\s<>\"]+$", re.IGNORECASE)
FALLBACK_DOMAIN = "touchpoints.local"


class MailPolicy(EmailPolicy):
    """``email.policy.SMTP`` (CRLF, refuses CR/LF in header values) with 7-bit bodies, and the
    headers in VERBATIM written unfolded so their URLs are never turned into encoded-words."""

    def _verbatim(self, name: str, value: str) -> str | None:
        text = str(value)
        if name.lower() in VERBATIM and text.isascii() and len(name) + 2 + len(text) <= MAX_LINE:
            return f"{name}: {text}{self.linesep}"
        return None

    def fold(self, name, value):
        return self._verbatim(name, value) or super().fold(name, value)

    def fold_binary(self, name, value):
        line = self._verbatim(name, value)
        return line.encode("ascii") if line is not None else super().fold_binary(name, value)


POLICY = MailPolicy(linesep="\r\n", cte_type="7bit", raise_on_defect=True)


def header_text(value: object) -> str:
    """One line of text for a header: line breaks folded to spaces, other control characters
    dropped, runs of white space made one space."""
    text = one_line(str(value)).replace("\t", " ")
    return " ".join("".join(ch for ch in text if unicodedata.category(ch) != "Cc").split())


def _ascii_domain(domain: str) -> str:
    domain = domain.strip().rstrip(".")
    if domain.isascii():
        return domain
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError(f"not a valid mail domain: {domain!r}") from exc


def sender_domain(sender: str) -> str:
    address = parseaddr(header_text(sender))[1]
    domain = address.rpartition("@")[2]
    return _ascii_domain(domain).lower() if domain else FALLBACK_DOMAIN


def message_id_for(key: str, sender: str) -> str:
    """A Message-ID that is the same for the same ledger key (and sender domain)."""
    return f"<{hashlib.sha256(key.encode('utf-8')).hexdigest()[:32]}@{sender_domain(sender)}>"


def safe_address(value: str | tuple[str, str]) -> str:
    """``Name <addr>`` with the name folded to one line and quoted or encoded as needed.

    Pass a ``(name, address)`` pair for names from customer data: the name is never parsed as
    address syntax. A plain string is parsed as ``Name <addr>`` or ``addr``.
    """
    if isinstance(value, tuple):
        name, address = value
    else:
        name, address = parseaddr(header_text(value))
    name, address = header_text(name or ""), header_text(address or "")
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or " " in address:
        raise ValueError(f"not an email address: {value!r}")
    return str(Address(display_name=name, username=local, domain=_ascii_domain(domain)))


def _link(url: str, what: str) -> str:
    url = header_text(url)
    if not LINK.match(url):
        raise ValueError(f"the {what} link must be an http(s) URL without spaces, got {url!r}")
    return url


def text_footer(postal_address: str, unsubscribe_url: str | None, preferences_url: str | None) -> str:
    lines = ["", "-- ", header_text(postal_address)]
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
    joined = " &middot; ".join(links)
    return ('<div class="tp-footer" style="margin-top:24px;padding-top:12px;border-top:1px solid #ddd;'
            'font-size:12px;color:#555">'
            f"<p>{esc(header_text(postal_address))}</p>"
            + (f"<p>{joined}</p>" if joined else "") + "</div>")


def with_html_footer(html: str, footer: str) -> str:
    """The footer inserted before the last ``</body>``, or appended when there is none."""
    marker = html.lower().rfind("</body>")
    return html[:marker] + footer + html[marker:] if marker != -1 else html + footer


def _extra(extra_headers: dict[str, str] | None) -> list[tuple[str, str]]:
    out = []
    for name, value in (extra_headers or {}).items():
        if not HEADER_NAME.match(name):
            raise ValueError(f"not a valid header name: {name!r}")
        if name.lower() in RESERVED:
            raise ValueError(f"header {name} is set by build_message and cannot be overridden")
        out.append((name, header_text(value)))
    return out


def build_message(*, sender: str, to: str | tuple[str, str], subject: str, text: str, html: str,
                  key: str, reply_to: str | None = None, transactional: bool, postal_address: str,
                  unsubscribe_url: str | None, preferences_url: str | None,
                  extra_headers: dict[str, str] | None = None) -> EmailMessage:
    """A multipart/alternative message (text and HTML) ready for SMTP.

    ``to`` is ``"Name <addr>"`` or a ``(name, addr)`` pair (use the pair for customer data).
    Non-transactional messages need ``unsubscribe_url``; transactional ones get no unsubscribe
    link or headers even if one is passed. Raises ValueError for an unusable address, link or
    extra header.
    """
    unsubscribe = None if transactional else _link(unsubscribe_url or "", "unsubscribe")
    preferences = None if transactional or not preferences_url else _link(preferences_url, "preferences")
    extra = _extra(extra_headers)
    message = EmailMessage(policy=POLICY)
    message["From"] = safe_address(sender)
    message["To"] = safe_address(to)
    if reply_to:
        message["Reply-To"] = safe_address(reply_to)
    message["Subject"] = header_text(subject)
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = message_id_for(key, sender)
    message["X-Touchpoints-Key"] = header_text(key)
    if unsubscribe:
        message["List-Unsubscribe"] = f"<{unsubscribe}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    for name, value in extra:
        message[name] = value
    message.set_content(text.rstrip("\n") + "\n" + text_footer(postal_address, unsubscribe, preferences))
    message.add_alternative(with_html_footer(html, html_footer(postal_address, unsubscribe, preferences)),
                            subtype="html")
    return message
