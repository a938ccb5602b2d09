"""Delivery over SMTP to real aiosmtpd servers: plain, STARTTLS + AUTH, implicit TLS, retries,
permanent refusals and dropped connections."""

from __future__ import annotations

import logging
import time

import pytest

from flows.errors import DeliveryError, TouchpointsError
from flows.mail.smtp import SmtpConfig, SmtpSetupError, SmtpTransport, transport_from_settings
from tests.fixtures.mail import PASSWORD, free_port
from tests.mail.support import message

FAST = {"retries": 3, "backoff_seconds": 0.01, "timeout": 5}


def transport(url: str, **options) -> SmtpTransport:
    return SmtpTransport(url, **{**FAST, **options})


def test_a_message_is_delivered_over_plain_smtp_with_its_envelope(smtp_server):
    msg = message(key="j-1:welcome:C-1001")
    result = transport(smtp_server.url).send(msg)
    assert (result.status, result.code) == ("sent", 250)
    assert result.response == "2.0.0 Message accepted"  # the server's own words
    [received] = smtp_server.messages
    assert received.envelope_from == "hello@northwind.example"
    assert received.envelope_to == ["zoe.harper@example.com"]
    assert received.message["Message-ID"] == msg["Message-ID"]
    assert received.message["Subject"] == "How did we do?"


def test_one_session_delivers_many_messages_over_one_connection(smtp_server):
    with transport(smtp_server.url).session() as session:
        for n in range(3):
            session.send(message(key=f"j-1:welcome:C-100{n}"))
    assert len(smtp_server.messages) == 3
    assert smtp_server.connections == 1


def test_a_session_reconnects_at_once_when_the_server_closed_the_idle_connection(smtp_server):
    with transport(smtp_server.url, backoff_seconds=5).session() as session:
        session.send(message(key="first"))
        smtp_server.disconnect_all()
        started = time.monotonic()
        result = session.send(message(key="second"))
        assert time.monotonic() - started < 2  # no backoff: a closed idle connection is not a failure
    assert result.status == "sent"
    assert [m.message["X-Touchpoints-Key"] for m in smtp_server.messages] == ["first", "second"]
    assert [m.connection for m in smtp_server.messages] == [1, 2]


def test_starttls_with_auth_delivers_and_logs_in_as_the_url_user(tls_smtp_server, caplog):
    caplog.set_level(logging.DEBUG, logger="flows.mail")
    assert PASSWORD not in tls_smtp_server.url  # percent-encoded there, decoded by the transport
    made = transport(tls_smtp_server.url)
    result = made.send(message())
    assert "connected to smtp+starttls://" in caplog.text
    assert PASSWORD not in caplog.text and PASSWORD not in repr(made)
    assert result.status == "sent"
    assert len(tls_smtp_server.messages) == 1  # the server takes MAIL only after STARTTLS and AUTH
    assert tls_smtp_server.logins[-1] == ("PLAIN", tls_smtp_server.user, True)


def test_a_wrong_password_is_a_clear_setup_error_that_never_shows_the_password(tls_smtp_server):
    wrong = "hunter2-not-it"
    with pytest.raises(SmtpSetupError) as caught:
        transport(tls_smtp_server.url_with(password=wrong)).send(message())
    error = caught.value
    assert isinstance(error, DeliveryError) and not error.permanent  # never a bounce
    assert error.code == 535
    assert "refused the login" in error.message and "TOUCHPOINTS_SMTP_URL" in error.hint
    assert wrong not in str(error) and wrong not in repr(error)
    assert all(not ok for _, _, ok in tls_smtp_server.logins)
    assert len(tls_smtp_server.logins) <= 2  # one connection's mechanisms, no retries with backoff
    assert tls_smtp_server.messages == []


def test_credentials_without_starttls_on_a_server_that_wants_it_say_to_add_starttls(tls_smtp_server):
    url = tls_smtp_server.url_with(starttls="0")
    with pytest.raises(SmtpSetupError) as caught:
        transport(url).send(message())
    assert "starttls=1" in caught.value.hint
    assert tls_smtp_server.messages == []


def test_starttls_when_asked_is_required_and_a_server_without_it_gets_nothing(smtp_server):
    with pytest.raises(SmtpSetupError) as caught:
        transport(f"{smtp_server.url}?starttls=1").send(message())
    assert "does not offer STARTTLS" in caught.value.message
    assert smtp_server.attempts["mail"] == 0 and smtp_server.messages == []


def test_a_self_signed_certificate_is_refused_unless_verify_is_off(tls_smtp_server):
    with pytest.raises(SmtpSetupError) as caught:
        transport(tls_smtp_server.url_with(verify="1")).send(message())
    assert "does not verify" in caught.value.message
    assert tls_smtp_server.messages == []


def test_implicit_tls_with_auth_delivers(smtps_server):
    assert smtps_server.url.startswith("smtps://")
    result = transport(smtps_server.url).send(message())
    assert result.status == "sent"
    assert len(smtps_server.messages) == 1
    assert smtps_server.logins[-1][2] is True


def test_a_451_is_retried_after_a_backoff_and_the_message_delivered_once(smtp_server):
    smtp_server.fail_next(451, "4.7.1 greylisted, try again", times=1)
    started = time.monotonic()
    result = transport(smtp_server.url, backoff_seconds=0.05).send(message())
    assert time.monotonic() - started >= 0.05
    assert result.status == "sent"
    assert len(smtp_server.messages) == 1
    assert smtp_server.attempts["rcpt"] == 2


def test_a_temporary_failure_that_lasts_backs_off_exponentially_then_raises_a_temporary_error(smtp_server):
    smtp_server.fail_next(452, "4.2.2 mailbox full for now", times=3)
    started = time.monotonic()
    with pytest.raises(DeliveryError) as caught:
        transport(smtp_server.url, retries=3, backoff_seconds=0.04).send(message())
    assert time.monotonic() - started >= 0.04 + 0.08
    assert (caught.value.permanent, caught.value.code) == (False, 452)
    assert smtp_server.attempts["rcpt"] == 3 and smtp_server.messages == []


def test_a_550_is_a_permanent_error_raised_without_a_retry(smtp_server):
    smtp_server.fail_next(550, "5.1.1 no such mailbox", times=1)
    with pytest.raises(DeliveryError) as caught:
        transport(smtp_server.url).send(message())
    assert (caught.value.permanent, caught.value.code) == (True, 550)
    assert "5.1.1 no such mailbox" in caught.value.message
    assert smtp_server.attempts["rcpt"] == 1 and smtp_server.messages == []


@pytest.mark.parametrize(("stage", "code", "permanent"), [("mail", 451, False), ("mail", 553, True),
                                                         ("data", 554, True), ("data", 421, False)])
def test_a_refusal_of_mail_or_data_is_permanent_for_5xx_and_temporary_for_4xx(smtp_server, stage, code, permanent):
    smtp_server.fail_next(code, "refused by test", times=3, at=stage)
    with pytest.raises(DeliveryError) as caught:
        transport(smtp_server.url).send(message())
    assert (caught.value.permanent, caught.value.code) == (permanent, code)
    assert smtp_server.attempts[stage] == (1 if permanent else 3)


def test_the_session_stays_usable_after_a_refused_recipient(smtp_server):
    with transport(smtp_server.url).session() as session:
        smtp_server.fail_next(550, "5.1.1 no such mailbox")
        with pytest.raises(DeliveryError):
            session.send(message(key="bounced"))
        session.send(message(key="next"))
    assert [m.message["X-Touchpoints-Key"] for m in smtp_server.messages] == ["next"]
    assert smtp_server.connections == 1


def test_a_refused_connection_is_a_temporary_error():
    port = free_port()
    with pytest.raises(DeliveryError) as caught:
        transport(f"smtp://127.0.0.1:{port}", retries=2).send(message())
    assert not caught.value.permanent and caught.value.code is None
    assert f"127.0.0.1:{port}" in caught.value.message


def test_a_non_ascii_recipient_address_is_sent_with_smtputf8(smtp_server):
    transport(smtp_server.url).send(message(to=("Zoë", "zoë@example.com")))
    [received] = smtp_server.messages
    assert received.envelope_to == ["zoë@example.com"]
    assert received.message["To"].addresses[0].addr_spec == "zoë@example.com"


def test_a_hostile_display_name_still_gives_exactly_one_envelope_recipient(smtp_server):
    name = 'Zoe, "x" <victim@evil.example>\r\nBcc: other@evil.example'
    transport(smtp_server.url).send(message(to=(name, "zoe@example.com")))
    [received] = smtp_server.messages
    assert received.envelope_to == ["zoe@example.com"]
    assert [a.addr_spec for a in received.message["To"].addresses] == ["zoe@example.com"]
    assert received.message["Bcc"] is None


def test_the_url_gives_host_port_tls_mode_and_percent_decoded_credentials():
    cfg = SmtpConfig.from_url("smtp://mailer%40nw.example:p%40ss%3Aw%2Frd@mail.example:587"
                              "?starttls=1&timeout=7&verify=0")
    assert (cfg.host, cfg.port, cfg.starttls, cfg.implicit_tls, cfg.verify, cfg.timeout) == \
        ("mail.example", 587, True, False, False, 7.0)
    assert (cfg.username, cfg.password) == ("mailer@nw.example", "p@ss:w/rd")
    assert "p@ss" not in repr(cfg) and "p@ss" not in cfg.describe()
    secure = SmtpConfig.from_url("smtps://u:p@mail.example")
    assert (secure.port, secure.implicit_tls, secure.verify) == (465, True, True)


@pytest.mark.parametrize("url", ["http://mail.example", "smtp://mail.example?startls=1",
                                 "smtp://u:secret@mail.example:25", "smtps://mail.example?starttls=1",
                                 "smtp://mail.example:notaport"])
def test_a_bad_mail_url_is_a_settings_error_not_a_delivery_error(url):
    with pytest.raises(TouchpointsError) as caught:
        SmtpConfig.from_url(url)
    assert not isinstance(caught.value, DeliveryError)
    assert caught.value.hint
    assert "secret" not in str(caught.value)


def test_retries_and_backoff_default_to_the_settings(monkeypatch):
    from flows.settings import reset_settings

    monkeypatch.setenv("TOUCHPOINTS_SMTP_RETRIES", "5")
    monkeypatch.setenv("TOUCHPOINTS_SMTP_BACKOFF_SECONDS", "0.25")
    reset_settings()
    try:
        made = SmtpTransport("smtp://127.0.0.1:2525")
        assert (made.retries, made.backoff_seconds) == (5, 0.25)
        assert SmtpTransport("smtp://127.0.0.1:2525", retries=1, backoff_seconds=0).retries == 1
    finally:
        reset_settings()


def test_on_embedded_defaults_the_transport_starts_the_catcher_and_delivers_to_it(catcher_settings):
    from flows.mail.catcher import _running
    from flows.mail.mailbox import Mailbox

    made = transport_from_settings(catcher_settings)
    try:
        assert made.config.port == catcher_settings.catcher_port
        made.send(message())
        [summary] = Mailbox(catcher_settings.mailbox_dir).list()
        assert summary.to == ["zoe.harper@example.com"]
    finally:
        _running.pop(catcher_settings.catcher_port).stop()


def test_with_an_smtp_url_the_transport_uses_that_server_and_no_catcher(smtp_server, catcher_settings):
    from flows.mail.catcher import listening

    settings = catcher_settings.model_copy(update={"smtp_url": smtp_server.url})
    transport_from_settings(settings).send(message())
    assert len(smtp_server.messages) == 1
    assert not listening(catcher_settings.catcher_port)
