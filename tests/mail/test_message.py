"""Building messages: parts, safe headers, encodings, Message-ID, footer and unsubscribe headers."""

from __future__ import annotations

import hashlib
import re
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest

from flows.mail.message import POLICY
from tests.mail.support import PREFERENCES, UNSUBSCRIBE, message

INJECTIONS = ["\r\n", "\n", "\r", "\r\n\r\n"]


def body(msg: EmailMessage, subtype: str) -> str:
    """A part's text with the wire's CRLF line ends read as newlines."""
    return msg.get_body((subtype,)).get_content().replace("\r\n", "\n")


def parsed(msg: EmailMessage) -> EmailMessage:
    """The message as a receiving server would see it: parsed from its raw bytes."""
    return BytesParser(policy=policy.default).parsebytes(msg.as_bytes())


def header_lines(raw: bytes) -> list[bytes]:
    return raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def test_a_message_has_a_text_and_an_html_part_under_multipart_alternative():
    msg = parsed(message(text="Hello Zoë,\nyour fibre is live.\n", html="<p>Hello Zoë</p>"))
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in msg.iter_parts())
    assert body(msg, "plain").startswith("Hello Zoë,\nyour fibre is live.\n")
    assert body(msg, "html").startswith("<p>Hello Zoë</p>")


def test_the_built_headers_name_sender_recipient_reply_to_date_and_key():
    msg = parsed(message(key="j-7:welcome:C-1001:customer"))
    assert msg["From"].addresses[0].addr_spec == "hello@northwind.example"
    assert msg["From"].addresses[0].display_name == "Northwind Fibre"
    assert msg["To"].addresses[0].addr_spec == "zoe.harper@example.com"
    assert msg["Reply-To"].addresses[0].addr_spec == "support@northwind.example"
    assert msg["Subject"] == "How did we do?"
    assert msg["Date"].datetime is not None
    assert msg["X-Touchpoints-Key"] == "j-7:welcome:C-1001:customer"


@pytest.mark.parametrize("brk", INJECTIONS, ids=["crlf", "lf", "cr", "blank-line"])
def test_a_line_break_in_a_customer_name_or_subject_never_creates_a_header(brk):
    msg = message(to=(f"Zoe{brk}Bcc: victim@evil.example", "zoe.harper@example.com"),
                  subject=f"Your bill{brk}Bcc: other@evil.example{brk}X-Evil: 1",
                  reply_to=f"Support{brk}Cc: third@evil.example <support@northwind.example>",
                  key=f"j-1{brk}Bcc: key@evil.example",
                  extra_headers={"X-Campaign": f"spring{brk}Cc: fourth@evil.example"})
    raw = msg.as_bytes()
    names = [line.split(b":", 1)[0].lower() for line in header_lines(raw) if line and line[:1] not in b" \t"]
    assert b"bcc" not in names and b"cc" not in names and b"x-evil" not in names
    back = parsed(msg)
    assert back["Bcc"] is None and back["Cc"] is None and back["X-Evil"] is None
    assert [a.addr_spec for a in back["To"].addresses] == ["zoe.harper@example.com"]
    assert back["Subject"] == "Your bill Bcc: other@evil.example X-Evil: 1"
    assert back["To"].addresses[0].display_name == "Zoe Bcc: victim@evil.example"
    assert body(back, "plain").startswith("Hello Zoe")  # the body stayed the body


def test_the_policy_refuses_a_linefeed_in_a_header_value_as_a_second_guard():
    msg = EmailMessage(policy=POLICY)
    with pytest.raises(ValueError):
        msg["Subject"] = "Hello\r\nBcc: victim@evil.example"


def test_a_non_ascii_display_name_is_encoded_in_the_raw_header_and_reads_back_exactly():
    name = 'Ångström, Zoë "Z"'
    msg = message(to=(name, "zoe@example.com"), subject="Ihre Rechnung für März")
    raw = msg.as_bytes()
    assert all(line.isascii() for line in header_lines(raw))
    back = parsed(msg)
    assert back["To"].addresses[0].display_name == name
    assert back["To"].addresses[0].addr_spec == "zoe@example.com"
    assert back["Subject"] == "Ihre Rechnung für März"


def test_an_address_with_an_internationalised_domain_is_sent_as_its_ascii_form():
    back = parsed(message(to=("Jörg", "joerg@bücher.example")))
    assert back["To"].addresses[0].domain == "xn--bcher-kva.example"


def test_the_message_id_is_stable_for_a_key_and_different_for_another():
    first, again, other = message(key="j-1:csat:C-1001"), message(key="j-1:csat:C-1001"), message(key="j-1:csat:C-1002")
    digest = hashlib.sha256(b"j-1:csat:C-1001").hexdigest()[:32]
    assert first["Message-ID"] == again["Message-ID"] == f"<{digest}@northwind.example>"
    assert other["Message-ID"] != first["Message-ID"]
    assert re.fullmatch(r"<[0-9a-f]{32}@northwind\.example>", other["Message-ID"])


def test_a_non_transactional_message_carries_the_footer_and_one_click_unsubscribe_headers():
    msg = message(transactional=False)
    back = parsed(msg)
    assert back["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>"
    assert back["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = body(back, "plain")
    assert "Northwind Fibre Ltd, 12 Harbour Road" in text
    assert UNSUBSCRIBE in text and PREFERENCES in text
    html = body(back, "html")
    escaped = UNSUBSCRIBE.replace("&", "&amp;")
    footer_at = html.index("tp-footer")
    assert f'href="{escaped}"' in html[footer_at:] and f'href="{PREFERENCES}"' in html[footer_at:]
    assert footer_at < html.index("</body>")  # inserted before </body>, not after it
    assert html.rstrip().endswith("</body></html>")


def test_a_long_unsubscribe_url_stays_verbatim_on_one_header_line():
    url = "https://tp.northwind.example/u/" + "x" * 200 + "?sig=" + "y" * 60
    raw = message(unsubscribe_url=url).as_bytes()
    assert f"List-Unsubscribe: <{url}>".encode() in header_lines(raw)


def test_a_transactional_message_has_the_postal_address_but_no_unsubscribe_link_or_headers():
    back = parsed(message(transactional=True, unsubscribe_url=UNSUBSCRIBE, preferences_url=PREFERENCES))
    assert back["List-Unsubscribe"] is None and back["List-Unsubscribe-Post"] is None
    text, html = body(back, "plain"), body(back, "html")
    assert "Northwind Fibre Ltd, 12 Harbour Road" in text and "Northwind Fibre Ltd, 12 Harbour Road" in html
    assert UNSUBSCRIBE not in text and "/u/" not in html and PREFERENCES not in text


def test_html_without_a_body_tag_gets_the_footer_appended_with_its_values_escaped():
    back = parsed(message(html="<p>Hi</p>", postal_address="Smith & Sons <Bristol>"))
    html = body(back, "html")
    assert html.startswith("<p>Hi</p><div")
    assert "Smith &amp; Sons &lt;Bristol&gt;" in html and "<Bristol>" not in html


def test_a_non_transactional_message_without_an_http_unsubscribe_link_is_refused():
    with pytest.raises(ValueError, match="unsubscribe"):
        message(transactional=False, unsubscribe_url=None)
    with pytest.raises(ValueError, match="unsubscribe"):
        message(transactional=False, unsubscribe_url="javascript:alert(1)")


def test_extra_headers_cannot_replace_built_headers_or_use_an_invalid_name():
    assert parsed(message(extra_headers={"X-Campaign": "spring"}))["X-Campaign"] == "spring"
    with pytest.raises(ValueError, match="cannot be overridden"):
        message(extra_headers={"Bcc": "victim@evil.example"})
    with pytest.raises(ValueError, match="header name"):
        message(extra_headers={"X-A: b\r\nBcc": "victim@evil.example"})


def test_a_recipient_that_is_not_an_address_is_refused():
    with pytest.raises(ValueError, match="not an email address"):
        message(to=("Zoe", "not-an-address"))
