"""The mail catcher pages /mail and /mail/{id} (only with the embedded catcher)."""

from __future__ import annotations

import re
import time

from flows.mail.mailbox import Mailbox
from flows.mail.message import build_message

HOSTILE_HTML = ('<p style="color:#0b6e4f">Hello &amp; welcome "friend"</p><script>alert(1)</script>'
                '<a href="{url}">Answer the survey</a>')


def catch(engine, *, subject: str, to: str = "ada@example.com", text: str = "Hello",
          html: str = "<p>Hello</p>") -> str:
    message = build_message(sender="Northwind Fibre <hello@northwind.example>", to=to,
                            subject=subject, text=text, html=html, key=f"test:{subject}",
                            transactional=True, postal_address="12 Harbour Road",
                            unsubscribe_url=None, preferences_url=None)
    return Mailbox(engine.settings.mailbox_dir).store(bytes(message), mail_from="hello@northwind.example",
                                                       rcpt_tos=[to])


def test_the_mail_list_shows_caught_messages_newest_first(client, engine):
    catch(engine, subject="First <one>")
    time.sleep(0.01)
    newest = catch(engine, subject="Second", to="bob@example.com")
    page = client.get("/mail")
    assert page.status_code == 200
    assert page.text.index("Second") < page.text.index("First &lt;one&gt;")
    assert f'href="/mail/{newest}"' in page.text and "bob@example.com" in page.text
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", page.text)


def test_a_message_shows_headers_text_and_sandboxed_html_with_clickable_links(client, engine):
    survey = engine.signer.url("survey", survey="abc")
    task_ack = engine.signer.url("task-ack", task="T-1")
    mail_id = catch(engine, subject="How did we do?",
                    text=f"Answer here: {survey}.\nOr: {task_ack}\n<not a tag>",
                    html=HOSTILE_HTML.format(url=survey))
    page = client.get(f"/mail/{mail_id}")
    assert page.status_code == 200
    text = page.text
    assert "How did we do?" in text and "ada@example.com" in text and "Message-ID" in text
    survey_path = survey.removeprefix(engine.settings.base_url.rstrip("/"))
    assert f'<a href="{survey_path}">Survey page</a>' in text
    assert "Task page (acknowledge)" in text
    assert f'<a href="{survey}" rel="noopener noreferrer">{survey}</a>.' in text
    assert "&lt;not a tag&gt;" in text
    iframe = re.search(r'<iframe class="html-part"[^>]*>', text).group(0)
    assert 'sandbox="allow-popups allow-popups-to-escape-sandbox"' in iframe
    assert "<script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in iframe
    assert "&amp;amp; welcome &#34;friend&#34;" in iframe
    assert "script-src" not in page.headers["content-security-policy"]
    assert "default-src 'none'" in page.headers["content-security-policy"]
    followed = client.get(survey_path)
    assert followed.status_code == 410  # the survey does not exist, but the link works here


def test_an_unknown_or_malformed_message_id_is_a_404(client):
    assert client.get("/mail/00000000000000000001-abcdef").status_code == 404
    assert client.get("/mail/..%2F..%2Fsecret").status_code == 404


def test_the_mail_pages_exist_only_with_the_embedded_catcher(engine, dispatcher, smtp_server):
    from fastapi.testclient import TestClient

    from flows.engine.core import Engine
    from flows.web.app import create_app

    real_smtp = Engine(engine.settings.model_copy(update={"smtp_url": smtp_server.url}),
                       store=engine.store)
    with TestClient(create_app(real_smtp, dispatcher)) as client:
        assert client.get("/mail").status_code == 404
        assert 'href="/mail"' not in client.get("/").text
