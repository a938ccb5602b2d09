"""touchpoints keys create / list / revoke: API keys for the systems that call the HTTP API."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from flows.cli._common import cli_actor, out, settings


def _store():
    from flows.store.db import open_store

    return open_store(settings())


def register(app: typer.Typer) -> None:
    keys_app = typer.Typer(help="API keys for the HTTP API (CRM, billing, network monitoring).",
                           no_args_is_help=True)
    app.add_typer(keys_app, name="keys")

    @keys_app.command("create")
    def create(name: str = typer.Argument(..., help="Who uses the key, e.g. crm or billing."),
               hmac: bool = typer.Option(False, "--hmac",
                                         help="Also make a secret to sign every request with."),
               as_json: bool = typer.Option(False, "--json")) -> None:
        """Make an API key. It is printed once: store it now, it cannot be shown again."""
        from flows.keys import create_key

        with _store().session() as session:
            key_id, full_key, hmac_secret = create_key(session, name, hmac=hmac, actor=cli_actor())
        if as_json:
            out.print_json(json.dumps({"id": key_id, "name": name, "key": full_key,
                                       "hmac_secret": hmac_secret}))
            return
        out.print(f"API key [bold]{key_id}[/] for {name}:")
        out.print(f"  {full_key}", markup=False)
        if hmac_secret:
            out.print("Signing secret (HMAC-SHA256 of f\"{timestamp}.\" + body, sent as "
                      "X-Touchpoints-Signature: sha256=<hex> with X-Touchpoints-Timestamp):",
                      markup=False)
            out.print(f"  {hmac_secret}", markup=False)
        out.print("[bold yellow]warning:[/] this is the only time the key"
                  + (" and the secret are" if hmac_secret else " is")
                  + " shown. Store it in the calling system's secret store now; "
                  f"if it is lost, revoke it with `touchpoints keys revoke {key_id}` and make a new one.")

    @keys_app.command("list")
    def list_(as_json: bool = typer.Option(False, "--json")) -> None:
        """List API keys (ids and names only; keys themselves are never stored)."""
        from flows.keys import list_keys

        with _store().session() as session:
            rows = list_keys(session)
        if as_json:
            out.print_json(json.dumps(rows, default=str))
            return
        if not rows:
            out.print("no API keys yet: make one with `touchpoints keys create NAME`")
            return
        table = Table("id", "name", "signed", "created", "status")
        for r in rows:
            table.add_row(r["id"], r["name"], "hmac" if r["hmac"] else "",
                          f"{r['created_at']:%Y-%m-%d %H:%M}",
                          f"revoked {r['revoked_at']:%Y-%m-%d %H:%M}" if r["revoked_at"] else "active")
        out.print(table)

    @keys_app.command("revoke")
    def revoke(key_id: str = typer.Argument(..., metavar="ID", help="Key id from `keys list`."),
               reason: str = typer.Option("", "--reason", help="Why, for the audit log.")) -> None:
        """Revoke an API key: requests made with it are refused from now on."""
        from flows.keys import revoke_key

        with _store().session() as session:
            row = revoke_key(session, key_id, actor=cli_actor(), reason=reason)
            name, revoked_at = row.name, row.revoked_at
        out.print(f"revoked API key [bold]{key_id}[/] ({name}) at {revoked_at:%Y-%m-%d %H:%M} UTC")
