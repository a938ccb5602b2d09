"""Reading customer files: .csv (comma, semicolon or tab separated) and .json, each row with
the line it came from, so an import can say where a bad row is."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.errors import NotFoundError, TouchpointsError
from flows.store.customer_checks import ALIASES, FIELDS, REQUIRED, SPECIAL


@dataclass(frozen=True)
class SourceRow:
    """One row read from a file or an API body, with where it came from. ``problem`` is set
    when the row could not even be read as fields (a CSV row with too many values)."""

    index: int
    data: Any
    line: int | None = None
    item: int | None = None
    problem: str | None = None


# --------------------------------------------------------------------------- reading files
def read_file(path: Path) -> bytes:
    """The bytes of a customer file, after checking it is a .csv or .json file that exists."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise TouchpointsError(f"{path}: cannot import a {suffix or 'extensionless'} file",
                               hint="use a .csv file with a header line, or a .json file "
                                    "holding a list of customer objects")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"{path}: no such file", hint="check the path") from None
    except OSError as exc:
        raise TouchpointsError(f"{path}: cannot read it: {exc.strerror}") from None


def parse_rows(path: Path, raw: bytes) -> list[SourceRow]:
    """The rows of a .csv or .json customer file. Problems with the file as a whole (not
    UTF-8, not JSON, no header) raise; problems of single rows are left to the import, which
    reports them row by row."""
    text = _decode(path, raw)
    return _read_csv(path, text) if path.suffix.lower() == ".csv" else _read_json(path, text)


def _decode(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise TouchpointsError(f"{path}:{line}: the file is not UTF-8 text",
                               hint="save it as UTF-8 (in Excel: 'CSV UTF-8')") from None


def _column(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}


def _delimiter(header_line: str) -> str:
    """Comma, unless the header line has none and is split by semicolons (Excel in some
    locales) or tabs."""
    if "," in header_line:
        return ","
    for candidate in (";", "\t"):
        if candidate in header_line:
            return candidate
    return ","


def _read_csv(path: Path, text: str) -> list[SourceRow]:
    delimiter = _delimiter(next((ln for ln in text.splitlines() if ln.strip()), ""))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header: list[str] | None = None
    rows: list[SourceRow] = []
    last_line = 0
    try:
        for cells in reader:
            line, last_line = last_line + 1, reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            if header is None:
                header = _csv_header(path, line, cells)
                continue
            if len(cells) > len(header):
                rows.append(SourceRow(index=len(rows), data=None, line=line, problem=(
                    f"has {len(cells)} values but the header names {len(header)} columns "
                    f"(a {_DELIMITER_NAMES[delimiter]} inside a value needs quotes)")))
                continue
            data = {}
            padded = cells + [""] * (len(header) - len(cells))
            for name, cell in zip(header, padded, strict=True):
                value = cell.strip()
                if name in FIELDS or name in SPECIAL or name in ALIASES or value:
                    data[name] = value
            rows.append(SourceRow(index=len(rows), data=data, line=line))
    except csv.Error as exc:
        raise TouchpointsError(f"{path}:{reader.line_num}: not valid CSV: {exc}",
                               hint="check the quotes on that line") from None
    if header is None:
        raise TouchpointsError(f"{path}: the file is empty",
                               hint="the first line names the columns: " + ",".join(FIELDS))
    return rows


def _csv_header(path: Path, line: int, cells: list[str]) -> list[str]:
    header = [_column(cell) for cell in cells]
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise TouchpointsError(
            f"{path}:{line}: the header has no column {', '.join(missing)}",
            hint="the first line names the columns, e.g. " + ",".join(FIELDS) + ",unsubscribed")
    seen = set()
    for name in header:
        if name and name in seen:
            raise TouchpointsError(f"{path}:{line}: the header names column {name} twice")
        seen.add(name)
    if "" in header:
        raise TouchpointsError(f"{path}:{line}: the header has a column without a name",
                               hint="name every column, or delete the empty one")
    if "attributes" in header:
        raise TouchpointsError(f"{path}:{line}: a CSV file cannot have an attributes column",
                               hint="every column that is not a customer field is kept as an "
                                    "attribute already: add one column per attribute")
    return header


def _read_json(path: Path, text: str) -> list[SourceRow]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TouchpointsError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}",
                               hint="check the JSON near that place") from None
    if isinstance(doc, Mapping) and isinstance(doc.get("customers"), list):
        items = doc["customers"]
    elif isinstance(doc, list):
        items = doc
    else:
        raise TouchpointsError(f"{path}: expected a list of customers",
                               hint='write [{"id": ...}, ...] or {"customers": [{"id": ...}]}')
    lines = _json_item_lines(text, len(items))
    return [SourceRow(index=i, data=item, line=lines[i] if lines else None, item=i + 1)
            for i, item in enumerate(items)]


_decoder = json.JSONDecoder()
_WS = " \t\r\n"


def _skip(text: str, at: int) -> int:
    while at < len(text) and text[at] in _WS:
        at += 1
    return at


def _json_item_lines(text: str, expected: int) -> list[int] | None:
    """The line on which each item of the customer list starts (best effort: None when the
    document is shaped in a way this small scanner does not follow)."""
    try:
        at = _skip(text, 0)
        if text[at] == "{":
            at = _find_key(text, at, "customers")
            if at is None:
                return None
        offsets = _array_items(text, at)
    except (IndexError, ValueError):
        return None
    if len(offsets) != expected:
        return None
    lines, line, done = [], 1, 0
    for offset in offsets:
        line += text.count("\n", done, offset)
        done = offset
        lines.append(line)
    return lines


def _find_key(text: str, at: int, wanted: str) -> int | None:
    at = _skip(text, at + 1)
    while text[at] != "}":
        key, at = _decoder.raw_decode(text, at)
        at = _skip(text, at)
        if text[at] != ":":
            raise ValueError("expected ':'")
        at = _skip(text, at + 1)
        if key == wanted:
            return at
        _, at = _decoder.raw_decode(text, at)
        at = _skip(text, at)
        if text[at] == ",":
            at = _skip(text, at + 1)
    return None


def _array_items(text: str, at: int) -> list[int]:
    if text[at] != "[":
        raise ValueError("expected '['")
    at = _skip(text, at + 1)
    offsets: list[int] = []
    while text[at] != "]":
        offsets.append(at)
        _, at = _decoder.raw_decode(text, at)
        at = _skip(text, at)
        if text[at] == ",":
            at = _skip(text, at + 1)
    return offsets
