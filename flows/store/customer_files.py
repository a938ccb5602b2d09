"""Reading customer files: .csv (comma, semicolon or tab separated) and .json, row by row, each
row with the line it came from, so an import can say where a bad row is.

Files are read incrementally (:class:`CustomerFile`): memory stays flat whatever the size of the
file, and the SHA-256 of the bytes read is known once the rows are. A JSON file is a list of
customer objects, or an object whose ``customers`` key holds that list; it is decoded one item
at a time (``json.JSONDecoder.raw_decode`` over a sliding buffer), with the same messages and
positions as ``json.loads`` would give for the whole document.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Self

from flows.errors import NotFoundError, TouchpointsError
from flows.store.customer_checks import ALIASES, FIELDS, REQUIRED, SPECIAL

#: bytes read from the file at a time, and characters of JSON decoded at a time
READ_SIZE = 1 << 20


@dataclass(frozen=True, slots=True)
class SourceRow:
    """One row read from a file or an API body, with where it came from. ``problem`` is set
    when the row could not even be read as fields (a CSV row with too many values)."""

    index: int
    data: Any
    line: int | None = None
    item: int | None = None
    problem: str | None = None


# --------------------------------------------------------------------------- opening files
def _check_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise TouchpointsError(f"{path}: cannot import a {suffix or 'extensionless'} file",
                               hint="use a .csv file with a header line, or a .json file "
                                    "holding a list of customer objects")
    return suffix


def _open(path: Path) -> IO[bytes]:
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise NotFoundError(f"{path}: no such file", hint="check the path") from None
    except IsADirectoryError:
        raise TouchpointsError(f"{path}: is a folder, not a file") from None
    except OSError as exc:
        raise TouchpointsError(f"{path}: cannot read it: {exc.strerror}") from None


class _Hashing(io.RawIOBase):
    """A raw byte stream that hashes what is read through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = self._raw.readinto(buffer)
        if count:
            self.digest.update(memoryview(buffer)[:count])
        return count


class CustomerFile:
    """A .csv or .json customer file opened for reading, row by row::

        with CustomerFile(path) as source:
            for row in source.rows():
                ...
            source.sha256   # of every byte read

    Problems with the file as a whole (not UTF-8, not JSON, no header) raise
    :class:`TouchpointsError` from ``rows()`` when the reader gets there; problems of single
    rows are left to the import, which reports them row by row."""

    def __init__(self, path: str | Path, stream: IO[bytes] | None = None) -> None:
        self.path = Path(path)
        self._suffix = _check_suffix(self.path)
        self._raw = stream if stream is not None else _open(self.path)
        self._hashing = _Hashing(self._raw)
        self._text = io.TextIOWrapper(io.BufferedReader(self._hashing, READ_SIZE),
                                      encoding="utf-8-sig", newline="")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._raw.close()

    @property
    def sha256(self) -> str:
        """The SHA-256 of the bytes read so far (all of them once ``rows()`` is exhausted)."""
        return self._hashing.digest.hexdigest()

    def rows(self) -> Iterator[SourceRow]:
        reader = _read_csv if self._suffix == ".csv" else _read_json
        try:
            yield from reader(self.path, self._text)
        except UnicodeDecodeError:
            raise _not_utf8(self.path, self._raw) from None


def _not_utf8(path: Path, raw: IO[bytes]) -> TouchpointsError:
    """Where the file stops being UTF-8 (read again: this is the rare, failing case)."""
    raw.seek(0)
    data = raw.read()
    line = 1
    try:
        data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
    return TouchpointsError(f"{path}:{line}: the file is not UTF-8 text",
                            hint="save it as UTF-8 (in Excel: 'CSV UTF-8')")


# --------------------------------------------------------------------------- whole files
def read_file(path: Path) -> bytes:
    """The bytes of a customer file, after checking it is a .csv or .json file that exists."""
    _check_suffix(path)
    with _open(path) as raw:
        return raw.read()


def parse_rows(path: Path, raw: bytes) -> list[SourceRow]:
    """Every row of a customer file already in memory (see :class:`CustomerFile`)."""
    with CustomerFile(path, io.BytesIO(raw)) as source:
        return list(source.rows())


# --------------------------------------------------------------------------- CSV
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


def _first_line(lines: Iterator[str]) -> tuple[list[str], str]:
    """The physical lines up to the first that is not blank, and that line's text."""
    seen: list[str] = []
    for physical in lines:
        seen.append(physical)
        for part in physical.splitlines():
            if part.strip():
                return seen, part
    return seen, ""


def _read_csv(path: Path, text: IO[str]) -> Iterator[SourceRow]:
    lines = iter(text)
    peeked, header_line = _first_line(lines)
    delimiter = _delimiter(header_line)
    reader = csv.reader(itertools.chain(peeked, lines), delimiter=delimiter)
    header: list[str] | None = None
    keep: list[bool] = []
    index = 0
    last_line = 0
    try:
        for cells in reader:
            line, last_line = last_line + 1, reader.line_num
            values = [cell.strip() for cell in cells]
            if not any(values):
                continue
            if header is None:
                header = _csv_header(path, line, cells)
                keep = [name in FIELDS or name in SPECIAL or name in ALIASES for name in header]
                continue
            if len(cells) > len(header):
                yield SourceRow(index=index, data=None, line=line, problem=(
                    f"has {len(cells)} values but the header names {len(header)} columns "
                    f"(a {_DELIMITER_NAMES[delimiter]} inside a value needs quotes)"))
                index += 1
                continue
            if len(values) < len(header):
                values += [""] * (len(header) - len(values))
            data = {name: value for name, wanted, value in zip(header, keep, values, strict=True)
                    if wanted or value}
            yield SourceRow(index=index, data=data, line=line)
            index += 1
    except csv.Error as exc:
        raise TouchpointsError(f"{path}:{reader.line_num}: not valid CSV: {exc}",
                               hint="check the quotes on that line") from None
    if header is None:
        raise TouchpointsError(f"{path}: the file is empty",
                               hint="the first line names the columns: " + ",".join(FIELDS))


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


# --------------------------------------------------------------------------- JSON
_decoder = json.JSONDecoder()
_WS = " \t\r\n"
_AFTER_WORD = re.compile(r"[\s,\]}:\[{\"]")
_NOT_A_LIST = ("expected a list of customers",
               'write [{"id": ...}, ...] or {"customers": [{"id": ...}]}')


class _JsonStream:
    """A JSON document read a chunk at a time: ``buf[at:]`` is what is left to decode, and
    ``buf`` starts on line ``line``, ``column`` characters into it."""

    def __init__(self, path: Path, text: IO[str]) -> None:
        self.path, self._text = path, text
        self.buf, self.at, self.eof = "", 0, False
        self.line, self.column = 1, 0
        self._mark, self._mark_line = 0, 1  # a position in buf whose line is known

    def more(self) -> bool:
        """Read the next chunk (dropping what is decoded already); False at the end."""
        if self.eof:
            return False
        chunk = self._text.read(READ_SIZE)
        if not chunk:
            self.eof = True
            return False
        if self.at:
            newline = self.buf.rfind("\n", 0, self.at)
            self.column = (self.at - newline - 1) if newline >= 0 else self.column + self.at
            self.line = self._line_at(self.at)
            self.buf, self.at, self._mark, self._mark_line = self.buf[self.at:], 0, 0, self.line
        self.buf += chunk
        return True

    def _line_at(self, pos: int) -> int:
        if pos < self._mark:
            return self.line + self.buf.count("\n", 0, pos)
        self._mark_line += self.buf.count("\n", self._mark, pos)
        self._mark = pos
        return self._mark_line

    def item_line(self) -> int:
        return self._line_at(self.at)

    def error(self, message: str, pos: int | None = None) -> TouchpointsError:
        """``FILE:LINE:COL: not valid JSON: message``, as ``json.loads`` of the whole file."""
        pos = self.at if pos is None else pos
        line = self.line + self.buf.count("\n", 0, pos)
        newline = self.buf.rfind("\n", 0, pos)
        column = pos - newline if newline >= 0 else self.column + pos + 1
        return TouchpointsError(f"{self.path}:{line}:{column}: not valid JSON: {message}",
                                hint="check the JSON near that place")

    def peek(self) -> str:
        """The next character that is not white space ("" at the end), without taking it."""
        while True:
            buf, at = self.buf, self.at
            while at < len(buf) and buf[at] in _WS:
                at += 1
            self.at = at
            if at < len(buf):
                return buf[at]
            if not self.more():
                return ""

    def take(self, char: str, message: str) -> None:
        if self.peek() != char:
            raise self.error(message)
        self.at += 1

    def value(self) -> Any:
        """The JSON value that starts here (after ``peek``)."""
        if self.buf[self.at:self.at + 1] not in ("{", "[", '"'):
            # a number or a word: it ends only where something else begins
            while not _AFTER_WORD.search(self.buf, self.at) and self.more():
                pass
        while True:
            try:
                value, end = _decoder.raw_decode(self.buf, self.at)
            except json.JSONDecodeError as exc:
                if self.more():  # perhaps only cut off by the end of the chunk
                    continue
                raise self.error(exc.msg, exc.pos) from None
            self.at = end
            return value


def _read_json(path: Path, text: IO[str]) -> Iterator[SourceRow]:
    doc = _JsonStream(path, text)
    first = doc.peek()
    streamed = False
    if first == "[":
        yield from _json_items(doc)
        streamed = True
    elif first == "{":
        streamed = yield from _json_object(doc)
    else:
        doc.value()
    if doc.peek():
        raise doc.error("Extra data")
    if not streamed:
        raise TouchpointsError(f"{path}: {_NOT_A_LIST[0]}", hint=_NOT_A_LIST[1])


def _json_object(doc: _JsonStream):
    """The keys of the top object, streaming the items of its ``customers`` list; whether
    there was such a list."""
    streamed = False
    doc.take("{", "Expecting value")
    if doc.peek() == "}":
        doc.at += 1
        return False
    while True:
        if doc.peek() != '"':
            raise doc.error("Expecting property name enclosed in double quotes")
        key = doc.value()
        doc.take(":", "Expecting ':' delimiter")
        if key == "customers" and streamed:
            raise TouchpointsError(f"{doc.path}: the key customers appears twice",
                                   hint="keep one list of customers")
        if key == "customers" and doc.peek() == "[":
            yield from _json_items(doc)
            streamed = True
        else:
            doc.peek()
            doc.value()
        following = doc.peek()
        if following == "}":
            doc.at += 1
            return streamed
        if following != ",":
            raise doc.error("Expecting ',' delimiter")
        doc.at += 1


def _json_items(doc: _JsonStream) -> Iterator[SourceRow]:
    doc.take("[", "Expecting value")
    if doc.peek() == "]":
        doc.at += 1
        return
    index = 0
    while True:
        if not doc.peek():
            raise doc.error("Expecting value")
        line = doc.item_line()
        yield SourceRow(index=index, data=doc.value(), line=line, item=index + 1)
        index += 1
        following = doc.peek()
        if following == "]":
            doc.at += 1
            return
        if following != ",":
            raise doc.error("Expecting ',' delimiter")
        doc.at += 1
        doc.peek()
