"""Finding and calling a running service (`touchpoints serve`), and `touchpoints cancel`.

``touchpoints serve`` writes ``<data_dir>/serve.json`` with :func:`write_service_info` when it
is up, and removes it with :func:`remove_service_info` when it stops. Commands that send events
call :func:`emit_remote` first: with a service running, the event is posted to its API (so the
service's launcher schedules the Prefect runs), otherwise they handle it in process.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import typer

from flows.cli._common import cli_actor, out
from flows.cli._common import settings as cli_settings
from flows.errors import ServiceError, TouchpointsError
from flows.settings import Settings

STATE_FILE = "serve.json"
API_KEY_ENV = "TOUCHPOINTS_API_KEY"


@dataclass
class ServiceInfo:
    """What ``serve.json`` holds about the running service."""

    pid: int
    web_url: str
    prefect_url: str | None = None
    api_key: str | None = None  # a key the service made for local commands, if any
    started_at: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServiceInfo:
        known = {f.name for f in fields(cls)} - {"extra"}
        info = cls(**{k: v for k, v in data.items() if k in known})
        info.extra = {k: v for k, v in data.items() if k not in known}
        return info

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        extra = data.pop("extra")
        return {**extra, **data}


def state_path(settings: Settings) -> Path:
    return Path(settings.data_dir) / STATE_FILE


def write_service_info(settings: Settings, info: ServiceInfo) -> Path:
    """Write serve.json atomically, readable by its owner only (it may hold an API key)."""
    from flows.private import private_dir, write_private

    path = state_path(settings)
    private_dir(path.parent)
    return write_private(path, json.dumps(info.to_dict(), indent=2))


def remove_service_info(settings: Settings, pid: int | None = None) -> None:
    """Remove serve.json (only if it is ours, when ``pid`` is given)."""
    path = state_path(settings)
    info = read_service_info(settings)
    if info is not None and pid is not None and info.pid != pid:
        return
    path.unlink(missing_ok=True)


def read_service_info(settings: Settings) -> ServiceInfo | None:
    try:
        data = json.loads(state_path(settings).read_text())
        return ServiceInfo.from_dict(data) if isinstance(data, dict) else None
    except (OSError, ValueError, TypeError):
        return None


def pid_alive(pid: int) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    except OSError:
        return False
    return True


def healthy(web_url: str, timeout: float = 2.0) -> bool:
    import httpx

    try:
        response = httpx.get(f"{web_url.rstrip('/')}/healthz", timeout=timeout)
        return response.status_code == 200 and response.json().get("ok") is True
    except (httpx.HTTPError, ValueError, AttributeError):
        return False


def find_service(settings: Settings, *, timeout: float = 2.0) -> ServiceInfo | None:
    """The running service, when serve.json names a live process whose /healthz answers."""
    info = read_service_info(settings)
    if info is None or not pid_alive(info.pid) or not info.web_url:
        return None
    return info if healthy(info.web_url, timeout) else None


def prefect_api_url(info: ServiceInfo | None) -> str | None:
    """The Prefect API of the service: ``prefect_url`` is the server's address (its UI), the
    API lives under ``/api``."""
    if info is None or not info.prefect_url:
        return None
    url = info.prefect_url.rstrip("/")
    return url if url.endswith("/api") else f"{url}/api"


def api_key_for(info: ServiceInfo | None, api_key: str | None = None) -> str | None:
    return api_key or os.environ.get(API_KEY_ENV) or (info.api_key if info else None)


def _raise_for(response) -> None:
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    message = error.get("message") or f"the service answered {response.status_code}"
    hint = error.get("hint")
    if response.status_code == 401:
        hint = hint or f"set {API_KEY_ENV} to a key from `touchpoints keys create NAME`"
    if response.status_code >= 500:
        raise ServiceError(f"the service failed: {message}", hint=hint or "see its log")
    raise TouchpointsError(message, hint=hint)


def post_event(info: ServiceInfo, event: dict[str, Any], api_key: str | None, *,
               timeout: float = 30.0, attempts: int = 3) -> dict[str, Any]:
    """POST one event to the service's /api/events; returns its answer. Connection failures
    are retried (the event id makes that safe); a refusal raises TouchpointsError."""
    import httpx

    if not api_key:
        raise TouchpointsError("the running service needs an API key to accept events",
                               hint=f"set {API_KEY_ENV}=<key> (make one with "
                                    "`touchpoints keys create cli`), or use --local")
    url = f"{info.web_url.rstrip('/')}/api/events"
    headers = {"Authorization": f"Bearer {api_key}"}
    last: Exception | None = None
    for _ in range(max(1, attempts)):
        try:
            response = httpx.post(url, json=event, headers=headers, timeout=timeout)
        except httpx.TransportError as exc:
            last = exc
            continue
        if response.status_code == 202:
            return response.json()
        _raise_for(response)
    raise ServiceError(f"could not reach the service at {info.web_url}: {last}",
                       hint="check `touchpoints serve` is running, or use --local")


def emit_remote(settings: Settings, *, type: str, customer_id: str | None = None,
                data: dict[str, Any] | None = None, event_id: str | None = None,
                occurred_at: str | None = None, remote: bool | None = None,
                api_key: str | None = None) -> dict[str, Any] | None:
    """Post an event to the running service, or return None to have the caller handle it in
    process. ``remote``: True must post (ServiceError when no service runs), False never
    posts, None (default) posts when a service is found.

    The answer is ``{"event_id", "status", "duplicate", "started": [names], "resumed": [ids],
    "remote": True, "service": web_url}``."""
    if remote is False:
        return None
    info = find_service(settings)
    if info is None:
        if remote:
            raise ServiceError("no running service found",
                               hint=f"start it with `touchpoints serve` (it writes "
                                    f"{state_path(settings)}), or use --local")
        return None
    event: dict[str, Any] = {"id": event_id or f"evt-{uuid.uuid4().hex}", "type": type,
                             "data": data or {}}
    if customer_id is not None:
        event["customer_id"] = customer_id
    if occurred_at is not None:
        event["occurred_at"] = occurred_at
    answer = post_event(info, event, api_key_for(info, api_key))
    return {**answer, "remote": True, "service": info.web_url}


# ---------------------------------------------------------------------- touchpoints cancel
def _print_cancelled(results: list[dict], as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(results, default=str))
        return
    if not results:
        out.print("no active journey to cancel")
    for r in results:
        if r.get("already"):
            out.print(f"journey {r['journey_id']} ({r['touchpoint']}) was already cancelled")
            continue
        who = f" for {r['customer_id']}" if r.get("customer_id") else ""
        what = "took the customer out of" if r["scope"] == "member" else "cancelled"
        out.print(f"{what} [bold]{r['touchpoint']}[/] journey {r['journey_id']}{who}: "
                  f"{r['members']} member(s), {r['continuations']} scheduled resume(s), "
                  f"{r['tasks']} open task(s), {r['holds']} hold(s)")
        for run, state in (r.get("prefect") or {}).items():
            out.print(f"  [dim]Prefect run {run}: {state}[/]")


def register(app: typer.Typer) -> None:
    @app.command()
    def cancel(journey: str | None = typer.Option(None, "--journey", "-j", help="Journey id."),
               customer: str | None = typer.Option(None, "--customer", "-c",
                                                   help="Cancel this customer's active journeys."),
               touchpoint: str | None = typer.Option(None, "--touchpoint", "-t",
                                                     help="With --customer: only this touch point."),
               reason: str = typer.Option(..., "--reason", help="Why, for the audit log."),
               as_json: bool = typer.Option(False, "--json")) -> None:
        """Cancel a journey, or every active journey of a customer.

        Nothing more is sent; its scheduled resumes and open tasks are cancelled and its holds
        lifted. From a segment journey (an outage) only the customer is taken out."""
        from flows.engine.cancel import cancel_for_customer, cancel_journey
        from flows.engine.core import current_engine

        if bool(journey) == bool(customer):
            raise TouchpointsError("name either --journey ID or --customer ID",
                                   hint="e.g. touchpoints cancel --customer C-1001 --touchpoint sale "
                                        "--reason 'contract withdrawn'")
        if touchpoint and not customer:
            raise TouchpointsError("--touchpoint goes with --customer",
                                   hint="a journey id already names its touch point")
        s = cli_settings()
        prefect_url = prefect_api_url(find_service(s))
        engine = current_engine()
        if journey:
            results = [cancel_journey(engine, journey, actor=cli_actor(), reason=reason,
                                      prefect_api_url=prefect_url)]
        else:
            results = cancel_for_customer(engine, customer, touchpoint, actor=cli_actor(),
                                          reason=reason, prefect_api_url=prefect_url)
        _print_cancelled(results, as_json)
