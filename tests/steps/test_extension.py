"""A step kind from another installed package (docs/examples/webhook_step) is found through the
`touchpoints.steps` entry point and then shows up in check, schema, plan and the docs, and runs
in a real journey, with no edit to Touchpoints itself."""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from tests.engine.conftest import make_engine

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "examples" / "webhook_step"


@pytest.fixture
def webhook_installed(tmp_path, monkeypatch):
    """The example package 'installed': its module on sys.path and a dist-info declaring the
    entry point, exactly what pip would leave behind."""
    import flows.steps as registry

    site = tmp_path / "site"
    dist = site / "touchpoints_webhook-0.1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: touchpoints-webhook\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text("[touchpoints.steps]\nwebhook = touchpoints_webhook\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(EXAMPLE))
    saved = dict(registry._REGISTRY)
    monkeypatch.setattr(registry, "_loaded", False)
    yield registry
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)
    sys.modules.pop("touchpoints_webhook", None)


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


class Recorder(BaseHTTPRequestHandler):
    bodies: list = []
    fail_first = 1

    def do_POST(self):  # noqa: N802 (http.server's name)
        length = int(self.headers["Content-Length"])
        Recorder.bodies.append(json.loads(self.rfile.read(length)))
        status = 500 if Recorder.fail_first > 0 else 200
        Recorder.fail_first -= 1
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    Recorder.bodies, Recorder.fail_first = [], 1
    server = HTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()


def test_the_plugin_kind_is_registered_through_the_entry_point(webhook_installed):
    assert "webhook" in webhook_installed.kinds()
    assert webhook_installed.get("webhook").origin == "touchpoints_webhook"


def test_the_plugin_kind_appears_in_the_schema_the_reference_and_the_plan(webhook_installed, tmp_path):
    from flows.config import build_schema, load_config
    from flows.docs_gen import render_reference
    from flows.engine.plan import plan_text

    (tmp_path / "touchpoints.yaml").write_text(PROJECT.replace("URL", "http://127.0.0.1:9/hook"))

    assert "webhook" in json.dumps(build_schema())
    assert "### webhook" in render_reference()
    config = load_config(tmp_path / "touchpoints.yaml")
    assert "tell_crm: POST to http://127.0.0.1:9/hook" in plan_text(config.touchpoint("crm-sync"))


def test_a_typo_in_a_plugin_steps_field_is_reported_by_check(webhook_installed, tmp_path):
    from flows.config import check

    (tmp_path / "touchpoints.yaml").write_text(PROJECT.replace("URL", "http://x/h").replace("retries:", "retires:"))

    messages = [d.format() for d in check(tmp_path / "touchpoints.yaml")]
    assert any("retires" in m and "retries" in m for m in messages), messages


@pytest.mark.e2e
def test_the_plugin_step_runs_in_a_real_journey_and_retries_a_5xx(webhook_installed, http_server, tmp_path,
                                                                  sqlite_store, smtp_server, prefect_server,
                                                                  monkeypatch):
    from flows.engine.core import set_engine
    from flows.engine.dispatch import Dispatcher
    from flows.engine.launch import InProcessLauncher
    from flows.store import audit
    from flows.store.customers import upsert_customer

    (tmp_path / "touchpoints.yaml").write_text(PROJECT.replace("URL", http_server))
    (tmp_path / "templates").mkdir()
    monkeypatch.setenv("TOUCHPOINTS_DATA_DIR", str(tmp_path / "data"))
    engine = make_engine(tmp_path / "touchpoints.yaml", smtp_server.url, monkeypatch, sqlite_store)
    try:
        with sqlite_store.session() as session:
            upsert_customer(session, {"id": "W-1", "name": "Wendy Web", "email": "w@example.com",
                                      "timezone": "Europe/London"}, actor="test")
        Dispatcher(engine, InProcessLauncher()).emit(type="crm.sync", customer_id="W-1",
                                                     data={"reason": "moved house"}, source="test")
    finally:
        set_engine(None)

    assert Recorder.bodies == [{"customer": "W-1", "why": "moved house"}] * 2  # a 500, then a 200
    with sqlite_store.session() as session:
        rows = audit.query(session, action="webhook.posted")
    assert rows and rows[-1].result == "200" and "2 attempts" in rows[-1].reason
