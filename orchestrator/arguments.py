"""Argument types for the command line: a bad value is argparse's one-line error, exit 2."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import NoReturn

MAX_OFFSET = 2**63 - 1
MAX_PARTITION = 2**31 - 1
MAX_LIMIT = 10_000
MAX_AGE_DAYS = 36_500
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DAY = re.compile(r"(\d{4}-\d{2}-\d{2}|\d{8})([^Tt ].*)?")
_ZONE = re.compile(r"Z|[+-]\d{2}(:?\d{2})?", re.IGNORECASE)


def non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {value}")
    return value


def positive(text: str) -> int:
    value = non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def at_most(highest: int, what: str, lowest: int = 0) -> Callable[[str], int]:
    """A whole number from ``lowest`` to ``highest``."""

    def check(text: str) -> int:
        value = non_negative(text)
        if value < lowest:
            raise argparse.ArgumentTypeError(f"{what} is at least {lowest}, not {value}")
        if value > highest:
            raise argparse.ArgumentTypeError(f"{what} is at most {highest}, not {value}")
        return value

    return check


offset = at_most(MAX_OFFSET, "a Kafka offset")
partition = at_most(MAX_PARTITION, "a Kafka partition")
limit = at_most(MAX_LIMIT, "the limit", lowest=1)


def port(text: str) -> int:
    """A TCP port; 0 asks for a free one."""
    value = non_negative(text)
    if value > 65_535:
        raise argparse.ArgumentTypeError(f"not a port: {value} (1-65535)")
    return value


def utf8(text: str) -> str:
    """Text a database column or a Kafka key can hold: bytes not UTF-8 on the command line
    arrive as lone surrogates."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError(f"not UTF-8 text: {text!r}") from None
    return text


def not_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return utf8(text)


def age(text: str) -> timedelta:
    """``90s``, ``15m``, ``2h``, ``3d``; at most ``MAX_AGE_DAYS`` days."""
    number, unit = text[:-1], text[-1:]
    if unit not in _AGE_UNITS or not (number.isascii() and number.isdigit()):
        raise argparse.ArgumentTypeError(f"an age looks like 90s, 15m, 2h or 3d, not {text!r}")
    seconds = int(number) * _AGE_UNITS[unit]
    if seconds > MAX_AGE_DAYS * 86400:
        raise argparse.ArgumentTypeError(
            f"age {text} out of range: at most {MAX_AGE_DAYS}d (100 years)"
        )
    return timedelta(seconds=seconds)


def moment(text: str) -> datetime:
    """An ISO 8601 time with a time zone, e.g. ``2026-11-27T10:00:00Z``, in UTC."""
    day_only = _DAY.fullmatch(text)
    if day_only is not None and day_only.group(2):
        _zone_without_time(text, day_only.group(1), day_only.group(2))
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        detail = "" if str(exc).startswith("Invalid isoformat") else f" ({exc})"
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 time: {text!r}{detail}; e.g. 2026-11-27T10:00:00Z"
        ) from None
    if parsed.tzinfo is None:
        shown = parsed.isoformat()
        raise argparse.ArgumentTypeError(f"give a time zone, e.g. {shown}Z or {shown}+00:00")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        if parsed.year == 1:  # before the first instant a UTC time can hold: from the start
            return datetime.min.replace(tzinfo=UTC)
        raise argparse.ArgumentTypeError(f"time out of range: {text!r}") from None


def _zone_without_time(text: str, day: str, zone: str) -> NoReturn:
    """A day followed by something (Python 3.11 reads ``2026-11-27+05:00`` as a day with no
    zone at all): a zone needs a time of day."""
    try:
        shown = date.fromisoformat(day).isoformat()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r} ({exc})") from None
    if not _ZONE.fullmatch(zone):
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}; e.g. {shown}T00:00:00Z")
    suggested = f"{shown}T00:00:00{zone}"
    try:
        datetime.fromisoformat(suggested)
    except ValueError:
        suggested = f"{shown}T00:00:00Z"
    raise argparse.ArgumentTypeError(f"a time zone needs a time of day: {text!r}; e.g. {suggested}")
