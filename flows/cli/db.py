"""touchpoints db setup-roles / migrate: least-privilege database roles on PostgreSQL, and
migrations as the owner role."""

from __future__ import annotations

import json

import typer

from flows.cli._common import out


def register(app: typer.Typer) -> None:
    db_app = typer.Typer(help="The store's database: roles and rights (PostgreSQL).",
                         no_args_is_help=True)
    app.add_typer(db_app, name="db")

    @db_app.command("setup-roles")
    def setup_roles(
        admin_url: str = typer.Option(..., "--admin-url", envvar="TOUCHPOINTS_ADMIN_DATABASE_URL",
                                      help="A superuser's URL for the store's database."),
        owner: str = typer.Option("touchpoints_owner", "--owner",
                                  envvar="TOUCHPOINTS_OWNER_ROLE",
                                  help="The role that owns the tables and runs migrations."),
        app_role: str = typer.Option("touchpoints_app", "--app", envvar="TOUCHPOINTS_APP_ROLE",
                                     help="The role the service and commands connect as."),
        owner_password: str = typer.Option(None, "--owner-password",
                                           envvar="TOUCHPOINTS_OWNER_PASSWORD",
                                           help="Default: a new random one."),
        app_password: str = typer.Option(None, "--app-password",
                                         envvar="TOUCHPOINTS_APP_PASSWORD",
                                         help="Default: a new random one."),
        migrate: bool = typer.Option(True, "--migrate/--no-migrate",
                                     help="Also bring the schema up to date, as the owner."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Make (or update) the owner and app roles, hand every table to the owner and grant
        the app role only what it needs: INSERT and SELECT on the audit trail. Safe to run
        again. Prints the two URLs to set."""
        from flows.store.db import Store
        from flows.store.roles import setup_roles as run

        urls = run(admin_url, owner=owner, app=app_role, owner_password=owner_password,
                   app_password=app_password)
        if migrate:
            store = Store(urls.migration_url)
            try:
                store.migrate_if_needed()
            finally:
                store.dispose()
        if as_json:
            out.print_json(json.dumps({"TOUCHPOINTS_DATABASE_URL": urls.app_url,
                                       "TOUCHPOINTS_MIGRATION_DATABASE_URL": urls.migration_url}))
            return
        out.print(f"roles ready: [bold]{owner}[/] owns the store, [bold]{app_role}[/] may only "
                  "INSERT and SELECT on the audit trail. Set:")
        out.print(f"  TOUCHPOINTS_DATABASE_URL={urls.app_url}", markup=False)
        out.print(f"  TOUCHPOINTS_MIGRATION_DATABASE_URL={urls.migration_url}", markup=False)
        out.print("[bold yellow]note:[/] the URLs hold the passwords; keep them in your secret "
                  "store, not in a shell history.")

    @db_app.command("migrate")
    def migrate() -> None:
        """Bring the store's schema up to date, as the owner role of
        TOUCHPOINTS_MIGRATION_DATABASE_URL when set (run it when deploying a new version, so
        the service itself needs only the app role's URL)."""
        from flows.settings import get_settings
        from flows.store.db import Store, display_url
        from flows.store.roles import migrate_as

        settings = get_settings()
        url = settings.migration_database_url or settings.store_url
        store = Store(url)
        try:
            before = store.current_revision()
            migrate_as(store)
            after = store.current_revision()
        finally:
            store.dispose()
        if before == after:
            out.print(f"{display_url(url)} is up to date (schema {after})", markup=False)
        else:
            out.print(f"migrated {display_url(url)} from schema {before or 'empty'} to {after}",
                      markup=False)
