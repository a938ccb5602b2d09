"""`touchpoints check`: every error in touchpoints.yaml and its templates, in one pass.

Reading happens in three stages, each keeping what it could parse so that the next can still
report its own errors: the YAML (:mod:`flows.config.yamlload`), the structure (the models, with
the steps parsed leniently through the registry), then the references and templates of each
touch point (:mod:`flows.config.references`). The checker never raises for bad input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from flows.config.definitions import remember as remember_definitions
from flows.config.contractcheck import Contracts, declared_fields, example_problems
from flows.config.contracts import check_data
from flows.config.exitcheck import check_exit_when
from flows.config.diagnostics import Diagnostic, Positions, Problem, locate
from flows.config.eventtypes import engine_event_problems
from flows.config.models import DEFER_STEPS, ENGINE_EVENTS, ConfigFile, Defaults, Entry, TouchPoint
from flows.config.parsing import parse_steps
from flows.config.references import Catalogue, TouchPointChecker
from flows.config.sandbox_check import check_sandbox
from flows.config.samples import company_sample
from flows.config.triggers import Audience, Trigger
from flows.config.validation import problems_from_error
from flows.config.yamlfast import read_yaml
from flows.config.yamlload import YamlDocument
from flows.errors import ConfigError
from flows.templating import Renderer

_TRIGGER = TypeAdapter(Trigger)
_AUDIENCE = TypeAdapter(Audience)


@dataclass
class CheckResult:
    diagnostics: list[Diagnostic]
    config: ConfigFile | None = None

    @property
    def ok(self) -> bool:
        return not self.diagnostics


def check(path: str | Path) -> list[Diagnostic]:
    """Every problem of the file at ``path`` (and its templates), sorted by line and column."""
    return check_file(path).diagnostics


def load_config(path: str | Path) -> ConfigFile:
    """The parsed file; raises :class:`flows.errors.ConfigError` (with every diagnostic) if
    `touchpoints check` would report anything."""
    result = check_file(path)
    if result.diagnostics or result.config is None:
        raise ConfigError(result.diagnostics)
    return result.config


def check_file(path: str | Path) -> CheckResult:
    path = Path(path)
    label = str(path)
    text, problem = _read(path)
    if problem is not None:
        return CheckResult([locate(problem, file=label, positions=Positions())])
    return check_text(text, file=label, templates_dir=path.parent / "templates")


def check_text(text: str, *, file: str, templates_dir: Path, full: bool = True) -> CheckResult:
    """Check YAML source as if it were the file ``file`` with templates under ``templates_dir``.
    ``full=False`` is the fast parse for runs: the structure and steps only, without the
    references and template checks that `touchpoints check` and `serve` run."""
    return check_document(read_yaml(text), file=file, templates_dir=templates_dir, full=full)


def check_document(doc: YamlDocument, *, file: str, templates_dir: Path,
                   full: bool = True) -> CheckResult:
    """:func:`check_text` of YAML already read (``doc.positions`` may be empty)."""
    problems = list(doc.problems)
    config = None
    if not problems:
        if doc.data is None:
            problems.append(Problem((), "the file is empty",
                                    hint="start with 'version: 1', then defaults and touchpoints"))
        elif not isinstance(doc.data, dict):
            problems.append(Problem((), "the file must be a mapping of sections "
                                        "(version, defaults, categories, teams, events, "
                                        "touchpoints)"))
        else:
            try:
                config = _Checker(doc.data, templates_dir=templates_dir, problems=problems,
                                  full=full).run()
            except Exception as exc:  # noqa: BLE001 - a bug must show as a diagnostic, not a traceback
                problems.append(Problem((), f"internal error while checking: "
                                            f"{type(exc).__name__}: {exc}",
                                        hint="please report this with the file"))
    diagnostics = sorted({locate(p, file=file, positions=doc.positions) for p in problems})
    if config is not None and not diagnostics:
        remember_definitions(config, doc.data)
    return CheckResult(diagnostics, config if not diagnostics else None)


def _read(path: Path) -> tuple[str, Problem | None]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return "", Problem((), "file not found",
                           hint="run in the folder that holds touchpoints.yaml, or pass -f FILE")
    except IsADirectoryError:
        return "", Problem((), "is a directory, not a file", hint="pass the YAML file with -f FILE")
    except OSError as exc:
        return "", Problem((), f"cannot read the file: {exc.strerror or exc}")
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        return "", Problem((), "not a UTF-8 text file", where=(line, col),
                           hint="touchpoints.yaml must be plain text saved as UTF-8")


@dataclass
class _Checker:
    data: dict[Any, Any]
    templates_dir: Path
    problems: list[Problem]
    steps: dict[Any, list[Any]] = field(default_factory=dict)
    full: bool = True

    def run(self) -> ConfigFile | None:
        config = self._structure()
        catalogue = self._catalogue(config) if self.full else None
        for name, raw in self._section("touchpoints").items():
            if catalogue is None or not isinstance(raw, dict):
                continue
            trigger, audience, entry = self._pieces(config, name, raw)
            checker = TouchPointChecker(name=name, catalogue=catalogue, problems=self.problems)
            checker.run(trigger=trigger, audience=audience, entry=entry,
                        steps=self.steps.get(name, []))
            check_exit_when(checker, raw, audience)
            check_sandbox(name=name, trigger=trigger, audience=audience, entry=entry,
                          steps=self.steps.get(name, []), templates_dir=self.templates_dir,
                          problems=self.problems)
        if config is None or self.problems:
            return None
        for name, touchpoint in config.touchpoints.items():
            touchpoint.steps = self.steps[name]
        return config

    def _section(self, name: str) -> dict[Any, Any]:
        value = self.data.get(name)
        return value if isinstance(value, dict) else {}

    def _structure(self) -> ConfigFile | None:
        """Validate the models (steps aside), then parse every touch point's steps."""
        config = None
        try:
            config = ConfigFile.model_validate(self.data, context={DEFER_STEPS: True})
        except ValidationError as exc:
            self.problems.extend(problems_from_error(exc, root=ConfigFile))
        for name, raw in self._section("touchpoints").items():
            if isinstance(raw, dict) and "steps" in raw:
                self.steps[name] = parse_steps(raw["steps"], loc=("touchpoints", name, "steps"),
                                               problems=self.problems)
        return config

    def _catalogue(self, config: ConfigFile | None) -> Catalogue:
        examples: dict[str, dict[str, Any]] = {}
        for name, spec in self._section("events").items():
            example = spec.get("example") if isinstance(spec, dict) else None
            examples[str(name)] = dict(example) if isinstance(example, dict) else {}
        for name, spec in ENGINE_EVENTS.items():  # declared without a fitting example: the
            if not examples.get(name) or check_data(spec.fields, examples[name])[1]:  # built-in
                examples[name] = dict(spec.example)
        if config is None:  # else the models said it already
            self._engine_events()
        defaults = config.defaults if config is not None else _quiet(
            Defaults.model_validate, self.data.get("defaults"))
        fields = declared_fields(config, self._section("events"))
        self.problems.extend(example_problems(self._section("events"), fields))
        return Catalogue(teams=set(self._section("teams")),
                         categories=set(self._section("categories")),
                         examples=examples, company=company_sample(defaults),
                         renderer=_check_renderer(self.templates_dir),
                         contracts=Contracts.build(examples, fields))

    def _engine_events(self) -> None:
        """A declaration of one of the engine's own events that breaks its built-in contract."""
        seen = {(p.loc, p.message) for p in self.problems}
        for name, raw in self._section("events").items():
            for loc, message, hint in engine_event_problems(str(name), raw):
                problem = Problem(("events", name, *loc), message, hint=hint)
                if (problem.loc, problem.message) not in seen:
                    self.problems.append(problem)

    def _pieces(self, config: ConfigFile | None, name: Any, raw: dict) -> tuple[Any, Any, Any]:
        """The trigger, audience and entry of a touch point, each None if it did not parse."""
        touchpoint = config.touchpoints.get(name) if config is not None else None
        if touchpoint is None:
            touchpoint = _quiet(TouchPoint.model_validate, raw, context={DEFER_STEPS: True})
        if touchpoint is not None:
            return touchpoint.trigger, touchpoint.audience, touchpoint.entry
        return (_quiet(_TRIGGER.validate_python, raw.get("trigger")),
                _quiet(_AUDIENCE.validate_python, raw.get("audience")),
                _quiet(Entry.model_validate, raw.get("entry", {})))


def _check_renderer(templates_dir: Path) -> Renderer:
    """The renderer of one check: each template is loaded once (no look at the file's time
    on every render: the files do not change during one check)."""
    renderer = Renderer(templates_dir)
    renderer.env.auto_reload = False
    return renderer


def _quiet(validate, value: Any, **kwargs: Any) -> Any:
    """``validate(value)``, or None if it fails (its errors are reported elsewhere)."""
    try:
        return validate(value, **kwargs)
    except (ValidationError, ValueError, TypeError):
        return None
