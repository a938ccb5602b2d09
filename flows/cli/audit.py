"""touchpoints audit [filters] / audit verify / audit head / audit checkpoint: list, check and
anchor the keyed, hash-chained audit trail."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from flows.cli._common import out, settings


def _store():
    from flows.store.db import open_store

    return open_store(settings())


def _warn(message: str) -> None:
    from flows.cli import err

    err.print(f"warning: {message}", markup=False)


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
    audit_app = typer.Typer(help="The audit trail, keyed and hash-chained: `touchpoints audit` "
                                 "lists it, `audit verify` checks it, `audit head` prints the "
                                 "anchor to keep, `audit checkpoint` signs one now.")
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
        as_json: Annotated[bool, typer.Option(
            "--json", help='Print {"rows": [...], "total": N, "truncated": true|false}.')] = False,
    ) -> None:
        """List audit rows, oldest first: the newest --limit of those matching the filters.

        When more rows match, the listing says so.
        """
        if ctx.invoked_subcommand is not None:
            return
        from flows.store import audit

        filters = {"customer_id": customer, "touchpoint": touchpoint, "action": action}
        with _store().read_session() as session:
            rows = audit.query(session, **filters, limit=limit or None)
            total = audit.count(session, **filters) if limit and len(rows) == limit else len(rows)
            if as_json:
                out.print_json(json.dumps({
                    "rows": [_row_json(r) for r in rows], "shown": len(rows), "total": total,
                    "truncated": total > len(rows), "limit": limit or None},
                    ensure_ascii=False))
                return
            for row in rows:
                out.print(_row_line(row), markup=False)
        if not rows:
            out.print("no audit rows match", markup=False)
        elif total > len(rows):
            out.print(f"showing the newest {len(rows)} of {total} matching rows; "
                      "use --limit N for more, --limit 0 for all", markup=False)

    @audit_app.command("verify")
    def verify(
        expect: Annotated[str | None, typer.Option(
            "--expect", metavar="SEQ:HASH",
            help="A head you kept (from `touchpoints audit head`): the chain must still "
                 "hold it, with that hash.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    ) -> None:
        """Check the whole chain against the latest signed checkpoint; exit 1 at the first bad row.

        A row is bad when it was edited, forged, deleted, reordered or inserted after it was
        written; rows missing at the end (a truncated tail) are found against the checkpoint
        or --expect.
        """
        from flows.errors import AuditIntegrityError
        from flows.store import audit, audit_verify, checkpoints

        s = settings()
        checkpoint, bad_lines = checkpoints.read_latest(s)
        with _store().read_session() as session:
            result = audit_verify.verify(session, checkpoint=checkpoint, expect=expect,
                                         chain_keys=audit.keys(s))
        if bad_lines:
            _warn(f"{bad_lines} line(s) of {checkpoints.checkpoint_path(s)} do not carry a valid "
                  "signature and were ignored (edited, or signed with a key no longer listed)")
        if as_json:
            out.print_json(json.dumps({
                "ok": result.ok, "checked": result.checked,
                "first_bad_seq": result.first_bad_seq, "problem": result.problem,
                "message": result.message, "last_seq": result.last_seq,
                "last_hash": result.last_hash, "legacy_rows": result.legacy_rows,
                "checkpoint": checkpoint, "expect": expect}))
        if not result.ok:
            hint = (f"the {result.checked} row(s) before it are intact; restore the audit table "
                    "from a backup and find out who changed the database")
            if result.problem == "edited" and result.first_bad_seq == 1:
                hint += ("; if every row fails, the audit key changed: list the old secret in "
                         "TOUCHPOINTS_AUDIT_PREVIOUS_KEYS (docs/operations.md, 'Audit trail: "
                         "keys, checkpoints, rotation')")
            raise AuditIntegrityError(
                f"audit trail broken at row {result.first_bad_seq} ({result.problem}): "
                f"{result.message}", hint=hint)
        if as_json:
            return
        out.print(result.message, markup=False)
        if checkpoint is not None:
            out.print(f"the chain reaches the signed checkpoint of {checkpoint['at']} "
                      f"({checkpoint['seq']} rows) with the head it signed", markup=False)
        else:
            _warn("no signed checkpoint yet, so rows deleted from the end would not show; "
                  "`touchpoints audit checkpoint` writes one (serve does, regularly)")
        if expect:
            out.print(f"the head you kept ({expect}) is in the chain", markup=False)
        if result.last_seq is not None:
            out.print(f"head: {result.last_seq}:{result.last_hash} (keep it elsewhere; "
                      f"`touchpoints audit verify --expect {result.last_seq}:{result.last_hash}` "
                      "proves later that rows were only appended)", markup=False)

    @audit_app.command("head")
    def head(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
        """Print the anchor to keep: row count, head hash and the time of the newest row.

        Keep it somewhere the database's owner cannot write; `audit verify --expect` checks
        against it.
        """
        from flows.store import audit
        from flows.store.tables import AuditRow

        with _store().read_session() as session:
            seq, digest = audit.head(session)
            at = session.get(AuditRow, seq).at.isoformat() if seq else None
        if as_json:
            out.print_json(json.dumps({"rows": seq, "seq": seq, "hash": digest, "at": at,
                                       "anchor": f"{seq}:{digest}"}))
            return
        out.print(f"rows: {seq}\nhash: {digest}\nat:   {at or '-'} (newest row)\n"
                  f"anchor: {seq}:{digest}", markup=False)

    @audit_app.command("checkpoint")
    def checkpoint(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
        """Write a signed checkpoint of the head now, to the data folder and the sinks.

        The sinks are TOUCHPOINTS_AUDIT_CHECKPOINT_SINK; exit 1 if one failed (the file is
        written anyway).
        """
        from flows.errors import TouchpointsError
        from flows.store import checkpoints

        s = settings()
        written = checkpoints.write_checkpoint(_store(), s)
        body = written.body
        if as_json:
            out.print_json(json.dumps({**body, "file": str(written.path), "sinks": written.sinks,
                                       "switched_over": written.switched_over}))
        else:
            if written.switched_over:
                out.print(f"recorded the switch-over: rows 1 to {body['legacy_rows']} were "
                          "written before keying", markup=False)
            out.print(f"checkpoint: {body['seq']} rows, head {body['hash']}, at {body['at']}\n"
                      f"written to {written.path}", markup=False)
            for sink, error in written.sinks.items():
                if not error:
                    out.print(f"sent to {sink}", markup=False)
        if written.failed_sinks:
            failed = "; ".join(f"{sink}: {error}" for sink, error in written.failed_sinks.items())
            raise TouchpointsError(f"the checkpoint was written to {written.path} but not sent "
                                      f"to {failed}",
                                      hint="check TOUCHPOINTS_AUDIT_CHECKPOINT_SINK and that the "
                                           "receiver is up")
