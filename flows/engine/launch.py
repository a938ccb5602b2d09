"""Launchers run journeys: in this process (the CLI), or as Prefect deployment runs (serve)."""

from __future__ import annotations

from typing import Any

from flows.engine.compiler import compile_touchpoint
from flows.engine.core import current_engine


def run_tags(touchpoint: str, customer_id: str | None) -> list[str]:
    return [f"touchpoint:{touchpoint}"] + ([f"customer:{customer_id}"] if customer_id else [])


class InProcessLauncher:
    """Runs each flow here and now, against the Prefect API the process is configured for."""

    def __init__(self) -> None:
        self.results: list[dict[str, Any]] = []

    def _flow(self, touchpoint: str):
        return compile_touchpoint(current_engine().touchpoint(touchpoint))

    def start(self, touchpoint: str, *, event: dict, customer_id: str | None, label: str) -> Any:
        from prefect import tags

        with tags(*run_tags(touchpoint, customer_id)):
            result = self._flow(touchpoint)(event=event, customer_id=customer_id, label=label)
        self.results.append({"touchpoint": touchpoint, "customer_id": customer_id, **(result or {})})
        return result

    def resume(self, touchpoint: str, *, journey_id: str, pointer: str, mode: str, label: str,
               customer_id: str | None, continuation: str) -> Any:
        from prefect import tags

        with tags(*run_tags(touchpoint, customer_id)):
            result = self._flow(touchpoint)(journey_id=journey_id, resume_at=pointer, mode=mode,
                                            label=f"{label} · resume", customer_id=customer_id)
        self.results.append({"touchpoint": touchpoint, "journey_id": journey_id, **(result or {})})
        return result
