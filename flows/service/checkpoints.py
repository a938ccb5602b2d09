"""Signed audit checkpoints while `touchpoints serve` runs: one at start, one every
``TOUCHPOINTS_AUDIT_CHECKPOINT_SECONDS`` and one at every stop (after the last audit row of the
stop sequence). The writing is ``flows.store.checkpoints.write_checkpoint``; a sink that fails is
logged there and never stops the service."""

from __future__ import annotations

import logging

from flows.settings import Settings

log = logging.getLogger("touchpoints.service")

PART = "audit checkpoint"
"""The loop's name in /healthz."""


class Checkpointer:
    """The supervisor's checkpoint loop entry (``loop_entry``) and its stop call (``final``)."""

    def __init__(self, store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.written = 0

    def loop_entry(self) -> tuple[str, float, object]:
        """(part, every, work) for ``Supervisor._loop``: the first run is at once."""
        return PART, max(1.0, float(self.settings.audit_checkpoint_seconds)), self.write

    def write(self) -> dict:
        """One checkpoint; raises only if the file cannot be written (the loop retries)."""
        from flows.store.checkpoints import write_checkpoint

        written = write_checkpoint(self.store, self.settings)
        self.written += 1
        if written.switched_over:
            log.info("audit: recorded the switch-over to the keyed chain after %s legacy rows",
                     written.body["legacy_rows"])
        return written.body

    def final(self) -> None:
        """The checkpoint of the stop sequence: never raises, so stopping always completes."""
        try:
            body = self.write()
            log.info("audit checkpoint at stop: %s rows, head %s", body["seq"], body["hash"])
        except Exception as exc:  # noqa: BLE001 - stopping must not fail over a checkpoint
            log.warning("could not write the audit checkpoint at stop: %s", exc)
