"""touchpoints audit [filters] / audit verify: list and check the hash-chained audit trail."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from flows.cli._common import out, settings


def _store():
    from flows.store.db import open_store

    return open_store(settings())


def _row_json(row) -> dict:
    return {"seq": row.seq, "at": row.at.isoformat(), "action": row.action,
            "result": row.result, "actor": row.actor, "touchpoint": row.touchpoint,
            "step": row.step, "customer_id": row.customer_id, "journey_id": row.journey_id,
            "flow_run_id": row.flow_run_id, "reason": row.reason, "detail": row.detail,
            "prev_hash": row.prev_hash, "hash": row.hash}


def _row_line(row) -> str:
    where = row.touchpoint or "-"
    if row.step:
        where += f"/{row.step}"
    return (f"#{row.seq:<6} {row.at:%Y-%m-%d %H:%M:%S}Z  {row.action}  {row.result}  "
            f"{where}  {row.customer_id or '-'}  {row.actor}  {row.reason}").rstrip()


def register(app: typer.Typer) -> None:
    audit_app = typer.Typer(help="The audit trail, hash-chained: `touchpoints audit` lists it, "
                                 "`touchpoints audit verify` checks it.")
    app.add_typer(audit_app, name="audit")

    @audit_app.callback(invoke_without_command=True)
    def audit_list(
        ctx: typer.Context,
        customer: Annotated[str | None, typer.Option(
            "--customer", "-c", help="Only this customer.")] = None,
        touchpoint: Annotated[str | None, typer.Option(
            "--touchpoint", "-t", help="Only this touch point.")] = None,
        action: Annotated[str | None, typer.Option(
            "--action", "-a", help="Only this action, or a prefix ending in '.' or '*' "
                                   "(journey.*).")] = None,
        limit: Annotated[int, typer.Option(
            "--limit", "-n", min=0, help="Show the newest N rows (0: all).")] = 50,
        as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
    ) -> None:
        """List audit rows, oldest first: the newest --limit of those matching the filters."""
        if ctx.invoked_subcommand is not None:
            return
        from flows.store import audit

        with _store().read_session() as session:
            rows = audit.query(session, customer_id=customer, touchpoint=touchpoint,
                               action=action, limit=limit or None)
            if as_json:
                out.print_json(json.dumps([_row_json(r) for r in rows], ensure_ascii=False))
                return
            for row in rows:
                out.print(_row_line(row), markup=False)
        if not rows:
            out.print("no audit rows match", markup=False)

    @audit_app.command("verify")
    def verify(as_json: Annotated[bool, typer.Option(
            "--json", help="Print the result as JSON.")] = False) -> None:
        """Check the whole chain; exit 1 naming the first bad row.

        A row is bad when it was edited, deleted, reordered or inserted after it was written.
        """
        from flows.errors import AuditIntegrityError
        from flows.store import audit

        with _store().read_session() as session:
            result = audit.verify(session)
        if as_json:
            out.print_json(json.dumps({"ok": result.ok, "checked": result.checked,
                                       "first_bad_seq": result.first_bad_seq,
                                       "problem": result.problem, "message": result.message,
                                       "last_seq": result.last_seq, "last_hash": result.last_hash}))
        if not result.ok:
            raise AuditIntegrityError(
                f"audit trail broken at row {result.first_bad_seq} ({result.problem}): "
                f"{result.message}",
                hint=f"the {result.checked} row(s) before it are intact; restore the audit table "
                     "from a backup and find out who changed the database")
        if not as_json:
            out.print(result.message, markup=False)
            if result.last_seq is not None:
                out.print(f"last row: #{result.last_seq} {result.last_hash} "
                          "(keep this hash elsewhere to prove later rows were only appended)",
                          markup=False)
