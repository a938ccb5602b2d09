"""The one exception hierarchy. Every error shown to a user says what to do next."""

from __future__ import annotations

DOCS = "docs/"


class TouchpointsError(Exception):
    """Base class. ``hint`` tells the user what to do next; ``exit_code`` is what the CLI returns."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class ConfigError(TouchpointsError):
    """touchpoints.yaml or a template is invalid. Carries every diagnostic found in one pass."""

    def __init__(self, diagnostics: list, *, message: str | None = None) -> None:
        self.diagnostics = sorted(diagnostics)
        text = message or "\n".join(d.format() for d in self.diagnostics)
        super().__init__(text, hint="fix the lines above, then run `touchpoints check`")


class TemplateError(TouchpointsError):
    """A template failed to render (missing variable, syntax error, unsafe header)."""


class LimitError(TemplateError):
    """A template or expression would build more than the sandbox allows: a huge text, list or
    number, too many loop steps, or a macro or include that calls itself without end."""


class ExpressionError(TouchpointsError):
    """An expression in a filter, condition or title is invalid or failed to evaluate."""


class NotFoundError(TouchpointsError):
    """A customer, touch point, task or journey that was asked for does not exist."""


class ImportRowsError(TouchpointsError):
    """Some rows of an import were rejected (the good rows were kept)."""


class DeliveryError(TouchpointsError):
    """Email could not be handed to the SMTP server."""

    def __init__(self, message: str, *, code: int | None = None, permanent: bool = False,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code
        self.permanent = permanent


class StoreError(TouchpointsError):
    """The database could not be reached or is not migrated."""


class AuditIntegrityError(TouchpointsError):
    """`touchpoints audit verify` found an edited, deleted or reordered audit row."""


class ServiceError(TouchpointsError):
    """The running service (`touchpoints serve`) failed or could not be reached."""


class EventDataError(TouchpointsError):
    """An event's data does not satisfy its contract in the events: catalogue."""

    def __init__(self, event_type: str, problems: dict[str, str]) -> None:
        self.event_type = event_type
        self.problems = problems
        lines = "; ".join(f"{name}: {why}" for name, why in problems.items())
        super().__init__(f"{event_type} data refused: {lines}",
                         hint=f"send the fields declared under events.{event_type}.fields "
                              "in touchpoints.yaml")
