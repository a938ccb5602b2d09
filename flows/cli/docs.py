"""`touchpoints docs [-o docs/reference.md] [--check]`."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated

import typer

from flows.cli._common import out


def docs_command(
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Where the reference goes (default: docs/reference.md).")] = None,
    check: Annotated[bool, typer.Option(
        "--check", help="Write nothing; exit 1 if the file differs from what the step "
                        "registry generates (for CI).")] = False,
) -> None:
    """Generate the reference of step kinds, triggers and template names from the code."""
    from flows.docs_gen import REFERENCE, render_reference
    from flows.errors import TouchpointsError

    path = output if output is not None else REFERENCE
    text = render_reference()
    if check:
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != text:
            if current is None:
                detail = "it does not exist"
            else:
                diff = list(difflib.unified_diff(current.splitlines(), text.splitlines(),
                                                 f"{path} (on disk)", "generated", n=0,
                                                 lineterm=""))
                typer.echo("\n".join(diff[:40] + (["…"] if len(diff) > 40 else [])), err=True)
                changed = sum(1 for line in diff[2:] if line[:1] in "+-")
                detail = f"{changed} line(s) differ"
            raise TouchpointsError(f"{path} is out of date with the step registry ({detail})",
                                   hint=f"run `touchpoints docs -o {path}` and commit the result")
        out.print(f"{path} is up to date")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_text(encoding="utf-8") == text:
        out.print(f"{path} is up to date")
        return
    path.write_text(text, encoding="utf-8")
    out.print(f"wrote {path}")


def register(app: typer.Typer) -> None:
    app.command("docs")(docs_command)
