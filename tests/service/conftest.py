"""A real `touchpoints serve` (Prefect server, runner, web app, mail catcher) in a subprocess,
on free ports and a temporary data folder, for the service's end-to-end tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.fixtures.mail import free_port

PROJECT = Path(__file__).parent / "project"
REPO_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
SHARED_TEMPLATES = ["_layout.html", "_macros.html", "_system/_escalation.txt", "_system/handoff.txt",
                    "_system/handoff.html",
                    "_system/escalation.txt", "_system/escalation.html"]


class Service:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.env = dict(os.environ)
        self.env.update({
            "TOUCHPOINTS_DATA_DIR": str(self.data),
            "TOUCHPOINTS_CONFIG_FILE": str(root / "touchpoints.yaml"),
            "TOUCHPOINTS_PREFECT_PORT": str(free_port()),
            "TOUCHPOINTS_WEB_PORT": str(free_port()),
            "TOUCHPOINTS_CATCHER_PORT": str(free_port()),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        })
        self.env["TOUCHPOINTS_BASE_URL"] = f"http://127.0.0.1:{self.env['TOUCHPOINTS_WEB_PORT']}"
        for key in ("PREFECT_API_URL", "PREFECT_HOME", "TOUCHPOINTS_DATABASE_URL", "TOUCHPOINTS_SMTP_URL"):
            self.env.pop(key, None)
        self.proc: subprocess.Popen | None = None
        self.info: dict = {}

    @property
    def web(self) -> str:
        return self.env["TOUCHPOINTS_BASE_URL"]

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "flows", *args], check=False, env=self.env, cwd=self.root,
                                capture_output=True, text=True, timeout=300)
        if check and result.returncode != 0:
            raise AssertionError(f"touchpoints {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def start(self, timeout: float = 240) -> None:
        with open(self.root / "serve.log", "ab") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen([sys.executable, "-m", "flows", "serve"], env=self.env,
                                         cwd=self.root, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        state = self.data / "serve.json"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited with {self.proc.returncode}:\n{self.log()}")
            if state.exists():
                try:
                    info = json.loads(state.read_text())
                except ValueError:
                    info = {}
                if info.get("pid") == self.proc.pid:
                    self.info = info
                    return
            time.sleep(0.5)
        raise AssertionError(f"serve did not start in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        path = self.root / "serve.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def post_event(self, type: str, customer_id: str | None = None, event_id: str | None = None, **data) -> dict:
        event = {"id": event_id or f"t-{time.time_ns()}", "type": type, "data": data}
        if customer_id:
            event["customer_id"] = customer_id
        response = httpx.post(f"{self.web}/api/events", json=event, timeout=60,
                              headers={"Authorization": f"Bearer {self.info['api_key']}"})
        assert response.status_code == 202, response.text
        return response.json()

    def mail(self) -> list[dict]:
        from flows.mail.mailbox import Mailbox

        box = Mailbox(self.data / "mailbox")
        return [{**s.as_dict(), "text": box.get(s.id).text} for s in box.list()]

    def wait_for_mail(self, predicate, *, count: int = 1, timeout: float = 120) -> list[dict]:
        deadline = time.monotonic() + timeout
        found: list[dict] = []
        while time.monotonic() < deadline:
            found = [m for m in self.mail() if predicate(m)]
            if len(found) >= count:
                return found
            time.sleep(1)
        raise AssertionError(f"expected {count} matching emails in {timeout}s, got {len(found)}: "
                             f"{[m['subject'] for m in self.mail()]}\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL the supervisor: its children must die with it."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    root = tmp_path_factory.mktemp("service")
    shutil.copytree(PROJECT, root, dirs_exist_ok=True)
    for shared in SHARED_TEMPLATES:  # the shipped layout and task emails, not copies of them
        target = root / "templates" / shared
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_TEMPLATES / shared, target)
    service = Service(root)
    service.cli("customers", "import", "customers.csv")
    service.start()
    yield service
    service.stop()
