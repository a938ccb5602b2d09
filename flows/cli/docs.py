"""touchpoints docs."""

from __future__ import annotations

from pathlib import Path

import typer

from flows.cli._common import out


def register(app: typer.Typer) -> None:
    @app.command()
    def docs(output: Path = typer.Option(Path("docs/reference.md"), "-o", "--output"),
             check: bool = typer.Option(False, "--check", help="Exit 1 if the file is out of date.")) -> None:
        """Write the reference of step kinds generated from the registry."""
        from flows.docs_gen import render_reference
        from flows.errors import TouchpointsError

        text = render_reference()
        if check:
            current = output.read_text(encoding="utf-8") if output.exists() else ""
            if current != text:
                raise TouchpointsError(f"{output} is out of date with the step registry",
                                       hint="run `touchpoints docs` and commit the result")
            out.print(f"{output} is up to date")
            return
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
        out.print(f"wrote {output}")
