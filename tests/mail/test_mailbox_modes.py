"""The caught mail at rest: the mailbox folder is 0700 and every message and sidecar 0600,
whatever the umask (messages hold customers' names, addresses and links)."""

from __future__ import annotations

import os
import stat

import pytest

from flows.mail.mailbox import Mailbox

RAW = b"From: a@example.com\r\nTo: ada@example.com\r\nSubject: Hi\r\nMessage-ID: <1@x>\r\n\r\nbody\r\n"


@pytest.fixture
def open_umask():
    old = os.umask(0)
    yield
    os.umask(old)


def test_caught_messages_are_0600_in_a_0700_folder(tmp_path, open_umask):
    box = Mailbox(tmp_path / "mailbox")
    mail_id = box.store(RAW, mail_from="a@example.com", rcpt_tos=["ada@example.com"])
    assert stat.S_IMODE(box.dir.stat().st_mode) == 0o700
    files = sorted(box.dir.iterdir())
    assert [p.name for p in files] == [f"{mail_id}.eml", f"{mail_id}.json"]
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o600}
    assert box.get(mail_id).raw == RAW and [s.id for s in box.list()] == [mail_id]


def test_an_existing_open_mailbox_folder_is_narrowed_when_mail_arrives(tmp_path):
    folder = tmp_path / "mailbox"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    Mailbox(folder).store(RAW, mail_from="a@example.com", rcpt_tos=["ada@example.com"])
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
