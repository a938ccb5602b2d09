"""The service's periodic work: scheduling continuations, firing date and inactivity triggers
(with catch-up after downtime and no double firing; indexed scans at their own cadence, see
:mod:`flows.engine.trigger_scan`), escalating overdue tasks, and re-dispatching events whose
launch failed."""

from __future__ import annotations

import logging
from datetime import datetime
from time import monotonic

from flows import clock
from flows.engine.redrive import UnitDriver
from flows.engine.trigger_scan import CATCH_UP, TriggerScanner

log = logging.getLogger("touchpoints.service")

__all__ = ["ALERT_CHECK_SECONDS", "CATCH_UP", "Housekeeper"]

#: how often the alert checks look (wall-clock seconds; their thresholds are minutes)
ALERT_CHECK_SECONDS = 30.0


class Housekeeper:
    def __init__(self, engine, launcher) -> None:
        self.engine = engine
        self.launcher = launcher
        self.driver = UnitDriver(engine, launcher)
        self.scanner = TriggerScanner(engine)  # a full scan on the first tick: the catch-up
        self._checked_at: float | None = None  # when the alert checks last ran (monotonic)

    def tick(self, now: datetime | None = None) -> dict[str, int]:
        """The slow loop: triggers and escalations, then whatever they queued is launched."""
        done = self.triggers(now)
        done.update(self.drive())
        return done

    def triggers(self, now: datetime | None = None) -> dict[str, int]:
        now = now or clock.now()
        from flows.engine.dispatch import Dispatcher

        return {"redispatched": Dispatcher(self.engine, self.launcher).redispatch_stuck(),
                "date": self.scanner.dates(now), "inactivity": self.scanner.inactivity(now),
                "escalated": self.escalations(now), "alerts": self.alerts(now)}

    def drive(self) -> dict[str, int]:
        """The fast loop: launch queued units (new events, continuations), re-drive dead ones."""
        return {"redriven": self.driver.watch(), "launched": self.driver.launch_queued()}

    # ------------------------------------------------------------------ synthetic trigger events
    def date_triggers(self, now: datetime) -> int:
        """A full date scan (the catch-up): fire what fell due in the last ``CATCH_UP``."""
        return self.scanner.dates(now, full=True)

    def inactivity_triggers(self, now: datetime) -> int:
        """A full inactivity scan: fire for everyone silent long enough, once per silence."""
        return self.scanner.inactivity(now, full=True)

    def alerts(self, now: datetime) -> int:
        """Look for what went wrong (flows/engine/alert_checks.py), then send the alerts due to
        the operations address (one per kind and subject per hour)."""
        from flows.engine.alert_checks import run_checks
        from flows.engine.alerts import flush_due

        try:
            if self._checked_at is None or monotonic() - self._checked_at >= ALERT_CHECK_SECONDS:
                self._checked_at = monotonic()
                run_checks(self.engine, now=now)
        finally:
            sent = len(flush_due(self.engine, now=now))
        return sent

    def escalations(self, now: datetime) -> int:
        try:
            from flows.actions import escalate_overdue
        except ImportError:  # pragma: no cover - the actions module ships with the web app
            return 0
        return len(escalate_overdue(self.engine, now=now))
