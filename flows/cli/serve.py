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
             fresh: bool = typer.Option(False, "--fresh", help="Forget the previous demo (its "
                                        "store, mail and clock) and start a new one."),
             exit_after: bool = typer.Option(False, "--exit-after-story",
                                             help="Stop the service when the story is done.")) -> None:
        """Start the service on embedded defaults in its own data folder (<data>/demo, with its
        compressed clock), import the sample customers, play a short story through the real
        API, and print where to look. Running it again goes on with the same demo."""
        import shutil

        from flows import clock
        from flows.cli._common import cli_actor
        from flows.config import load_config
        from flows.errors import TouchpointsError
        from flows.mail.mailbox import Mailbox
        from flows.service.demo import CLOCK_FILE, Story, demo_clock, demo_data_dir
        from flows.service.supervisor import Supervisor
        from flows.settings import get_settings, reset_settings
        from flows.store.customers import get_customer, import_customers
        from flows.store.db import open_store

        folder = demo_data_dir(get_settings().data_dir)
        if fresh and folder.exists():
            if not (folder / CLOCK_FILE).exists():
                raise TouchpointsError(f"{folder} is not a demo folder: left as it is",
                                       hint="move it away, or set TOUCHPOINTS_DATA_DIR elsewhere")
            shutil.rmtree(folder)
        os.environ["TOUCHPOINTS_DATA_DIR"] = str(folder)
        reset_settings()
        settings = get_settings()
        again = (folder / CLOCK_FILE).exists()
        value = demo_clock(folder, speed)
        if value:
            os.environ[clock.ENV] = value
        config = load_config(settings.config_file)
        out.print(f"touchpoints.yaml is valid: {len(config.touchpoints)} touch points")
        out.print(f"the demo keeps its store, mail and clock in {folder}"
                  + (" (going on with the demo started there)" if again else ""))
        if speed != 1:
            out.print(f"journey time runs {speed:g}× faster than wall time (now {clock.now():%Y-%m-%d %H:%M} UTC)")
        report = import_customers(open_store(settings), customers, actor=cli_actor())
        out.print(f"imported {customers}: {report.summary() if hasattr(report, 'summary') else report}")
        supervisor = Supervisor(settings, say=out.print)
        try:
            state = supervisor.start()
        except (TouchpointsError, KeyboardInterrupt):
            supervisor.stop()
            raise
        _print_urls(state, settings)  # as soon as it is up: the story takes a while
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
                story.failures.append(f"the story stopped: {exc}")
            finally:
                out.print(story.summary())
                _print_urls(state, settings)
                out.print("  tasks             touchpoints tasks list   (or the links in the team emails)")
                out.print("  again             touchpoints demo   (goes on with this demo; --fresh for a new one)")
                done.set()
                if exit_after:
                    supervisor.stopping.set()

        threading.Thread(target=play, name="story", daemon=True).start()
        code = supervisor.supervise()
        sys.exit(code or (1 if exit_after and story.failures else 0))
