"""What `touchpoints check` keeps between touch points and between checks (parsed templates,
the sandbox walk of each template) never hides a problem: every copy reports its own, and an
edited template is read again."""

from __future__ import annotations

import os

from flows.config import check
from tests.config.support import write_config

RISKY = """\
{name}:
  description: Uses a private name in its template and in its subject.
  trigger: {{event: contract.signed}}
  audience: customer
  steps:
    - {{id: hello, kind: email, subject: "Hi {{{{ customer.__class__ }}}}", template: risky, category: service}}
"""


def _messages(path) -> list[str]:
    return [d.format(hint=False).split(": ", 1)[1] for d in check(path)]


def _write(tmp_path, names):
    path = write_config(tmp_path, "".join(RISKY.format(name=name) for name in names))
    risky = tmp_path / "templates" / "risky"
    risky.with_suffix(".txt").write_text("Hello {{ customer.first_name }}\n")
    risky.with_suffix(".html").write_text("{% include '_part.html' %}\n")
    (tmp_path / "templates" / "_part.html").write_text("<p>{{ customer.name }}</p>\n")
    return path


def test_each_copy_of_a_touch_point_reports_its_own_problems(tmp_path):
    path = _write(tmp_path, ["one", "two", "three"])
    lines = _messages(path)
    for name in ("one", "two", "three"):
        assert any(line.startswith(f"touchpoints.{name}.steps[0].subject") for line in lines)
    assert len(lines) == 2 * 3  # the sandbox check and the render, per copy


def test_an_edited_template_is_checked_again_in_the_same_process(tmp_path):
    path = _write(tmp_path, ["one"])
    assert not any("templates/" in line for line in _messages(path))
    part = tmp_path / "templates" / "_part.html"
    part.write_text("<p>{{ customer.__init__ }}</p>\n")
    os.utime(part, ns=(1, 1))  # a different time even on a coarse clock
    lines = _messages(path)
    assert any("templates/_part.html" in line and "'__init__'" in line for line in lines)
    part.unlink()
    assert not any("templates/_part.html" in line for line in _messages(path))


def test_a_template_created_after_a_check_is_seen_by_the_next(tmp_path):
    path = _write(tmp_path, ["one"])
    (tmp_path / "templates" / "_part.html").unlink()
    first = _messages(path)
    (tmp_path / "templates" / "_part.html").write_text("{{ ''.__class__ }}\n")
    assert _messages(path) != first
