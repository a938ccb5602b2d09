"""touchpoints customers import / list / show: the customer directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.cells import set_cell_size

from flows.cli._common import cli_actor, out, settings
from flows.settings import Settings

LIST_COLUMNS = (("ID", "id", 14), ("NAME", "name", 26), ("EMAIL", "email", 32),
                ("REGION", "region", 10), ("PLAN", "plan", 14),
                ("CONTRACT END", "contract_end", 12))


def _store():
    from flows.store.db import open_store

    return open_store(settings())


def _import_rules(s: Settings):
    """With a touchpoints.yaml (read by the fast parse, once): the email categories, since an
    import refuses unsubscribes from any other category (they would silently not apply), and
    the hook by which waits relative to a changed contract date move with it."""
    if not s.config_file.exists():
        return None, None
    from flows.engine.core import current_engine
    from flows.engine.rescheduling import following_dates

    engine = current_engine()
    actor = cli_actor()
    return (set(engine.config.categories),
            lambda session, ids: following_dates(engine, session, ids, actor=actor))


def _customer_json(row, prefs: dict | None = None) -> dict[str, Any]:
    data = {name: getattr(row, name) for name in (
        "id", "name", "email", "timezone", "region", "plan", "contract_start", "contract_end",
        "account_owner", "account_owner_name", "attributes", "last_contact_at", "created_at",
        "updated_at")}
    for name, value in data.items():
        if hasattr(value, "isoformat"):
            data[name] = value.isoformat()
    if prefs is not None:
        data["preferences"] = {category: pref.subscribed for category, pref in prefs.items()}
    return data


def _cell(value: Any, width: int) -> str:
    text = "-" if value in (None, "") else str(value)
    if len(text) > width:
        text = text[:width - 1] + "…"
    return set_cell_size(text, width)


def register(app: typer.Typer) -> None:
    customers_app = typer.Typer(help="The customer directory: import, list and show customers.",
                                no_args_is_help=True)
    app.add_typer(customers_app, name="customers")

    @customers_app.command("import")
    def import_file(
        file: Annotated[Path, typer.Argument(help="A .csv file with a header line, or a .json "
                                                  "file holding a list of customers.")],
        as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    ) -> None:
        """Create or update customers from a CSV or JSON file.

        Good rows are kept; each bad row is listed as FILE:LINE: reason, and the command then
        exits with 1. Importing the same file again changes nothing.
        """
        from flows.errors import ImportRowsError
        from flows.store.customers import HINT_FIX, import_customers

        categories, around = _import_rules(settings())
        report = import_customers(_store(), file, actor=cli_actor(), categories=categories,
                                  around=around)
        if as_json:
            out.print_json(json.dumps(report.as_dict()))
        else:
            out.print(f"imported {file}: {report.summary()}", markup=False)
            for problem in report.problems():
                out.print(problem, markup=False)
        if not report.ok:
            raise ImportRowsError(f"{report.rejected} of {report.received} row(s) of {file} "
                                  "were rejected; the good ones were kept", hint=HINT_FIX)

    @customers_app.command("list")
    def list_customers(
        region: Annotated[str | None, typer.Option(
            "--region", "-r", help="Only this region.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
    ) -> None:
        """List customers, ordered by id."""
        from flows.store.customers import stream_customers

        count = 0
        with _store().read_session() as session:
            if as_json:
                typer.echo("[")
            else:
                out.print("  ".join(set_cell_size(title, width) for title, _, width in LIST_COLUMNS)
                          .rstrip(), markup=False, style="bold")
            for batch in stream_customers(session, 500, region=region):
                for row in batch:
                    if as_json:
                        typer.echo(("," if count else "") + json.dumps(_customer_json(row),
                                                                       ensure_ascii=False))
                    else:
                        out.print("  ".join(_cell(getattr(row, name), width)
                                            for _, name, width in LIST_COLUMNS).rstrip(),
                                  markup=False)
                    count += 1
        if as_json:
            typer.echo("]")
        elif count == 0:
            where = f" in region {region}" if region else ""
            out.print(f"no customers{where}; import them with `touchpoints customers import FILE`",
                      markup=False)
        else:
            out.print(f"{count} customer(s)", markup=False)

    @customers_app.command("show")
    def show(customer_id: Annotated[str, typer.Argument(metavar="ID", help="Customer id.")],
             as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
        """Show one customer with their email preferences and attributes."""
        from flows.errors import NotFoundError
        from flows.store.customers import preferences
        from flows.store.tables import Customer

        with _store().read_session() as session:
            row = session.get(Customer, customer_id)
            if row is None:
                raise NotFoundError(f"unknown customer {customer_id!r}",
                                    hint="list customers with `touchpoints customers list`")
            data = _customer_json(row, preferences(session, customer_id))
        if as_json:
            out.print_json(json.dumps(data, ensure_ascii=False))
            return
        for name in ("id", "name", "email", "timezone", "region", "plan", "contract_start",
                     "contract_end", "account_owner", "account_owner_name", "last_contact_at",
                     "created_at", "updated_at"):
            out.print(f"{name + ':':<20} {data[name] if data[name] is not None else '-'}",
                      markup=False)
        off = sorted(c for c, subscribed in data["preferences"].items() if not subscribed)
        out.print(f"{'unsubscribed:':<20} {', '.join(off) if off else 'none'}", markup=False)
        attributes = data["attributes"] or {}
        out.print(f"{'attributes:':<20} {'none' if not attributes else ''}".rstrip(), markup=False)
        for key in sorted(attributes):
            out.print(f"  {key}: {json.dumps(attributes[key], ensure_ascii=False)}", markup=False)
