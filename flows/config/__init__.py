"""touchpoints.yaml: loading it safely, its models, `touchpoints check` and the JSON Schema.

* :func:`load_config` parses the file and raises :class:`flows.errors.ConfigError` carrying
  every diagnostic when anything is wrong;
* :func:`load_config_fast` is the fast parse for runs (no template check), cached per process
  and per file version;
* :func:`check` returns those diagnostics (``FILE:LINE:COL: path: message``) without raising;
* :func:`build_schema` is the JSON Schema of the file, with every registered step kind.
"""

from flows.config.checker import CheckResult, check, check_file, check_text, load_config
from flows.config.diagnostics import Diagnostic
from flows.config.loading import forget_loaded, load_config_fast
from flows.config.models import (
                                 ENGINE_EVENTS,
                                 Category,
                                 ConfigFile,
                                 Defaults,
                                 EscalationLevel,
                                 EventType,
                                 SendWindow,
                                 Team,
                                 TouchPoint,
                                 iter_steps,
)
from flows.config.schema import build_schema
from flows.config.triggers import (
                                 CountTrigger,
                                 DateTrigger,
                                 Entry,
                                 EventTrigger,
                                 InactivityTrigger,
                                 ScheduleTrigger,
                                 Segment,
)

__all__ = [
                                 "ENGINE_EVENTS",
                                 "Category",
                                 "CheckResult",
                                 "ConfigFile",
                                 "CountTrigger",
                                 "DateTrigger",
                                 "Defaults",
                                 "Diagnostic",
                                 "Entry",
                                 "EscalationLevel",
                                 "EventTrigger",
                                 "EventType",
                                 "InactivityTrigger",
                                 "ScheduleTrigger",
                                 "Segment",
                                 "SendWindow",
                                 "Team",
                                 "TouchPoint",
                                 "build_schema",
                                 "check",
                                 "check_file",
                                 "check_text",
                                 "iter_steps",
                                 "forget_loaded",
                                 "load_config",
                                 "load_config_fast",
]
