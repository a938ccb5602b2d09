"""Launchers turn units of work into runs: in this process (the CLI), or as Prefect
deployment runs (the service). Whoever builds the engine's dispatcher or driver hands it one;
the engine never reaches for the service.

Every launcher has ``start``, ``resume`` and ``redrive`` (each given the unit it drives), and
``run_states`` / ``crash`` so the watchdog can decide from a run's real state.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flows import clock
from flows.engine.compiler import compile_touchpoint
from flows.engine.core import current_engine


def run_tags(touchpoint: str, customer_id: str | None) -> list[str]:
    return [f"touchpoint:{touchpoint}"] + ([f"customer:{customer_id}"] if customer_id else [])


def deployment_name(touchpoint: str) -> str:
    return f"{touchpoint}/{touchpoint}"


def batch_label(touchpoint: str, customer_ids: list[str]) -> str:
    """The run name of a batch of starts: how many, and the first and last customer."""
    ids = [c for c in customer_ids if c]
    span = f"{ids[0]} … {ids[-1]}" if len(ids) > 1 else (ids[0] if ids else "")
    return f"{touchpoint} · {len(customer_ids)} customers ({span})"


def batch_key(unit_ids: list[str], attempt: int) -> str:
    import hashlib

    digest = hashlib.sha256("\n".join(sorted(unit_ids)).encode()).hexdigest()[:32]
    return f"batch:{digest}" + (f":{attempt}" if attempt else "")


def _key(prefix: str, unit_id: str | None, fallback: str, attempt: int) -> str:
    base = f"{prefix}:{unit_id}" if unit_id else fallback
    return base if not attempt else f"{base}:{attempt}"


class InProcessLauncher:
    """Runs each flow here and now, against the Prefect API the process is configured for."""

    #: journeys of a touch point removed from the file finish here on their stored version
    runs_retired = True

    def __init__(self) -> None:
        self.results: list[dict[str, Any]] = []

    def _flow(self, touchpoint: str):
        from flows.engine.versions import runnable

        return compile_touchpoint(runnable(current_engine(), touchpoint))

    def _run(self, touchpoint: str, customer_id: str | None, **params) -> Any:
        from prefect import tags

        with tags(*run_tags(touchpoint, customer_id)):
            return self._flow(touchpoint)(customer_id=customer_id, **params)

    def start(self, touchpoint: str, *, event: dict, customer_id: str | None, label: str,
              unit_id: str | None = None, attempt: int = 0) -> Any:
        result = self._run(touchpoint, customer_id, event=event, label=label, unit_id=unit_id)
        self.results.append({"touchpoint": touchpoint, "customer_id": customer_id, **(result or {})})
        return result

    def start_batch(self, touchpoint: str, *, unit_ids: list[str], customer_ids: list[str],
                    attempt: int = 0) -> Any:
        from prefect import tags

        with tags(*run_tags(touchpoint, None), *[f"customer:{c}" for c in customer_ids if c]):
            result = self._flow(touchpoint)(unit_ids=unit_ids,
                                            label=batch_label(touchpoint, customer_ids))
        self.results.append({"touchpoint": touchpoint, **(result or {})})
        return result

    def resume(self, touchpoint: str, *, journey_id: str, pointer: str, mode: str, label: str,
               customer_id: str | None, continuation: str, due: datetime | None = None,
               unit_id: str | None = None, attempt: int = 0) -> Any:
        result = self._run(touchpoint, customer_id, journey_id=journey_id, resume_at=pointer,
                           mode=mode, label=f"{label} · resume", unit_id=unit_id)
        self.results.append({"touchpoint": touchpoint, "journey_id": journey_id, **(result or {})})
        return result

    def redrive(self, touchpoint: str, *, journey_id: str, label: str, customer_id: str | None,
                unit_id: str, attempt: int = 0, fresh: bool = False) -> Any:
        result = self._run(touchpoint, customer_id, unit_id=unit_id,
                           label=label if fresh and not attempt else f"{label} · re-drive")
        self.results.append({"touchpoint": touchpoint, "journey_id": journey_id, **(result or {})})
        return result

    def run_states(self, flow_run_ids: list[str]) -> dict[str, dict]:
        return {}  # runs here finish before the call returns

    def crash(self, flow_run_id: str, message: str) -> None:
        return None


class DeploymentLauncher:
    """Starts, resumes and re-drives journeys as runs of the served deployments; returns at
    once. A continuation becomes a run *scheduled* for its due time (Scheduled in the UI)."""

    #: a touch point removed from the file is deployed from its stored version while journeys
    #: of it are in flight (flows/service/deployments.py), so they finish on it
    runs_retired = True

    def _run(self, touchpoint: str, *, parameters: dict, name: str, key: str,
             customer_id: str | None, when: datetime | None = None,
             extra_tags: list[str] | None = None) -> dict:
        from prefect.deployments import run_deployment

        run = run_deployment(deployment_name(touchpoint), timeout=0, as_subflow=False,
                             parameters=parameters, flow_run_name=name, idempotency_key=key,
                             scheduled_time=clock.to_wall(when) if when else None,
                             tags=run_tags(touchpoint, customer_id) + (extra_tags or []))
        return {"flow_run_id": str(run.id)}

    def start_batch(self, touchpoint: str, *, unit_ids: list[str], customer_ids: list[str],
                    attempt: int = 0) -> dict:
        """One run for several journey starts (one Prefect flow run costs about a second of
        server time); every customer is a tag of the run."""
        label = batch_label(touchpoint, customer_ids)
        return self._run(touchpoint, customer_id=None, parameters={"unit_ids": unit_ids,
                                                                   "label": label},
                         name=f"{label} · {clock.now():%Y-%m-%d}", key=batch_key(unit_ids, attempt),
                         extra_tags=[f"customer:{c}" for c in customer_ids if c])

    def start(self, touchpoint: str, *, event: dict, customer_id: str | None, label: str,
              unit_id: str | None = None, attempt: int = 0) -> dict:
        return self._run(touchpoint, customer_id=customer_id,
                         parameters={"event": event, "customer_id": customer_id, "label": label,
                                     "unit_id": unit_id},
                         name=f"{label} · {clock.now():%Y-%m-%d}",
                         key=_key("unit", unit_id, f"start:{touchpoint}:{event.get('id')}", attempt))

    def resume(self, touchpoint: str, *, journey_id: str, pointer: str, mode: str, label: str,
               customer_id: str | None, continuation: str, due: datetime | None = None,
               unit_id: str | None = None, attempt: int = 0) -> dict:
        due = due or clock.now()
        return self._run(touchpoint, customer_id=customer_id, when=due,
                         parameters={"journey_id": journey_id, "resume_at": pointer, "mode": mode,
                                     "label": label, "customer_id": customer_id,
                                     "unit_id": unit_id},
                         name=f"{label} · {due:%Y-%m-%d %H:%M}",
                         key=_key("unit", unit_id, f"resume:{continuation}", attempt))

    def redrive(self, touchpoint: str, *, journey_id: str, label: str, customer_id: str | None,
                unit_id: str, attempt: int = 0, fresh: bool = False) -> dict:
        return self._run(touchpoint, customer_id=customer_id,
                         parameters={"label": label, "customer_id": customer_id,
                                     "unit_id": unit_id},
                         name=f"{label} · re-drive {attempt}" if attempt or not fresh else label,
                         key=_key("redrive", unit_id, unit_id, attempt))

    def run_states(self, flow_run_ids: list[str]) -> dict[str, dict]:
        """{run id: {"type": "RUNNING", "name": "Running", "since": aware datetime}}; a run
        that Prefect does not know is absent."""
        import uuid

        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        ids = sorted({i for i in flow_run_ids if i})
        if not ids:
            return {}
        states: dict[str, dict] = {}
        with get_client(sync_client=True) as client:
            for chunk in range(0, len(ids), 200):
                runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                    id=FlowRunFilterId(any_=[uuid.UUID(i) for i in ids[chunk:chunk + 200]])),
                    limit=200)
                for run in runs:
                    if run.state is not None:
                        states[str(run.id)] = {"type": run.state.type.value,
                                               "name": run.state.name,
                                               "since": run.state.timestamp}
        return states

    def crash(self, flow_run_id: str, message: str) -> None:
        from prefect.client.orchestration import get_client
        from prefect.states import Crashed

        with get_client(sync_client=True) as client:
            client.set_flow_run_state(flow_run_id, Crashed(message=message), force=True)
