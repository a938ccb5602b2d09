"""The customer directory: import (CSV, JSON, API), lookups, preferences and streaming.

An import keeps every good row and reports each bad one with where it is in the file and
why. It is idempotent: the same file twice changes nothing, and ``updated_at`` moves only when
something really changed. The ``unsubscribed`` categories of a row turn those categories off
(``source='import'``); an import never turns a category back on, that is the customer's own
choice on the preference page. Each import writes one audit row, not one per customer.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections import defaultdict
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from sqlalchemy import select
from sqlalchemy.orm import Session

from flows.errors import ImportRowsError, NotFoundError, TouchpointsError
from flows.steps.base import CustomerView
from flows.store import audit
from flows.store.tables import Customer, Preference, utcnow

if TYPE_CHECKING:  # pragma: no cover
    from flows.store.db import Store

#: columns of the customer table an import sets; other columns go into ``attributes``
FIELDS = ("id", "name", "email", "timezone", "region", "plan", "contract_start", "contract_end",
          "account_owner", "account_owner_name")
REQUIRED = ("id", "name", "email", "timezone")
SPECIAL = ("unsubscribed", "attributes")
CHUNK = 500

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ID_BAD = re.compile(r"[\s/\\?#%]")
_LOCAL = re.compile(r"^[^\s@,;:<>()\[\]\"\\.]+(\.[^\s@,;:<>()\[\]\"\\.]+)*$")
_LABEL = re.compile(r"^[^\W_]([\w-]{0,61}[^\W_])?$")
_CATEGORY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

HINT_FIX = ("fix those rows and import the file again: good rows are kept and importing twice "
            "changes nothing")


# --------------------------------------------------------------------------- field checks
def is_email(value: str) -> bool:
    """A simple, sound check of an address: one @, a dotted domain, no spaces or controls."""
    if len(value) > 320 or value.count("@") != 1:
        return False
    local, domain = value.split("@")
    if not 0 < len(local) <= 64 or not _LOCAL.match(local):
        return False
    labels = domain.split(".")
    return (len(domain) <= 253 and len(labels) >= 2 and all(_LABEL.match(label) for label in labels)
            and not labels[-1].isdigit())


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def is_timezone(value: str) -> bool:
    zones = _zones()
    if zones:
        return value in zones or value == "UTC"
    try:  # no zone list on this system: ask zoneinfo directly
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _invalid(message: str, **context: Any) -> PydanticCustomError:
    """An error whose message shows ``{value}`` as the repr of the value."""
    if "value" in context:
        context["value"] = repr(context["value"])
    return PydanticCustomError("invalid", message, context)


def _required() -> PydanticCustomError:
    return PydanticCustomError("missing", "is required")


def _blank_to_none(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        return None
    return value


class CustomerIn(BaseModel):
    """One customer as imported (CSV row, JSON object or API body), checked."""

    model_config = ConfigDict(str_strip_whitespace=True, coerce_numbers_to_str=True,
                              extra="forbid")

    id: str
    name: str
    email: str
    timezone: str
    region: str | None = None
    plan: str | None = None
    contract_start: date | None = None
    contract_end: date | None = None
    account_owner: str | None = None
    account_owner_name: str | None = None
    unsubscribed: list[str] = []
    attributes: dict[str, Any] = {}

    @field_validator("region", "plan", "account_owner", "account_owner_name", mode="before")
    @classmethod
    def _optional(cls, value: Any) -> Any:
        return _blank_to_none(value)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not value:
            raise _required()
        if len(value) > 64:
            raise _invalid("is longer than 64 characters")
        if _ID_BAD.search(value) or _CONTROL.search(value):
            raise _invalid("{value} holds a space, a slash or another character ids cannot "
                           "hold", value=value)
        return value

    @field_validator("name", "account_owner_name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value:
            raise _required()
        if len(value) > 200:
            raise _invalid("is longer than 200 characters")
        if _CONTROL.search(value):
            raise _invalid("holds a line break or another control character")
        return value

    @field_validator("email", "account_owner")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value:
            raise _required()
        if not is_email(value):
            raise _invalid("{value} is not an email address", value=value)
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        if not value:
            raise _required()
        if not is_timezone(value):
            raise _invalid("{value} is not a time zone (use a name like Europe/London)",
                           value=value)
        return value

    @field_validator("region", "plan")
    @classmethod
    def _short(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 64 or _CONTROL.search(value)):
            raise _invalid("{value} is longer than 64 characters or holds a control character",
                           value=value)
        return value

    @field_validator("contract_start", "contract_end", mode="before")
    @classmethod
    def _date(cls, value: Any) -> Any:
        value = _blank_to_none(value)
        if value is None or isinstance(value, date):
            return value
        if isinstance(value, str):
            text = value.strip()
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
                try:
                    return date.fromisoformat(text)
                except ValueError:
                    pass
        raise _invalid("{value} is not a date (use YYYY-MM-DD)", value=value)

    @field_validator("unsubscribed", mode="before")
    @classmethod
    def _split_categories(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, str):
            return [part for part in value.split(";") if part.strip()]
        return value

    @field_validator("unsubscribed")
    @classmethod
    def _categories(cls, value: list[str], info: ValidationInfo) -> list[str]:
        known = (info.context or {}).get("categories")
        names: list[str] = []
        for raw in value:
            name = raw.strip().lower()
            if not _CATEGORY.match(name):
                raise _invalid("{value} is not a category name", value=raw)
            if known is not None and name not in known:
                raise _invalid("unknown category {value} (the categories are: {known})",
                               value=raw, known=", ".join(sorted(known)))
            if name not in names:
                names.append(name)
        return names

    @model_validator(mode="after")
    def _contract(self) -> CustomerIn:
        if self.contract_start and self.contract_end and self.contract_end < self.contract_start:
            raise _invalid("contract_end {end} is before contract_start {start}",
                           end=self.contract_end.isoformat(), start=self.contract_start.isoformat())
        return self

    def columns(self) -> dict[str, Any]:
        """The values of the customer table's columns (without ``id``)."""
        values = {name: getattr(self, name) for name in FIELDS if name != "id"}
        values["attributes"] = dict(self.attributes)
        return values


def _reason(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"])
        if error["type"] == "missing":
            parts.append(f"{where} is required" if where else "a required value is missing")
        elif where:
            parts.append(f"{where}: {error['msg']}")
        else:
            parts.append(error["msg"])
    return "; ".join(parts)


def check_customer(data: Mapping[str, Any], *,
                   categories: Collection[str] | None = None) -> CustomerIn:
    """Validate one customer given as a flat mapping: the table's fields, ``unsubscribed``,
    ``attributes``, and any other keys (which go into ``attributes``). Raises ValueError with a
    reason a person can act on."""
    known = {k: v for k, v in data.items() if k in FIELDS or k in SPECIAL}
    extra = {k: v for k, v in data.items() if k not in known}
    attributes = known.get("attributes")
    if attributes is not None and not isinstance(attributes, Mapping):
        raise ValueError("attributes: must be an object")
    known["attributes"] = {**(attributes or {}), **extra}
    context = {"categories": frozenset(categories)} if categories is not None else None
    try:
        return CustomerIn.model_validate(known, context=context)
    except ValidationError as exc:
        raise ValueError(_reason(exc)) from None


# --------------------------------------------------------------------------- reports
@dataclass(frozen=True)
class RowError:
    """A rejected row: ``index`` from 0 among the rows, ``line`` in the file (CSV: the
    physical line, header included; JSON: where the object starts), ``item`` from 1 for JSON."""

    index: int
    reason: str
    line: int | None = None
    item: int | None = None
    customer_id: str | None = None

    def format(self, source: str) -> str:
        if self.line is not None and self.item is not None:
            return f"{source}:{self.line}: item {self.item}: {self.reason}"
        if self.line is not None:
            return f"{source}:{self.line}: {self.reason}"
        return f"{source}: item {self.item or self.index + 1}: {self.reason}"


@dataclass
class ImportReport:
    source: str
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        return len(self.errors)

    @property
    def received(self) -> int:
        return self.created + self.updated + self.unchanged + self.rejected

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        return (f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged, "
                f"{self.rejected} rejected")

    def problems(self) -> list[str]:
        """Each rejected row as ``FILE:LINE: reason``."""
        return [error.format(self.source) for error in self.errors]

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "received": self.received, "created": self.created,
                "updated": self.updated, "unchanged": self.unchanged, "rejected": self.rejected,
                "errors": [{"index": e.index, "line": e.line, "item": e.item,
                            "customer_id": e.customer_id, "reason": e.reason}
                           for e in self.errors]}


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
                if name in FIELDS or name in SPECIAL or value:
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


# --------------------------------------------------------------------------- importing
def import_customers(store: Store, path: str | Path, *, actor: str,
                     categories: Collection[str] | None = None) -> ImportReport:
    """Import a .csv or .json file of customers in one transaction, keeping the good rows.

    ``categories``, when given, are the email categories of touchpoints.yaml: an unsubscribe
    from any other category is a bad row (it would otherwise silently not apply)."""
    path = Path(path)
    raw = read_file(path)
    rows = parse_rows(path, raw)
    detail = {"file": str(path), "sha256": hashlib.sha256(raw).hexdigest()}
    with store.session() as session:
        return import_rows(session, rows, actor=actor, source=str(path), categories=categories,
                           detail=detail)


def import_rows(session: Session, rows: Sequence[SourceRow | Mapping[str, Any]], *, actor: str,
                source: str = "api", categories: Collection[str] | None = None,
                detail: Mapping[str, Any] | None = None) -> ImportReport:
    """Create or update many customers (the API's bulk import; files go through
    ``import_customers``). Plain mappings are numbered by their index from 0."""
    report = ImportReport(source=source)
    good: list[tuple[SourceRow, CustomerIn]] = []
    first_seen: dict[str, SourceRow] = {}
    for position, row in enumerate(rows):
        if not isinstance(row, SourceRow):
            row = SourceRow(index=position, data=row)
        customer = _check_row(row, report, categories)
        if customer is None:
            continue
        if customer.id in first_seen:
            earlier = first_seen[customer.id]
            where = (f"line {earlier.line}" if earlier.line is not None
                     else f"item {earlier.item or earlier.index + 1}")
            _reject(report, row, f"id {customer.id} appears twice (first on {where})", customer.id)
            continue
        first_seen[customer.id] = row
        good.append((row, customer))
    for start in range(0, len(good), CHUNK):
        _save_chunk(session, [c for _, c in good[start:start + CHUNK]], report, source="import")
    audit.record(session, action="customers.imported",
                 result="imported" if report.ok else "partial", actor=actor,
                 reason=f"{source}: {report.summary()}",
                 detail={**(detail or {}), "source": source, "created": report.created,
                         "updated": report.updated, "unchanged": report.unchanged,
                         "rejected": report.rejected})
    return report


def _check_row(row: SourceRow, report: ImportReport,
               categories: Collection[str] | None) -> CustomerIn | None:
    if row.problem is not None:
        _reject(report, row, row.problem, None)
        return None
    if not isinstance(row.data, Mapping):
        _reject(report, row, f"is not an object but {type(row.data).__name__}", None)
        return None
    try:
        return check_customer(row.data, categories=categories)
    except ValueError as exc:
        raw_id = row.data.get("id")
        _reject(report, row, str(exc), str(raw_id) if raw_id not in (None, "") else None)
        return None


def _reject(report: ImportReport, row: SourceRow, reason: str, customer_id: str | None) -> None:
    report.errors.append(RowError(index=row.index, reason=reason, line=row.line, item=row.item,
                                  customer_id=customer_id))


def _save_chunk(session: Session, chunk: list[CustomerIn], report: ImportReport, *,
                source: str) -> None:
    ids = [c.id for c in chunk]
    existing = {row.id: row
                for row in session.scalars(select(Customer).where(Customer.id.in_(ids)))}
    prefs: dict[str, dict[str, Preference]] = defaultdict(dict)
    for pref in session.scalars(select(Preference).where(Preference.customer_id.in_(ids))):
        prefs[pref.customer_id][pref.category] = pref
    now = utcnow()
    for customer in chunk:
        row = existing.get(customer.id)
        if row is None:
            session.add(Customer(id=customer.id, created_at=now, updated_at=now,
                                 **customer.columns()))
            _unsubscribe(session, customer, prefs[customer.id], source=source, now=now)
            report.created += 1
            continue
        changed = _update(row, customer)
        if _unsubscribe(session, customer, prefs[customer.id], source=source, now=now) or changed:
            report.updated += 1
        else:
            report.unchanged += 1
    session.flush()


def _update(row: Customer, customer: CustomerIn) -> list[str]:
    """Set the fields that differ; the names of those changed (``updated_at`` moves only then)."""
    changed = []
    for name, value in customer.columns().items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed.append(name)
    return changed


def _unsubscribe(session: Session, customer: CustomerIn, current: dict[str, Preference], *,
                 source: str, now) -> list[str]:
    changed = []
    for category in customer.unsubscribed:
        pref = current.get(category)
        if pref is None:
            pref = Preference(customer_id=customer.id, category=category, subscribed=False,
                              source=source, updated_at=now)
            session.add(pref)
            current[category] = pref
        elif pref.subscribed:
            pref.subscribed, pref.source = False, source
        else:
            continue
        changed.append(category)
    return changed


# --------------------------------------------------------------------------- one customer
def upsert_customer(session: Session, data: Mapping[str, Any], *, actor: str,
                    source: str = "api", categories: Collection[str] | None = None) -> Customer:
    """Create or update one customer with the same checks as an import (the web API's PUT).
    Every field is replaced; ``unsubscribed`` turns categories off. Raises ImportRowsError
    when the data is invalid. Audited when something changed."""
    try:
        customer = check_customer(data, categories=categories)
    except ValueError as exc:
        raise ImportRowsError(f"invalid customer: {exc}",
                              hint="send id, name, email and timezone; dates as YYYY-MM-DD"
                              ) from None
    row = session.get(Customer, customer.id)
    now = utcnow()
    if row is None:
        row = Customer(id=customer.id, created_at=now, updated_at=now, **customer.columns())
        session.add(row)
        session.flush()
        action, changed = "customer.created", list(customer.columns())
    else:
        action, changed = "customer.updated", _update(row, customer)
    current = {p.category: p for p in session.scalars(
        select(Preference).where(Preference.customer_id == customer.id))}
    unsubscribed = _unsubscribe(session, customer, current, source=source, now=now)
    session.flush()
    if action == "customer.created" or changed or unsubscribed:
        what = changed + [f"unsubscribed from {c}" for c in unsubscribed]
        reason = "created" if action == "customer.created" else "changed " + ", ".join(what)
        audit.record(session, action=action, result="saved", actor=actor, customer_id=row.id,
                     reason=reason,
                     detail={"changed": changed, "unsubscribed": unsubscribed, "source": source})
    return row


def to_view(row: Customer | None) -> CustomerView:
    if row is None:
        raise NotFoundError("no such customer",
                            hint="list customers with `touchpoints customers list`")
    return CustomerView(id=row.id, name=row.name, email=row.email, timezone=row.timezone,
                        region=row.region, plan=row.plan, contract_start=row.contract_start,
                        contract_end=row.contract_end, account_owner=row.account_owner,
                        account_owner_name=row.account_owner_name,
                        attributes=dict(row.attributes or {}))


def get_customer(session: Session, customer_id: str) -> CustomerView:
    row = session.get(Customer, customer_id)
    if row is None:
        raise NotFoundError(f"unknown customer {customer_id!r}",
                            hint="list customers with `touchpoints customers list`, or import "
                                 "them with `touchpoints customers import FILE`")
    return to_view(row)


def preferences(session: Session, customer_id: str) -> dict[str, Preference]:
    """The stored choices of a customer by category (a missing category means subscribed)."""
    stmt = (select(Preference).where(Preference.customer_id == customer_id)
            .order_by(Preference.category))
    return {p.category: p for p in session.scalars(stmt)}


def is_subscribed(session: Session, customer_id: str, category: str) -> bool:
    pref = session.get(Preference, (customer_id, category))
    return pref is None or bool(pref.subscribed)


def set_preference(session: Session, customer_id: str, category: str, subscribed: bool, *,
                   source: str, actor: str) -> bool:
    """Record a customer's choice for one category; audited. Returns whether it changed."""
    if session.get(Customer, customer_id) is None:
        raise NotFoundError(f"unknown customer {customer_id!r}",
                            hint="list customers with `touchpoints customers list`")
    pref = session.get(Preference, (customer_id, category))
    if pref is not None and pref.subscribed == subscribed:
        return False
    if pref is None:
        session.add(Preference(customer_id=customer_id, category=category, subscribed=subscribed,
                               source=source, updated_at=utcnow()))
    else:
        pref.subscribed, pref.source = subscribed, source
    session.flush()
    state = "subscribed" if subscribed else "unsubscribed"
    audit.record(session, action="preference.changed", result=state, actor=actor,
                 customer_id=customer_id, reason=f"{category}: {state} ({source})",
                 detail={"category": category, "subscribed": subscribed, "source": source})
    return True


def stream_customers(session: Session, batch_size: int = 500, *,
                     region: str | None = None) -> Iterator[list[Customer]]:
    """Every customer (or those of ``region``) in batches, ordered by id, by keyset pagination:
    never the whole table in memory."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    after: str | None = None
    while True:
        stmt = select(Customer).order_by(Customer.id).limit(batch_size)
        if region is not None:
            stmt = stmt.where(Customer.region == region)
        if after is not None:
            stmt = stmt.where(Customer.id > after)
        batch = list(session.scalars(stmt))
        if not batch:
            return
        yield batch
        after = batch[-1].id
        if len(batch) < batch_size:
            return
