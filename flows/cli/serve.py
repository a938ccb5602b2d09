"""touchpoints serve / demo."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import typer

from flows.cli._common import out

DEFAULT_SPEED = 4320.0  # one day of journey time every 20 seconds


def _print_urls(state, settings) -> None:
    out.print("\n[bold]Touchpoints is running.[/] Open:")
    out.print(f"  Prefect UI        {state.prefect_url}")
    if state.web_url:
        out.print(f"  web app           {state.web_url}   (API docs: {state.web_url}/docs)")
    if state.catcher:
        out.print(f"  caught mail       {state.web_url}/mail   (SMTP catcher {state.catcher})")
    out.print(f"  logs              {state.logs}")
    out.print("Stop with Ctrl-C.\n")


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(roles: str = typer.Option(None, "--roles", help="What this instance runs: any of "
                                        "web, worker, housekeeping, comma-separated (default "
                                        "TOUCHPOINTS_ROLES, else all three).")) -> None:
        """Start the Prefect server, the runner, the web app and the mail catcher, and keep
        them running together. With --roles, run only some of them, as one of several
        instances sharing a PostgreSQL store and a Prefect server (docs/operations.md)."""
        from flows.errors import TouchpointsError
        from flows.service.supervisor import Supervisor
        from flows.settings import get_settings

        settings = get_settings()
        from flows.store.roles import startup_checks

        for line in startup_checks(settings):  # a privileged database role, clear secrets
            out.print(line, style="bold yellow", markup=False)
        supervisor = Supervisor(settings, say=out.print, roles=roles)
        try:
            state = supervisor.start()
        except (TouchpointsError, KeyboardInterrupt):
            supervisor.stop()
            raise
        _print_urls(state, settings)
        sys.exit(supervisor.supervise())

    @app.command()
    def demo(speed: float = typer.Option(DEFAULT_SPEED, help="How many times faster journey time "
                                         "runs (1 = real time). Waits still go through scheduled "
                                         "Prefect runs."),
             customers: Path = typer.Option(Path("docs/examples/customers.csv"), help="Customers to import."),
             exit_after: bool = typer.Option(False, "--exit-after-story",
                                             help="Stop the service when the story is done.")) -> None:
        """Start the service on embedded defaults, import the sample customers, play a short
        story through the real API, and print where to look."""
        from flows import clock
        from flows.cli._common import cli_actor
        from flows.config import load_config
        from flows.errors import TouchpointsError
        from flows.mail.mailbox import Mailbox
        from flows.service.demo import Story
        from flows.service.supervisor import Supervisor
        from flows.settings import get_settings
        from flows.store.customers import get_customer, import_customers
        from flows.store.db import open_store

        settings = get_settings()
        config = load_config(settings.config_file)
        out.print(f"touchpoints.yaml is valid: {len(config.touchpoints)} touch points")
        report = import_customers(open_store(settings), customers, actor=cli_actor())
        out.print(f"imported {customers}: {report.summary() if hasattr(report, 'summary') else report}")
        if speed != 1:
            os.environ[clock.ENV] = clock.dilate(speed)
            out.print(f"journey time runs {speed:g}× faster than wall time")
        supervisor = Supervisor(settings, say=out.print)
        try:
            state = supervisor.start()
        except (TouchpointsError, KeyboardInterrupt):
            supervisor.stop()
            raise
        examples = {name: dict(spec.example or {}) for name, spec in config.event_types().items()}
        story = Story(web_url=state.web_url, api_key=state.api_key, mailbox=Mailbox(settings.mailbox_dir),
                      examples=examples, say=out.print)
        done = threading.Event()

        def play() -> None:
            try:
                story.play()
                out.print("waiting for the install survey to reach C-1002 (journey time is compressed)…")
                with open_store(settings).session() as session:
                    email = get_customer(session, "C-1002").email
                if story.answer_survey_as_detractor(email, timeout=max(240.0, 6 * 86400 / speed)):
                    out.print("  → the detractor's answer resumed the install journey: "
                              "see the account-management task")
            except Exception as exc:  # the service keeps running; say what failed
                out.print(f"[red]the story stopped:[/] {exc}")
            finally:
                _print_urls(state, settings)
                out.print("  tasks             touchpoints tasks list   (or the links in the team emails)")
                done.set()
                if exit_after:
                    supervisor.stopping.set()

        threading.Thread(target=play, name="story", daemon=True).start()
        sys.exit(supervisor.supervise())
