"""touchpoints mail list / show / catcher / clear: the local mail catcher's mailbox."""

from __future__ import annotations

import json
import re
import signal
import time

import typer
from rich.table import Table

from flows.cli._common import out

#: control characters other than tab and newline: shown escaped, so a caught message can never
#: drive the terminal (colours, titles, cursor moves)
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def terminal_safe(text: str) -> str:
    return CONTROL.sub(lambda m: f"\\x{ord(m.group(0)):02x}", text.replace("\r\n", "\n"))


def _mailbox():
    from flows.mail.mailbox import Mailbox
    from flows.settings import get_settings

    settings = get_settings()
    return settings, Mailbox(settings.mailbox_dir)


def _resolve(mailbox, ref: str) -> str:
    """An id, or the unique id ending with ``ref`` (e.g. its random part)."""
    from flows.errors import NotFoundError, TouchpointsError
    from flows.mail.mailbox import LIST_HINT, MAIL_ID

    ref = ref.strip()
    if MAIL_ID.match(ref) or len(ref) < 4:
        return ref
    matches = [s.id for s in mailbox.list() if s.id.endswith(ref)]
    if len(matches) > 1:
        raise TouchpointsError(f"{ref!r} matches {len(matches)} caught messages", hint="give the whole id")
    if not matches:
        raise NotFoundError(f"no caught message with id {ref!r}", hint=LIST_HINT)
    return matches[0]


def register(app: typer.Typer) -> None:
    mail = typer.Typer(help="The local mail catcher: the email sent on the embedded defaults.",
                       no_args_is_help=True)
    app.add_typer(mail, name="mail")

    @mail.command("list")
    def list_(to: str | None = typer.Option(None, "--to", help="Only mail to addresses containing this."),
              limit: int = typer.Option(50, "--limit", "-n", min=0, help="Show the newest N (0: all)."),
              as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        """List caught mail, oldest first (the newest is at the bottom). With --json: an object
        with ``messages``, ``total`` (how many match), ``shown`` and ``truncated``."""
        settings, mailbox = _mailbox()
        matching = mailbox.list(to=to)
        rows = matching[-limit:] if limit else matching
        truncated = len(rows) < len(matching)
        if as_json:
            out.print_json(json.dumps({"messages": [row.as_dict() for row in rows],
                                       "total": len(matching), "shown": len(rows),
                                       "truncated": truncated, "limit": limit or None}))
            return
        if not rows:
            out.print("no caught mail" + (f" to {to}" if to else "") + f" in {mailbox.dir}", markup=False)
            if not settings.embedded_mail:
                out.print("TOUCHPOINTS_SMTP_URL is set: mail goes to that server, not to the catcher")
            return
        table = Table(box=None, pad_edge=False)
        table.add_column("id", no_wrap=True)
        table.add_column("time (UTC)", no_wrap=True)
        table.add_column("to", overflow="fold")
        table.add_column("subject", overflow="fold")
        for row in rows:
            table.add_row(row.id, row.received_at[:19].replace("T", " "),
                          terminal_safe(", ".join(row.to)), terminal_safe(row.subject))
        out.print(table, markup=False)
        if truncated:
            out.print(f"showing the newest {len(rows)} of {len(matching)}: --limit 0 shows them all",
                      markup=False)
        out.print("show one with: touchpoints mail show ID", style="dim", markup=False)

    @mail.command("show")
    def show(mail_id: str = typer.Argument(..., metavar="ID", help="The id from `touchpoints mail list`."),
             html: bool = typer.Option(False, "--html", help="Print the HTML part instead.")) -> None:
        """Print a caught message: its headers and text part, or its HTML part."""
        _, mailbox = _mailbox()
        caught = mailbox.get(_resolve(mailbox, mail_id))
        if html:
            typer.echo(terminal_safe(caught.html) if caught.html else "(this message has no HTML part)")
            return
        lines = [f"Envelope-From: {caught.summary.mail_from}",
                 f"Envelope-To: {', '.join(caught.summary.to)}",
                 f"Received-At: {caught.summary.received_at}"]
        lines += [f"{name}: {value}" for name, value in caught.headers]
        typer.echo(terminal_safe("\n".join(lines)))
        typer.echo("")
        typer.echo(terminal_safe(caught.text) if caught.text else "(this message has no text part)")

    @mail.command("catcher")
    def catcher(port: int | None = typer.Option(None, "--port",
                                                help="Listen here instead of TOUCHPOINTS_CATCHER_PORT.")) -> None:
        """Run the mail catcher in the foreground until Ctrl-C."""
        from flows.mail.catcher import Catcher
        from flows.settings import get_settings

        settings = get_settings()
        if port is not None:
            settings = settings.model_copy(update={"catcher_port": port})
        def _stop(signum, frame):
            raise KeyboardInterrupt

        # Ctrl-C and SIGTERM stop it cleanly even when started as a background job, which
        # starts with SIGINT ignored (Python then installs no KeyboardInterrupt handler)
        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        running = Catcher(settings).start()
        out.print(f"mail catcher listening on {running.url}", markup=False)
        out.print(f"storing mail in {running.mailbox.dir}", markup=False)
        out.print("read it with `touchpoints mail list`; Ctrl-C stops the catcher", markup=False)
        try:
            while True:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            running.stop()
        out.print("mail catcher stopped")

    @mail.command("clear")
    def clear() -> None:
        """Delete every caught message."""
        _, mailbox = _mailbox()
        count = mailbox.clear()
        out.print(f"deleted {count} caught message{'s' * (count != 1)} from {mailbox.dir}", markup=False)
