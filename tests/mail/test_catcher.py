"""The local mail catcher and its mailbox, on real sockets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flows.errors import NotFoundError, ServiceError
from flows.mail.catcher import Catcher, ensure_running, listening
from flows.mail.mailbox import MAIL_ID, Mailbox
from flows.mail.smtp import SmtpTransport
from tests.mail.support import message

REPO = Path(__file__).resolve().parents[2]


def deliver(url: str, *messages) -> None:
    with SmtpTransport(url, retries=1, backoff_seconds=0, timeout=5).session() as session:
        for msg in messages:
            session.send(msg)


def test_the_catcher_stores_each_message_with_its_envelope_and_lists_them_newest_last(catcher):
    first = message(to=("Ada", "ada@example.com"), subject="First", key="k-1")
    second = message(to=("Zoë", "zoe@example.com"), subject="Second", key="k-2")
    deliver(catcher.url, first, second)
    summaries = catcher.mailbox.list()
    assert [s.subject for s in summaries] == ["First", "Second"]
    assert [s.to for s in summaries] == [["ada@example.com"], ["zoe@example.com"]]
    assert all(s.mail_from == "hello@northwind.example" for s in summaries)
    assert [s.message_id for s in summaries] == [first["Message-ID"], second["Message-ID"]]
    assert all(MAIL_ID.match(s.id) for s in summaries) and summaries[0].id < summaries[1].id
    assert summaries[0].received_at <= summaries[1].received_at
    files = sorted(p.name for p in catcher.mailbox.dir.iterdir())
    assert files == sorted(f"{s.id}{suffix}" for s in summaries for suffix in (".eml", ".json"))
    sidecar = json.loads((catcher.mailbox.dir / f"{summaries[1].id}.json").read_text())
    assert (sidecar["mail_from"], sidecar["to"]) == ("hello@northwind.example", ["zoe@example.com"])


def test_a_caught_message_gives_its_headers_text_html_and_raw_bytes(catcher):
    deliver(catcher.url, message(subject="Your install", text="Hello Zoë,\nsee you Tuesday.\n",
                                 html="<html><body><p>Hello Zoë</p></body></html>"))
    [summary] = catcher.mailbox.list()
    caught = catcher.mailbox.get(summary.id)
    assert caught.header("Subject") == "Your install"
    assert caught.header("To") == "Zoe Harper <zoe.harper@example.com>"
    assert caught.text.startswith("Hello Zoë,\nsee you Tuesday.\n")
    assert caught.html.startswith("<html><body><p>Hello Zoë</p>")
    assert b"Subject: Your install" in caught.raw
    assert caught.summary == summary


def test_the_list_filters_by_recipient_and_keeps_the_newest_when_limited(catcher):
    deliver(catcher.url, *[message(to=("C", f"c{n}@example.com"), subject=f"n{n}", key=f"k{n}") for n in range(4)])
    box = catcher.mailbox
    assert [s.subject for s in box.list(limit=2)] == ["n2", "n3"]
    assert [s.subject for s in box.list(to="C1@EXAMPLE")] == ["n1"]
    assert box.list(to="nobody@example.com") == []


@pytest.mark.parametrize("bad", ["00000000000000000001-abcdef", "../secret", "", "x" * 300])
def test_an_unknown_or_malformed_id_is_not_found_with_a_hint(catcher, bad):
    with pytest.raises(NotFoundError) as caught:
        catcher.mailbox.get(bad)
    assert "touchpoints mail list" in caught.value.hint


def test_a_message_is_listed_only_once_its_files_are_complete(tmp_path):
    box = Mailbox(tmp_path / "box")
    mail_id = box.store(message().as_bytes(), mail_from="a@example.com", rcpt_tos=["b@example.com"])
    (box.dir / f"{mail_id}.json").unlink()  # as if the sidecar were not written yet
    assert box.list() == []
    assert not [p for p in box.dir.iterdir() if p.suffix == ".tmp"]


def test_clear_deletes_every_caught_message(catcher):
    deliver(catcher.url, message(key="a"), message(key="b"))
    assert catcher.mailbox.clear() == 2
    assert catcher.mailbox.list() == [] and list(catcher.mailbox.dir.iterdir()) == []


def test_ensure_running_starts_one_catcher_and_a_second_call_reuses_it(catcher_settings):
    port = catcher_settings.catcher_port
    assert not listening(port)
    started = ensure_running(catcher_settings)
    try:
        assert started is not None and listening(port)
        assert ensure_running(catcher_settings) is started
        deliver(f"smtp://127.0.0.1:{port}", message())
        assert len(Mailbox(catcher_settings.mailbox_dir).list()) == 1
    finally:
        started.stop()
    assert not listening(port)


def test_ensure_running_uses_a_catcher_that_another_process_already_runs(catcher, catcher_settings):
    assert ensure_running(catcher_settings) is None  # `catcher` stands in for the service's
    deliver(catcher.url, message())
    assert len(catcher.mailbox.list()) == 1


def test_a_second_catcher_on_a_taken_port_fails_at_once_with_a_clear_error(catcher, catcher_settings):
    with pytest.raises(ServiceError) as caught:
        Catcher(catcher_settings).start()
    assert str(catcher_settings.catcher_port) in caught.value.message
    assert "TOUCHPOINTS_CATCHER_PORT" in caught.value.hint


RACER = textwrap.dedent("""
    import sys
    from flows.mail.catcher import ensure_running
    from flows.mail.smtp import transport_from_settings
    from flows.settings import get_settings
    from tests.mail.support import message

    settings = get_settings()
    print("started" if ensure_running(settings) else "reused", flush=True)
    transport_from_settings(settings).send(message(key=sys.argv[1]))
    print("sent", flush=True)
    sys.stdin.read()  # the winner keeps its catcher up until the test is done
""")


def test_two_processes_starting_a_catcher_at_once_end_up_sharing_one(catcher_settings):
    env = {**os.environ, "TOUCHPOINTS_DATA_DIR": str(catcher_settings.data_dir),
           "TOUCHPOINTS_CATCHER_PORT": str(catcher_settings.catcher_port),
           "TOUCHPOINTS_SMTP_BACKOFF_SECONDS": "0.05"}
    racers = [subprocess.Popen([sys.executable, "-c", RACER, f"racer-{n}"], cwd=REPO, env=env, text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
              for n in range(2)]
    try:
        said = [[racer.stdout.readline().strip(), racer.stdout.readline().strip()] for racer in racers]
    finally:
        for racer in racers:
            racer.stdin.close()
        for racer in racers:
            try:
                racer.wait(timeout=20)
            except subprocess.TimeoutExpired:
                racer.kill()
                racer.wait()
        errors = [racer.stderr.read() for racer in racers]
    assert sorted(s[0] for s in said) == ["reused", "started"], errors
    assert [s[1] for s in said] == ["sent", "sent"], errors
    keys = sorted(Mailbox(catcher_settings.mailbox_dir).get(s.id).header("X-Touchpoints-Key")
                  for s in Mailbox(catcher_settings.mailbox_dir).list())
    assert keys == ["racer-0", "racer-1"]
