"""Argument types for the command line: a bad value is argparse's one-line error, exit 2."""

from __future__ import annotations

import argparse


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


def port(text: str) -> int:
    """A TCP port; 0 asks for a free one."""
    value = non_negative(text)
    if value > 65_535:
        raise argparse.ArgumentTypeError(f"not a port: {value} (1-65535)")
    return value


def not_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text
