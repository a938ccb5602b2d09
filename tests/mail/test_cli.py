"""`touchpoints mail list / show / clear / catcher` through the real entry point."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from flows.mail.smtp import SmtpTransport
from tests.fixtures.terminal import wide_terminal
from tests.mail.support import message

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def tp(catcher_settings, capsys, monkeypatch, tmp_path):
    """Run `touchpoints ARGS...` in this process on the test's data folder."""
    from flows.cli import main

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    wide_terminal(monkeypatch)

    def run(*args: str) -> Run:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


def deliver(url: str, *messages) -> None:
    with SmtpTransport(url, retries=1, backoff_seconds=0, timeout=5).session() as session:
        for msg in messages:
            session.send(msg)


def test_mail_list_shows_id_time_recipient_and_subject_of_each_caught_message(tp, catcher):
    deliver(catcher.url, message(to=("Ada", "ada@example.com"), subject="Welcome to Northwind", key="a"),
            message(to=("Zoe", "zoe@example.com"), subject="How did we do?", key="b"))
    run = tp("mail", "list")
    assert run.code == 0, run.err
    ids = [s.id for s in catcher.mailbox.list()]
    lines = [line for line in run.out.splitlines() if any(i in line for i in ids)]
    assert len(lines) == 2
    assert ids[0] in lines[0] and "ada@example.com" in lines[0] and "Welcome to Northwind" in lines[0]
    assert ids[1] in lines[1] and "zoe@example.com" in lines[1] and "How did we do?" in lines[1]


def test_mail_list_json_filters_by_recipient(tp, catcher):
    deliver(catcher.url, message(to=("Ada", "ada@example.com"), key="a"),
            message(to=("Zoe", "zoe@example.com"), subject="Only Zoe", key="b"))
    run = tp("mail", "list", "--to", "zoe@", "--json")
    assert run.code == 0, run.err
    listed = json.loads(run.out)
    rows = listed["messages"]
    assert [(r["to"], r["subject"], r["mail_from"]) for r in rows] == [
        (["zoe@example.com"], "Only Zoe", "hello@northwind.example")]
    assert set(rows[0]) == {"id", "received_at", "mail_from", "to", "subject", "message_id"}
    assert (listed["total"], listed["shown"], listed["truncated"]) == (1, 1, False)


def test_mail_list_says_when_it_shows_only_the_newest_and_how_many_there_are(tp, catcher):
    deliver(catcher.url, *[message(subject=f"Message {n}", key=f"k{n}") for n in range(3)])

    listed = json.loads(tp("mail", "list", "--limit", "2", "--json").out)
    table = tp("mail", "list", "--limit", "2").out
    everything = json.loads(tp("mail", "list", "--limit", "0", "--json").out)

    assert [r["subject"] for r in listed["messages"]] == ["Message 1", "Message 2"]
    assert (listed["total"], listed["shown"], listed["truncated"]) == (3, 2, True)
    assert "showing the newest 2 of 3: --limit 0 shows them all" in table
    assert (everything["shown"], everything["truncated"]) == (3, False)


def test_mail_list_says_so_when_nothing_was_caught(tp, catcher_settings):
    run = tp("mail", "list")
    assert run.code == 0
    assert "no caught mail" in run.out and str(catcher_settings.mailbox_dir) in run.out


def test_mail_show_prints_headers_and_the_text_part_or_with_html_the_html_part(tp, catcher):
    deliver(catcher.url, message(subject="Your install date", text="Hello Zoe,\nTuesday it is.\n",
                                 html="<html><body><p>Tuesday it is.</p></body></html>"))
    [summary] = catcher.mailbox.list()
    run = tp("mail", "show", summary.id)
    assert run.code == 0, run.err
    assert "Subject: Your install date" in run.out
    assert "Envelope-To: zoe.harper@example.com" in run.out
    assert "List-Unsubscribe: <https://tp.northwind.example/u/" in run.out
    assert "Hello Zoe,\nTuesday it is.\n" in run.out and "<p>" not in run.out
    html = tp("mail", "show", summary.id, "--html")
    assert html.code == 0 and html.out.startswith("<html><body><p>Tuesday it is.</p>")
    assert "Subject:" not in html.out
    by_suffix = tp("mail", "show", summary.id.split("-")[1])
    assert by_suffix.out == run.out


def test_mail_show_escapes_terminal_control_characters_from_a_message(tp, catcher):
    deliver(catcher.url, message(text="Hello \x1b]0;pwned\x07 there\n"))
    [summary] = catcher.mailbox.list()
    run = tp("mail", "show", summary.id)
    assert "\x1b" not in run.out and "\\x1b]0;pwned\\x07 there" in run.out


def test_mail_show_of_an_unknown_id_is_a_clear_error_with_a_hint_and_no_traceback(tp, catcher):
    run = tp("mail", "show", "00000000000000000001-abcdef")
    assert run.code == 1
    assert "no caught message with id '00000000000000000001-abcdef'" in run.err
    assert "touchpoints mail list" in run.err and "Traceback" not in run.err + run.out


def test_mail_clear_deletes_the_caught_mail(tp, catcher):
    deliver(catcher.url, message(key="a"), message(key="b"))
    run = tp("mail", "clear")
    assert run.code == 0 and "deleted 2 caught messages" in run.out
    assert catcher.mailbox.list() == []


def _as_a_background_job() -> None:
    """What a non-interactive shell does to a job started with ``&``: SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("started", ["in a terminal", "as a background job"])
def test_mail_catcher_runs_in_the_foreground_stores_mail_and_stops_on_ctrl_c(catcher_settings,
                                                                             started):
    env = {**os.environ, "TOUCHPOINTS_DATA_DIR": str(catcher_settings.data_dir),
           "TOUCHPOINTS_CATCHER_PORT": str(catcher_settings.catcher_port), "PYTHONUNBUFFERED": "1"}
    disposition = (_as_a_background_job if started == "as a background job"
                   else lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    proc = subprocess.Popen([sys.executable, "-c", "from flows.cli import main; main()", "mail", "catcher"],
                            cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=disposition)
    try:
        said = [proc.stdout.readline() for _ in range(2)]
        assert f"listening on smtp://127.0.0.1:{catcher_settings.catcher_port}" in said[0]
        assert str(catcher_settings.mailbox_dir.resolve()) in said[1]
        deliver(f"smtp://127.0.0.1:{catcher_settings.catcher_port}", message(subject="Caught in the foreground"))
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "mail catcher stopped" in out and "Traceback" not in err
    from flows.mail.mailbox import Mailbox

    assert [s.subject for s in Mailbox(catcher_settings.mailbox_dir).list()] == ["Caught in the foreground"]
