"""structlog set-up: JSON off a terminal, pretty on one; card numbers masked on every line."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_CARD_NUMBER = re.compile(r"(?<!\d)(\d{4})\d{5,11}(\d{4})(?!\d)")
_ACTIVATION_CODE = re.compile(r"\b[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}\b")
_JWT = re.compile(r"\beyJ[\w-]+\.[\w-]+\.[\w-]+")
_SECRET_KEYS = (
    "password",
    "secret",
    "token",
    "activation_code",
    "code_digest",
    "cvv",
    "card_number",
    "authorization",
    "pares",
)


def mask_text(text: str) -> str:
    """Card numbers (13-19 digits) keep their first and last four digits; gift card codes
    and bearer tokens are hidden whole."""
    text = _CARD_NUMBER.sub(lambda m: m.group(1) + "*" * (len(m.group(0)) - 8) + m.group(2), text)
    text = _ACTIVATION_CODE.sub("****-****-****-****", text)
    return _JWT.sub("eyJ***", text)


def _normal(key: str) -> str:
    return key.lower().replace("_", "").replace("-", "")


_SECRETS = tuple(_normal(key) for key in _SECRET_KEYS)


def _masked(key: str, value: Any) -> Any:
    if any(secret in _normal(key) for secret in _SECRETS):
        return "***"
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: _masked(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked("", item) for item in value]
    return value


def mask_sensitive(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The last processor before rendering: nothing secret leaves the process in a log line."""
    for key, value in list(event.items()):
        event[key] = _masked(key, value)
    return event


def configure(level: str = "INFO", fmt: str = "auto") -> None:
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=True)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            mask_sensitive,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # the libraries' own lines (FastStream, aiokafka, uvicorn) in the same format, masked too
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,  # the traceback as text, then masked
                mask_sensitive,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.WARNING)
    logging.captureWarnings(True)
