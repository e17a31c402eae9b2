"""The database URL's query options, checked and typed: SQLAlchemy hands them to asyncpg as
text, and asyncpg takes its numbers and flags only as such (``?timeout=5`` failed every
connection with a TypeError)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import asyncpg
from sqlalchemy.engine import URL

DATABASE_OPTIONS = frozenset(inspect.signature(asyncpg.connect).parameters) - {
    "dsn",
    "loop",
    "connection_class",
    "record_class",
} | {"prepared_statement_cache_size"}
"""What the query may hold: asyncpg.connect's options, and SQLAlchemy's own."""

_SECONDS = ("timeout", "command_timeout")
_COUNTS = (
    "statement_cache_size",
    "max_cached_statement_lifetime",
    "max_cacheable_statement_size",
)
_FLAGS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_CHOICES = {
    "ssl": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "target_session_attrs": (
        "any",
        "primary",
        "standby",
        "read-write",
        "read-only",
        "prefer-standby",
    ),
    "gsslib": ("gssapi", "sspi"),
}
_NOT_IN_URL = {
    "server_settings": "a mapping the URL cannot hold: set PostgreSQL parameters on the "
    "role or the database (ALTER ROLE ... SET) instead",
}


def place(url: URL) -> str:
    """Where ``url`` points, for a message: its host and port, or its socket folder."""
    hosts = url.query.get("host") or url.host or "localhost"
    ports = url.query.get("port") or url.port or 5432
    host = ",".join(hosts) if isinstance(hosts, tuple) else str(hosts)
    port = ",".join(ports) if isinstance(ports, tuple) else str(ports)
    where = f"socket folder {host} (port {port})" if host.startswith("/") else f"{host}:{port}"
    return f"{where}, database {url.database or url.username or 'postgres'}"


def connect_options(url: URL) -> dict[str, Any]:
    """The typed value of each option of ``url``'s query that asyncpg takes as other than
    text; ValueError names the first bad one."""
    typed: dict[str, Any] = {}
    for name, given in url.query.items():
        if name in _NOT_IN_URL:
            raise ValueError(f"query parameter {name} is {_NOT_IN_URL[name]}")
        reader = _reader(name)
        if reader is None:
            continue
        if not isinstance(given, str):
            raise ValueError(f"query parameter {name} is given {len(given)} times")
        typed[name] = reader(name, given)
    return typed


def _reader(name: str) -> Callable[[str, str], Any] | None:
    if name in _SECONDS:
        return _seconds
    if name in _COUNTS:
        return _count
    if name == "direct_tls":
        return _flag
    if name in _CHOICES:
        return _choice
    return None


def _seconds(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise ValueError(f"query parameter {name}={text!r} is not a number of seconds above 0")
    return value


def _count(name: str, text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise ValueError(f"query parameter {name}={text!r} is not a whole number of 0 or more")
    return int(text)


def _flag(name: str, text: str) -> bool:
    if text.lower() not in _FLAGS:
        raise ValueError(f"query parameter {name}={text!r} is not true or false")
    return _FLAGS[text.lower()]


def _choice(name: str, text: str) -> str:
    if name == "ssl":  # asyncpg reads verify_full as verify-full
        text = text.replace("_", "-")
    if text not in _CHOICES[name]:
        raise ValueError(
            f"query parameter {name}={text!r} is not one of {', '.join(_CHOICES[name])}"
        )
    return text
