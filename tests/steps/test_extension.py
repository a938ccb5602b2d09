"""A step kind from another package (docs/examples/webhook_step) is found through the
`touchpoints.steps` entry point, then shows up in the registry, the JSON Schema, `check`, the
reference and `touchpoints plan`, and runs, with no edit to Touchpoints itself.

Nothing is pip-installed: the fixture writes the ``*.dist-info`` directory pip would leave
behind (METADATA and entry_points.txt) on a temporary path, so ``importlib.metadata`` finds
the entry point exactly as it would for an installed package.
"""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from tests.engine.conftest import make_engine

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "examples" / "webhook_step"
MODULE = "touchpoints_webhook"


def _entry_point_line() -> str:
    """The entry point as the example's pyproject.toml declares it."""
    import tomllib

    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    (name, target), = project["entry-points"]["touchpoints.steps"].items()
    return f"{name} = {target}"


@pytest.fixture
def webhook_installed(tmp_path, monkeypatch):
    """The example package 'installed' on a temporary path; the registry forgets it again."""
    import flows.steps as registry

    registry.load()  # the built-in kinds, before the registry is saved
    saved = dict(registry._REGISTRY)
    site = tmp_path / "site"
    dist = site / "touchpoints_webhook-0.1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: touchpoints-webhook\n"
                                   "Version: 0.1.0\n", encoding="utf-8")
    (dist / "entry_points.txt").write_text(f"[touchpoints.steps]\n{_entry_point_line()}\n",
                                           encoding="utf-8")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    monkeypatch.setattr(registry, "_loaded", False)  # the next load() reads the entry points
    yield registry
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)
    sys.modules.pop(MODULE, None)


PROJECT = """
version: 1
defaults:
  sender: "Test ISP <hello@isp.example>"
  postal_address: "1 Test Street"
  timezone: Europe/London
categories:
  service: {transactional: true, description: "Service"}
teams: {}
events:
  crm.sync:
    description: A customer changed in the CRM.
    example: {reason: "plan change"}
touchpoints:
  crm-sync:
    description: Tell the CRM about the customer.
    trigger: {event: crm.sync}
    audience: customer
    entry: {rule: every_time}
    steps:
      - id: tell_crm
        kind: webhook
        url: "URL"
        retries: 3
        backoff_seconds: 0.01
        payload:
          customer: "{{ customer.id }}"
          why: "{{ trigger.data.reason }}"
"""


def write_project(folder: Path, url: str) -> Path:
    (folder / "templates").mkdir(exist_ok=True)
    path = folder / "touchpoints.yaml"
    path.write_text(PROJECT.replace("URL", url), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- a real server
@dataclass
class Hook:
    """What the local HTTP server received, and how many 500s it answers first."""

    url: str
    fail_first: int = 1
    bodies: list = field(default_factory=list)
    keys: list = field(default_factory=list)
    statuses: list = field(default_factory=list)


@pytest.fixture
def hook():
    state = Hook(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers["Content-Length"])
            state.bodies.append(json.loads(self.rfile.read(length)))
            state.keys.append(self.headers.get("Idempotency-Key"))
            status = 500 if state.fail_first > 0 else 200
            state.fail_first -= 1
            state.statuses.append(status)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_port}/hook"
    yield state
    server.shutdown()
    server.server_close()


@dataclass
class FakeContext:
    """Only what webhook's run uses: journey_id, render and audit."""

    journey_id: str = "j-test"
    trigger: dict = field(default_factory=lambda: {"type": "crm.sync", "data": {"reason": "moved"}})
    audits: list = field(default_factory=list)

    def render(self, text, member, *, header=False, **extra):
        from flows.templating import render_text

        context = {"customer": member.customer.as_context(), "trigger": self.trigger}
        return render_text(text, context, header=header)

    def audit(self, action, *, customer_id, result, reason="", detail=None):
        self.audits.append({"action": action, "customer_id": customer_id, "result": result,
                            "reason": reason, "detail": detail or {}})


def _member(member_id: int, customer_id: str):
    from flows.steps.base import CustomerView, Member

    return Member(id=member_id, customer=CustomerView(
        id=customer_id, name="Wendy Web", email="w@example.com", timezone="Europe/London"),
        results={})


def _config(url: str, **overrides):
    import touchpoints_webhook

    fields = {"id": "tell_crm", "url": url, "backoff_seconds": 0.01,
              "payload": {"customer": "{{ customer.id }}", "why": "{{ trigger.data.reason }}"}}
    return touchpoints_webhook.WebhookStep.model_validate({**fields, **overrides})


# --------------------------------------------------------------------------- the tests
def test_the_plugin_kind_is_registered_through_the_entry_point(webhook_installed):
    assert "webhook" not in webhook_installed._REGISTRY

    kinds = webhook_installed.kinds()

    assert "webhook" in kinds
    assert kinds["webhook"].origin == MODULE
    assert kinds["webhook"].config.__module__ == MODULE


def test_the_plugin_kind_is_in_the_json_schema_with_its_fields(webhook_installed):
    from flows.config import build_schema

    schema = build_schema()

    assert "webhook" in schema["$defs"]["Step"]["discriminator"]["mapping"]
    ref = schema["$defs"]["Step"]["discriminator"]["mapping"]["webhook"].rsplit("/", 1)[-1]
    assert {"url", "payload", "timeout", "retries"} <= set(schema["$defs"][ref]["properties"])


def test_the_reference_documents_the_plugin_kind_with_a_valid_example(webhook_installed):
    from flows.config.parsing import parse_step
    from flows.docs_gen import example_step, render_reference

    reference = render_reference()
    example = example_step("webhook")
    problems: list = []
    parse_step(example, loc=(), problems=problems)

    assert "### webhook" in reference
    assert "POST a JSON payload about the customer to a URL, with retries." in reference
    assert "| `payload` | mapping of string |" in reference
    assert "template text" in reference.split("### webhook", 1)[1].split("###", 1)[0]
    assert example["url"] == "https://crm.example.com/hooks/touchpoints"
    assert problems == []


def test_touchpoints_plan_describes_the_plugin_step(webhook_installed, tmp_path, capsys):
    from flows.cli import main

    project = write_project(tmp_path, "http://127.0.0.1:9/hook")
    try:
        main(["plan", "crm-sync", "-f", str(project)])
    except SystemExit as exit_info:
        assert not exit_info.code, capsys.readouterr().err

    assert "• tell_crm: POST to http://127.0.0.1:9/hook" in capsys.readouterr().out


def test_the_yaml_shown_in_the_guide_is_a_valid_webhook_step(webhook_installed):
    import re
    import textwrap

    from ruamel.yaml import YAML

    from flows.config.parsing import parse_step

    guide = (REPO / "docs" / "extending.md").read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"^```yaml\n(.*?)^```$", guide, re.MULTILINE | re.DOTALL)
                if "kind: webhook" in b]
    (raw,) = YAML(typ="safe").load(textwrap.dedent(block))
    problems: list = []

    step = parse_step(raw, loc=(), problems=problems)

    assert problems == []
    assert step.kind == "webhook" and step.payload["customer_id"] == "{{ customer.id }}"


def test_a_typo_in_a_plugin_steps_field_is_reported_by_check(webhook_installed, tmp_path):
    from flows.config import check

    project = write_project(tmp_path, "http://x.example/h")
    project.write_text(project.read_text().replace("retries:", "retires:"))

    messages = [d.format() for d in check(project)]
    assert any("retires" in m and "retries" in m for m in messages), messages


def test_a_broken_template_in_the_payload_is_reported_by_check(webhook_installed, tmp_path):
    from flows.config import check

    project = write_project(tmp_path, "http://x.example/h")
    project.write_text(project.read_text().replace("{{ customer.id }}", "{{ customer.id"))

    messages = [d.format() for d in check(project)]
    assert any("payload" in m for m in messages), messages


def test_run_retries_a_500_and_posts_the_rendered_payload_once_more(webhook_installed, hook):
    import touchpoints_webhook

    webhook_installed.kinds()
    ctx = FakeContext()

    outcomes = touchpoints_webhook.run(config=_config(hook.url), ctx=ctx, members=[_member(7, "W-1")])

    assert hook.statuses == [500, 200]
    assert hook.bodies == [{"customer": "W-1", "why": "moved"}] * 2
    assert hook.keys == ["j-test:tell_crm:W-1"] * 2
    assert outcomes[7].result == {"status": 200, "attempts": 2}
    assert [(a["action"], a["result"], a["detail"]["attempts"]) for a in ctx.audits] == \
        [("webhook.posted", "sent", 2)]


def test_run_gives_up_after_its_retries_and_records_the_failure(webhook_installed, hook):
    import touchpoints_webhook

    webhook_installed.kinds()
    hook.fail_first = 10
    ctx = FakeContext()

    outcomes = touchpoints_webhook.run(config=_config(hook.url, retries=2), ctx=ctx,
                                       members=[_member(1, "W-1")])

    assert hook.statuses == [500, 500, 500]
    assert outcomes[1].result["status"] is None and "HTTP 500 after 3 attempts" in outcomes[1].result["error"]
    assert ctx.audits[0]["action"] == "webhook.failed" and ctx.audits[0]["result"] == "failed"


def test_run_retries_a_refused_connection(webhook_installed, hook):
    import touchpoints_webhook

    webhook_installed.kinds()
    closed = "http://127.0.0.1:9/hook"  # the discard port: nothing listens on it here
    ctx = FakeContext()

    outcomes = touchpoints_webhook.run(config=_config(closed, retries=1), ctx=ctx,
                                       members=[_member(1, "W-1")])

    assert "ConnectError" in outcomes[1].result["error"]
    assert "after 2 attempts" in outcomes[1].result["error"]


@pytest.mark.e2e
def test_the_plugin_step_runs_in_a_real_journey_and_retries_a_5xx(webhook_installed, hook, tmp_path,
                                                                  sqlite_store, smtp_server, prefect_server,
                                                                  monkeypatch):
    from flows.engine.compiler import forget_compiled
    from flows.engine.core import set_engine
    from flows.engine.dispatch import Dispatcher
    from flows.engine.launch import InProcessLauncher
    from flows.settings import reset_settings
    from flows.store import audit
    from flows.store.customers import upsert_customer

    project = write_project(tmp_path, hook.url)
    monkeypatch.setenv("TOUCHPOINTS_DATA_DIR", str(tmp_path / "data"))
    engine = make_engine(project, smtp_server.url, monkeypatch, sqlite_store)
    try:
        with sqlite_store.session() as session:
            upsert_customer(session, {"id": "W-1", "name": "Wendy Web", "email": "w@example.com",
                                      "timezone": "Europe/London"}, actor="test")
        Dispatcher(engine, InProcessLauncher()).emit(type="crm.sync", customer_id="W-1",
                                                     data={"reason": "moved house"}, source="test")
    finally:
        set_engine(None)
        forget_compiled()
        reset_settings()

    assert hook.statuses == [500, 200]
    assert hook.bodies == [{"customer": "W-1", "why": "moved house"}] * 2
    assert len(set(hook.keys)) == 1 and hook.keys[0].endswith(":tell_crm:W-1")
    with sqlite_store.session() as session:
        rows = audit.query(session, action="webhook.posted")
    assert [(r.result, r.step, r.customer_id) for r in rows] == [("sent", "tell_crm", "W-1")]
    assert "HTTP 200 after 2 attempt(s)" in rows[0].reason
