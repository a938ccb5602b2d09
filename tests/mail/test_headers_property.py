"""Whatever a customer's name or a rendered subject holds, the message adds no header and no
address, and the name reads back as the same text (10,000 generated cases)."""

from __future__ import annotations

from email import message_from_bytes
from email.policy import default

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.mail.message import build_message, display_text, header_text, mailbox

CUSTOMER = "zoe.harper@example.com"
TEMPLATE_HEADERS = ["From", "To", "Reply-To", "Subject", "Date", "Message-ID", "X-Touchpoints-Key",
                    "List-Unsubscribe", "List-Unsubscribe-Post", "MIME-Version", "Content-Type"]
HOSTILE = ["\r\n", "\n", "\r", "\x00", "\u2028", "\u2029", "\x85", "\t", " ", ",", ";", ":", "@",
           '"', "\\", "<", ">", "(", ")", "[", "]", ".", "=?", "?=", "=?utf-8?q?",
           "=?utf-8?q?x=0D=0ABcc:_evil@attacker.example?=",
           "=?utf-8?b?DQpCY2M6IGV2aWxAYXR0YWNrZXIuZXhhbXBsZQ==?=",
           "Bcc: evil@attacker.example", "Reply-To: evil@attacker.example", "evil@attacker.example",
           "Zoë", "Nguyễn Thị Lan", "李", "😀", "a" * 40]
pieces = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=6))
values = st.lists(pieces, max_size=10).map("".join)


def build(name: str, subject: str):
    return build_message(sender="Northwind Fibre <hello@northwind.example>",
                         to=mailbox(name, CUSTOMER), subject=subject, text="Hello\n",
                         html="<p>Hello</p>", key=f"j-1:welcome:{name}", reply_to="support@northwind.example",
                         transactional=False, postal_address="Northwind Fibre Ltd",
                         unsubscribe_url="https://tp.northwind.example/u/abc",
                         preferences_url=None)


@settings(max_examples=10000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=values, subject=values)
def test_no_name_or_subject_adds_a_header_or_an_address_and_the_name_reads_back(name, subject):
    raw = build(name, subject).as_bytes()
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))
    back = message_from_bytes(raw, policy=default)
    assert back.keys() == TEMPLATE_HEADERS
    to = back["To"].addresses
    assert len(to) == 1 and to[0].addr_spec == CUSTOMER
    assert to[0].display_name == display_text(name)
    assert len(back["From"].addresses) == 1 and len(back["Reply-To"].addresses) == 1
    assert back["Subject"] == header_text(subject)
