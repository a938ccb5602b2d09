"""What ``POST /api/events`` answers beyond storing the event: data that breaks its
contract (422 ``invalid_event_data``), the starts the entry rule will refuse (``skipped``,
never ``started``), and each event type's data schema in the OpenAPI document."""

from __future__ import annotations

from typing import Any

from flows.errors import EventDataError
from flows.web.auth import ApiError


def data_refused(exc: EventDataError) -> ApiError:
    """422 ``invalid_event_data``: each field of ``data`` that breaks the event's contract, with
    what was expected."""
    fields = [{"field": f"data.{name}", "message": f"`data.{name}`: {why}"}
              for name, why in exc.problems.items()]
    return ApiError(422, "invalid_event_data", exc.message, hint=exc.hint,
                    extra={"fields": fields})


def admitted(dispatcher, result) -> tuple[list[str], list[dict]]:
    """The touch points started, and those not started with the reason. The service's outbox
    answers before the journeys are entered, so a start the entry rule will refuse is told
    apart here (never answered as started)."""
    from flows.engine.intake import entry_refusal

    started: list[str] = []
    skipped = [{"touchpoint": s.get("touchpoint"), "reason": s.get("reason")}
               for s in result.skipped if isinstance(s, dict)]
    for start in result.started:
        if not isinstance(start, dict):
            started.append(str(start))
            continue
        reason = None
        if dispatcher.outbox and not result.duplicate:
            reason = entry_refusal(dispatcher.engine, touchpoint=start["touchpoint"],
                                   event_id=result.event_id, customer_id=start.get("customer_id"))
        if reason:
            skipped.append({"touchpoint": start["touchpoint"], "reason": reason})
        else:
            started.append(start["touchpoint"])
    return started, skipped


def document_event_data(app) -> None:
    """The OpenAPI document holds the data schema of every catalogued event type
    (``components.schemas["EventData.<type>"]``), and the body of ``POST /api/events`` says
    which ``data`` goes with which ``type``. Read from the app's engine when first asked."""
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = plain()
        config = getattr(getattr(app.state, "engine", None), "config", None)
        if config is not None:
            _add_event_data(schema, config)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi


def _add_event_data(schema: dict[str, Any], config) -> None:
    from flows.config.schema import event_data_schemas

    data = event_data_schemas(config)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, item in data.items():
        components[f"EventData.{name}"] = item
    body = (schema.get("paths", {}).get("/api/events", {}).get("post", {})
            .get("requestBody", {}).get("content", {}).get("application/json"))
    if body is not None and data:
        body["schema"] = {**body["schema"], "oneOf": [
            {"properties": {"type": {"const": name},
                            "data": {"$ref": f"#/components/schemas/EventData.{name}"}}}
            for name in data] + [{"properties": {"type": {"not": {"enum": list(data)}}}}]}
