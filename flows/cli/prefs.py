"""touchpoints prefs set / link: a customer's email choices, for support staff."""

from __future__ import annotations

import typer

from flows.cli._common import cli_actor, out


def _engine():
    from flows.engine.core import current_engine

    return current_engine()


def register(app: typer.Typer) -> None:
    prefs = typer.Typer(help="A customer's email preferences (what they get, what they turned off).",
                        no_args_is_help=True)
    app.add_typer(prefs, name="prefs")

    @prefs.command("set")
    def set_(customer: str = typer.Argument(..., help="Customer id."),
             category: str = typer.Argument(..., help="Email category, e.g. surveys."),
             on: bool = typer.Option(..., "--on/--off", help="Subscribe (--on) or unsubscribe (--off).")
             ) -> None:
        """Turn one category on or off for a customer (transactional ones stay on)."""
        from flows import actions
        from flows.errors import TouchpointsError

        engine = _engine()
        result = actions.set_preferences(engine, customer, {category: on}, actor=cli_actor(),
                                         source="cli")
        if result.refused:
            raise TouchpointsError(f"not changed: {result.refused[category]}",
                                   hint="categories: " + ", ".join(engine.config.categories))
        state = "subscribed to" if on else "unsubscribed from"
        if result.changed:
            out.print(f"{customer} is now {state} {category}", markup=False)
        else:
            out.print(f"{customer} was already {state} {category}", markup=False)

    @prefs.command("link")
    def link(customer: str = typer.Argument(..., help="Customer id.")) -> None:
        """Print the signed link to the customer's preferences page (to send them)."""
        from flows.store.customers import get_customer

        engine = _engine()
        with engine.store.read_session() as session:
            get_customer(session, customer)  # unknown customer: a clear error, not a dead link
        out.print(engine.signer.url("preferences", customer=customer), markup=False)
