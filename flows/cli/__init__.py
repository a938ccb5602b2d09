"""The ``touchpoints`` command.

Each module in this package adds its commands with ``register(app)``; they are found by name,
so a new command group is one new module. Errors from the one hierarchy in flows.errors are
printed as a message and a hint, never as a traceback.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer
from rich.console import Console

from flows.errors import TouchpointsError

app = typer.Typer(
    name="touchpoints",
    help="Customer touch points as code: check, plan, preview and run them through Prefect.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err = Console(stderr=True, highlight=False)

_registered = False


def _register_all() -> None:
    global _registered
    if _registered:
        return
    _registered = True
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


def main(argv: list[str] | None = None) -> None:
    from flows.prefect_env import configure
    from flows.settings import get_settings

    configure(get_settings())
    _register_all()
    try:
        # without standalone mode, click *returns* the code of a typer.Exit instead of exiting
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except TouchpointsError as exc:
        err.print(f"[bold red]error:[/] {exc.message}", soft_wrap=True)
        if exc.hint:
            err.print(f"[dim]hint:[/] {exc.hint}", soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err.print("aborted")
        sys.exit(130)
    except Exception as exc:
        # usage errors (unknown command, bad option) come from the click typer bundles;
        # they know how to show themselves and which exit code they mean
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            sys.exit(exc.exit_code)
        raise
