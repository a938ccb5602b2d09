"""Building email messages safely.

* display names, subjects and header values are folded to one line before they reach a
  header, and the policy refuses linefeeds in header values as a second guard: customer data
  can never start a new header;
* the Message-ID is derived from the ledger key, so a retried send carries the same id;
* every message carries the postal address in its footer; non-transactional mail also carries
  unsubscribe and preferences links and the RFC 8058 one-click unsubscribe headers.
"""

from __future__ import annotations

import base64
import hashlib
import html as html_lib
import re
import unicodedata
from email.headerregistry import Address, Group
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import formatdate, parseaddr
from typing import Self

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


ADDRESS_HEADERS = frozenset({"from", "to", "cc", "reply-to", "sender"})
WORD_BYTES = 45  # bytes of UTF-8 per base64 encoded-word: 12 + 60 = 72 characters, under 75
_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]*$")  # RFC 5322 atext and spaces


def encoded_words(text: str) -> str:
    """``text`` as base64 RFC 2047 encoded-words on folded lines: whatever it holds (``=?``,
    quotes, specials, any script) decodes back to exactly ``text``, never to syntax."""
    words, chunk, size = [], [], 0
    for ch in text:
        n = len(ch.encode("utf-8"))
        if chunk and size + n > WORD_BYTES:
            words.append("".join(chunk))
            chunk, size = [], 0
        chunk.append(ch)
        size += n
    if chunk:
        words.append("".join(chunk))
    return "\r\n ".join(
        f"=?utf-8?b?{base64.b64encode(w.encode('utf-8')).decode('ascii')}?=" for w in words)


def _plain(text: str, room: int) -> bool:
    """True if ``text`` can be written as it is: printable ASCII words, no encoded-word marker,
    short enough for one line."""
    return (text.isascii() and text.isprintable() and "=?" not in text and "?=" not in text
            and len(text) <= room and text == " ".join(text.split()))


def _ew(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode('utf-8')).decode('ascii')}?="


def _phrase(name: str) -> str:
    """A display name as a phrase that every reader decodes to ``name``: plain words as atoms,
    each run of other words as one encoded-word (never two encoded-words side by side: readers
    disagree on the space between them), tokens folded onto lines of at most 78 characters."""
    tokens: list[str] = []
    run: list[str] = []
    for word in name.split(" "):
        if _ATOM.match(word) and word and "=?" not in word and "?=" not in word:
            if run:
                tokens.append(_ew(" ".join(run)))
                run = []
            tokens.append(word)
        else:
            run.append(word)
    if run:
        tokens.append(_ew(" ".join(run)))
    lines, line = [], ""
    for token in tokens:
        if line and len(line) + 1 + len(token) > 70:
            lines.append(line)
            line = token
        else:
            line = f"{line} {token}" if line else token
    return "\r\n ".join([*lines, line])


def _mailbox_line(address: Address) -> str:
    spec = f"{address.username}@{address.domain}" if _ATOM.match(address.username) and \
        " " not in address.username else address.addr_spec
    return f"{_phrase(address.display_name)} <{spec}>" if address.display_name else spec


class LiteralText(str):
    """A header value written as literal text: an encoded-word in it stays text when read back."""

    def __new__(cls, name: str, value: str) -> Self:
        self = super().__new__(cls, value)
        self.name = name
        self.defects: list = []
        return self

    def fold(self, *, policy) -> str:
        text = str(self)
        body = text if _plain(text, MAX_LINE - len(self.name) - 2) and \
            len(self.name) + 2 + len(text) <= 78 else encoded_words(text)
        return f"{self.name}: {body}{policy.linesep}"


class Verbatim(LiteralText):
    """A header value this module made itself, plain ASCII on one line (Date, Message-ID):
    written as it is, never parsed or encoded."""

    def fold(self, *, policy) -> str:
        return f"{self.name}: {self}{policy.linesep}"


class AddressList(str):
    """An address header (From, To, Reply-To) made from ``Address`` objects, stored as it is:
    the library would render the addresses to text and parse that text again, a third of the
    cost of building a message. It reads like the library's own header (``addresses``) and is
    written by :class:`MailPolicy` from the same objects."""

    def __new__(cls, name: str, addresses: tuple[Address, ...]) -> Self:
        self = super().__new__(cls, ", ".join(str(a) for a in addresses))
        self.name = name
        self.addresses = addresses
        self.defects: list = []
        return self

    @property
    def groups(self) -> tuple[Group, ...]:
        return tuple(Group(None, [a]) for a in self.addresses)


class MailPolicy(EmailPolicy):
    """``email.policy.SMTP`` (CRLF, refuses CR/LF in header values) with 7-bit bodies, and three
    kinds of headers written by this module rather than by the library's folder (which decodes
    encoded-words found in display names and unquotes long names when it refolds them):

    * address headers, from the structured ``Address`` objects: a display name is written as
      plain atoms or as base64 encoded-words, never as a quoted string that could be refolded;
    * text headers (``LiteralText``): plain ASCII as it is, anything else as encoded-words;
    * the headers in VERBATIM unfolded, so their URLs are never turned into encoded-words."""

    def _verbatim(self, name: str, value) -> str | None:
        if isinstance(value, LiteralText):
            return value.fold(policy=self)
        if name.lower() in ADDRESS_HEADERS and getattr(value, "addresses", None) is not None:
            lines = [_mailbox_line(a) for a in value.addresses]
            return f"{name}: " + ",\r\n ".join(lines) + self.linesep
        text = str(value)
        if name.lower() in VERBATIM and text.isascii() and len(name) + 2 + len(text) <= MAX_LINE:
            return f"{name}: {text}{self.linesep}"
        return None

    def header_fetch_parse(self, name, value):
        return value if isinstance(value, (LiteralText, AddressList)) \
            else super().header_fetch_parse(name, value)

    def fold(self, name, value):
        return self._verbatim(name, value) or super().fold(name, value)

    def fold_binary(self, name, value):
        line = self._verbatim(name, value)
        if line is None:
            return super().fold_binary(name, value)
        return line.encode("utf-8" if self.utf8 else "ascii", "surrogateescape")


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


NAME_CHARS, NAME_BYTES = 180, 540  # a display name longer than this is cut (no line > 998)


def display_text(value: object) -> str:
    """A display name as it reads back: one line, no control characters, at most NAME_CHARS
    characters and NAME_BYTES bytes of UTF-8."""
    text = header_text(value or "")[:NAME_CHARS]
    while len(text.encode("utf-8")) > NAME_BYTES:
        text = text[:-1]
    return text.strip()


def mailbox(name: object, address: str) -> Address:
    """The structured address for ``name`` (any text: never parsed as address syntax) and
    ``address``. Raises ValueError if ``address`` is not an email address."""
    address = header_text(address or "")
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or " " in address or '"' in local or "\\" in local:
        raise ValueError(f"not an email address: {address!r}")
    try:
        return Address(display_name=display_text(name), username=local,
                       domain=_ascii_domain(domain))
    except (ValueError, IndexError) as exc:
        raise ValueError(f"not an email address: {address!r}") from exc


def as_address(value: Address | str | tuple[str, str]) -> Address:
    """An ``Address`` from an ``Address``, a ``(name, address)`` pair (use the pair, or an
    ``Address``, for names from customer data) or a ``"Name <addr>"`` string from the config."""
    if isinstance(value, Address):
        return mailbox(value.display_name, f"{value.username}@{value.domain}" if value.username else "")
    if isinstance(value, tuple):
        return mailbox(*value)
    name, address = parseaddr(header_text(value))
    if not address:
        raise ValueError(f"not an email address: {value!r}")
    return mailbox(name, address)


def safe_address(value: Address | str | tuple[str, str]) -> str:
    """``Name <addr>`` as written on the wire (encoded-words for anything but plain names)."""
    return _mailbox_line(as_address(value))


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


def _literal(message: EmailMessage, name: str, value: object) -> None:
    message[name] = LiteralText(name, header_text(value))


def build_message(*, sender: Address | str, to: Address | tuple[str, str] | str, subject: str,
                  text: str, html: str, key: str, reply_to: Address | str | None = None, transactional: bool, postal_address: str,
                  unsubscribe_url: str | None, preferences_url: str | None,
                  extra_headers: dict[str, str] | None = None) -> EmailMessage:
    """A multipart/alternative message (text and HTML) ready for SMTP.

    ``sender``, ``to`` and ``reply_to`` are ``Address`` objects (see :func:`mailbox`), ``(name,
    addr)`` pairs or, for addresses from the config, ``"Name <addr>"`` strings. Whatever a name
    or the subject holds (line breaks, NUL, U+2028, encoded-words, specials, any length) it
    reads back as the same text and adds no header and no address.
    Non-transactional messages need ``unsubscribe_url``; transactional ones get no unsubscribe
    link or headers even if one is passed. Raises ValueError for an unusable address, link or
    extra header.
    """
    unsubscribe = None if transactional else _link(unsubscribe_url or "", "unsubscribe")
    preferences = None if transactional or not preferences_url else _link(preferences_url, "preferences")
    extra = _extra(extra_headers)
    message = EmailMessage(policy=POLICY)
    from_address = as_address(sender)
    message["From"] = AddressList("From", (from_address,))
    message["To"] = AddressList("To", (as_address(to),))
    if reply_to:
        message["Reply-To"] = AddressList("Reply-To", (as_address(reply_to),))
    _literal(message, "Subject", subject)
    message["Date"] = Verbatim("Date", formatdate(usegmt=True))
    message["Message-ID"] = Verbatim("Message-ID", message_id_for(key, from_address.addr_spec))
    _literal(message, "X-Touchpoints-Key", key)
    if unsubscribe:
        message["List-Unsubscribe"] = f"<{unsubscribe}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    for name, value in extra:
        _literal(message, name, value)
    message.set_content(text.rstrip("\n") + "\n" + text_footer(postal_address, unsubscribe, preferences))
    message.add_alternative(with_html_footer(html, html_footer(postal_address, unsubscribe, preferences)),
                            subtype="html")
    return message
