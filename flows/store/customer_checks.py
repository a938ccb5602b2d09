"""Checking one customer record (CSV row, JSON object or API body): the fields an import sets,
each with a reason a person can act on when it is wrong."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
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

from flows import clock

FIELDS = ("id", "name", "email", "timezone", "region", "plan", "contract_start", "contract_end",
          "account_owner", "account_owner_name", "preferred_name", "last_contact_at")
REQUIRED = ("id", "name", "email", "timezone")
SPECIAL = ("unsubscribed", "attributes")
_KNOWN = frozenset(FIELDS + SPECIAL)
#: other names of a field: a CRM's ``first_name`` column is how the customer is greeted
ALIASES = {"first_name": "preferred_name"}
#: how far ahead of now a last contact may be (clocks differ a little); later is a data error
FUTURE_SLACK = timedelta(days=1)
CHUNK = 500

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ID_BAD = re.compile(r"[\s/\\?#%]")
_CATEGORY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_DOMAIN_LABEL = r"[^\W_](?:[\w-]{0,61}[^\W_])?"
#: a local part without spaces, controls or specials, an @, and two or more domain labels
_EMAIL = re.compile(r"(?P<local>[^\s@,;:<>()\[\]\"\\.]+(?:\.[^\s@,;:<>()\[\]\"\\.]+)*)@"
                    rf"(?P<domain>(?:{_DOMAIN_LABEL}\.)+(?P<top>{_DOMAIN_LABEL}))")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_MOMENT = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?")

HINT_FIX = ("fix those rows and import the file again: good rows are kept and importing twice "
            "changes nothing")


# --------------------------------------------------------------------------- field checks
def is_email(value: str) -> bool:
    """A simple, sound check of an address: one @, a dotted domain, no spaces or controls."""
    if len(value) > 320:
        return False
    match = _EMAIL.fullmatch(value)
    return (match is not None and len(match["local"]) <= 64 and len(match["domain"]) <= 253
            and not match["top"].isdigit())


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
    #: how the customer is greeted (``customer.first_name``); None: the first word of the name
    preferred_name: str | None = None
    #: the CRM's last contact with the customer (the inactivity trigger counts from it)
    last_contact_at: datetime | date | None = None
    unsubscribed: list[str] = []
    attributes: dict[str, Any] = {}

    @field_validator("region", "plan", "account_owner", "account_owner_name", "preferred_name",
                     mode="before")
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

    @field_validator("name", "account_owner_name", "preferred_name")
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
            if _DATE.fullmatch(text):
                try:
                    return date.fromisoformat(text)
                except ValueError:
                    pass
        raise _invalid("{value} is not a date (use YYYY-MM-DD)", value=value)

    @field_validator("last_contact_at", mode="before")
    @classmethod
    def _moment(cls, value: Any) -> Any:
        value = _blank_to_none(value)
        if value is None or isinstance(value, date):
            return value
        if isinstance(value, str):
            text = value.strip()
            try:
                if _DATE.fullmatch(text):
                    return date.fromisoformat(text)
                if _MOMENT.fullmatch(text):
                    return datetime.fromisoformat(text)
            except ValueError:
                pass
        raise _invalid("{value} is not a date or time (use YYYY-MM-DD or "
                       "YYYY-MM-DDTHH:MM with an offset, e.g. 2026-11-02T14:30+00:00)", value=value)

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

    @model_validator(mode="after")
    def _contact_in_utc(self) -> CustomerIn:
        """A date, or a time without an offset, is the customer's own local time."""
        value = self.last_contact_at
        if value is None:
            return self
        zone = ZoneInfo(self.timezone)
        if not isinstance(value, datetime):
            value = datetime.combine(value, time(0), zone)
        elif value.tzinfo is None:
            value = value.replace(tzinfo=zone)
        value = value.astimezone(UTC)
        if value > clock.now() + FUTURE_SLACK:
            raise _invalid("last_contact_at {value} is in the future", value=value.isoformat())
        self.last_contact_at = value
        return self

    def columns(self) -> dict[str, Any]:
        """The values of the customer table's columns an import replaces (without ``id``;
        ``last_contact_at`` only moves forward, see flows/store/importing.py)."""
        values = {name: getattr(self, name) for name in FIELDS
                  if name not in ("id", "last_contact_at")}
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
    reason a person can act on. ``first_name`` is another name of ``preferred_name``."""
    data = dict(data)
    for alias, name in ALIASES.items():
        if alias not in data:
            continue
        value = data.pop(alias)
        given = _blank_to_none(data.get(name))
        if given is not None and _blank_to_none(value) is not None and given != value:
            raise ValueError(f"{alias} {value!r} and {name} {given!r} differ: give one of them")
        if given is None:
            data[name] = value
    known = {k: v for k, v in data.items() if k in _KNOWN}
    extra = {k: v for k, v in data.items() if k not in _KNOWN}
    attributes = known.get("attributes")
    if attributes is not None and not isinstance(attributes, Mapping):
        raise ValueError("attributes: must be an object")
    known["attributes"] = {**(attributes or {}), **extra}
    if categories is not None and not isinstance(categories, frozenset):
        categories = frozenset(categories)
    context = {"categories": categories} if categories is not None else None
    try:
        return CustomerIn.model_validate(known, context=context)
    except ValidationError as exc:
        raise ValueError(_reason(exc)) from None
