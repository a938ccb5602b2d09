"""Messages for the mail tests."""

from __future__ import annotations

from flows.mail.message import build_message

SENDER = "Northwind Fibre <hello@northwind.example>"
POSTAL = "Northwind Fibre Ltd, 12 Harbour Road, Bristol BS1 4XX, United Kingdom"
UNSUBSCRIBE = "https://tp.northwind.example/u/abc123?category=surveys&sig=x1"
PREFERENCES = "https://tp.northwind.example/p/abc123"


def message(*, to=("Zoe Harper", "zoe.harper@example.com"), subject="How did we do?", key="j-1:csat:C-1001",
            transactional=False, text="Hello Zoe,\nTell us how we did.\n",
            html="<html><body><p>Hello Zoe,</p></body></html>", **overrides):
    fields = {"sender": SENDER, "to": to, "subject": subject, "text": text, "html": html, "key": key,
              "reply_to": "support@northwind.example", "transactional": transactional,
              "postal_address": POSTAL, "unsubscribe_url": None if transactional else UNSUBSCRIBE,
              "preferences_url": None if transactional else PREFERENCES}
    fields.update(overrides)
    return build_message(**fields)
