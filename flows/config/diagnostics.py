"""What `touchpoints check` reports: problems found while reading the file, and the diagnostics
they become once they have a file, a line and a column.

A :class:`Problem` is located by its path in the YAML document (``("touchpoints", "sale",
"steps", 2, "template")``); :func:`locate` turns it into a :class:`Diagnostic` using the
positions the YAML loader recorded for every key and value.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import total_ordering
from typing import Any, Literal

Loc = tuple[str | int, ...]

DOCS_STEPS = "docs/reference.md"
DOCS_GUIDE = "docs/getting-started.md"

_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_\-]+$")


@dataclass(frozen=True)
class Problem:
    """Something wrong at ``loc``. ``at`` says whether to point at the key or the value there."""

    loc: Loc
    message: str
    hint: str | None = None
    at: Literal["key", "value"] = "value"
    docs: str | None = None
    #: an explicit (line, col), for problems the path alone cannot place (a duplicate key)
    where: tuple[int, int] | None = None


@total_ordering
@dataclass(frozen=True)
class Diagnostic:
    """One error in a file, with where it is, what is wrong and what to do about it."""

    file: str
    line: int
    col: int
    path: str
    message: str
    hint: str | None = None
    docs: str | None = None

    def _key(self) -> tuple:
        return (self.file, self.line, self.col, self.path, self.message, self.hint or "")

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Diagnostic):
            return NotImplemented
        return self._key() < other._key()

    def headline(self) -> str:
        """``FILE:LINE:COL: path: message`` (the path is left out for whole-file problems)."""
        where = f"{self.file}:{self.line}:{self.col}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"

    def format(self, *, hint: bool = True) -> str:
        """The headline, then an indented hint line (with the docs page) when there is one."""
        text = self.headline()
        if not hint:
            return text
        if self.hint:
            text += f"\n  hint: {self.hint}" + (f" (see {self.docs})" if self.docs else "")
        elif self.docs:
            text += f"\n  see {self.docs}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "col": self.col, "path": self.path,
                "message": self.message, "hint": self.hint, "docs": self.docs}


def dotted(loc: Iterable[str | int]) -> str:
    """``("touchpoints", "renewal", "steps", 2, "template")`` → ``touchpoints.renewal.steps[2].template``.

    Keys that are not plain names (e.g. event types with dots) are written ``['contract.signed']``.
    """
    out = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(str(part)):
            out += f".{part}" if out else str(part)
        else:
            out += f"[{str(part)!r}]"
    return out


def did_you_mean(word: Any, choices: Iterable[Any], *, fallback: str | None = None) -> str | None:
    """``did you mean 'timeout'?`` for the closest choice, else ``fallback``."""
    names = [str(c) for c in choices]
    close = difflib.get_close_matches(str(word), names, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return fallback


def one_of(choices: Iterable[Any]) -> str:
    names = sorted(str(c) for c in choices)
    return "one of: " + ", ".join(names) if names else "none are declared"


@dataclass
class Positions:
    """Line and column (1-based) of every key and value of a YAML document, by path."""

    keys: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    values: dict[Loc, tuple[int, int]] = field(default_factory=dict)

    def find(self, loc: Loc, at: str = "value") -> tuple[int, int]:
        """Where ``loc`` is; if it is not in the file (a missing or defaulted field), where its
        nearest ancestor is, preferring the ancestor's key."""
        first, second = (self.keys, self.values) if at == "key" else (self.values, self.keys)
        if loc in first:
            return first[loc]
        if loc in second:
            return second[loc]
        parent = loc[:-1]
        while parent:
            if parent in self.keys:
                return self.keys[parent]
            if parent in self.values:
                return self.values[parent]
            parent = parent[:-1]
        return (1, 1)


def locate(problem: Problem, *, file: str, positions: Positions) -> Diagnostic:
    line, col = problem.where or positions.find(problem.loc, problem.at)
    return Diagnostic(file=file, line=line, col=col, path=dotted(problem.loc),
                      message=problem.message, hint=problem.hint,
                      docs=problem.docs or docs_for(problem.loc))


def docs_for(loc: Loc) -> str:
    """Step problems point at the step reference, everything else at the guide."""
    return DOCS_STEPS if "steps" in loc[2:] and loc[:1] == ("touchpoints",) else DOCS_GUIDE
