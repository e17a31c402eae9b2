"""Every reply a participant can send is one the orchestrator reads: a reply class left out of
``AnyReply`` is dead-lettered by the orchestrator, and its saga waits out its timeout."""

from __future__ import annotations

import importlib
import pkgutil
from typing import get_args

import events
from events.base import Reply
from events.replies import AnyReply


def _reply_classes() -> set[type[Reply]]:
    """Every reply class of the message contract (``events``)."""
    for module in pkgutil.iter_modules(events.__path__):
        importlib.import_module(f"events.{module.name}")
    found: set[type[Reply]] = set()
    todo = list(Reply.__subclasses__())
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo.extend(cls.__subclasses__())
    return {cls for cls in found if cls.__module__.startswith("events.")}


def test_the_reply_union_holds_every_reply_class() -> None:
    union, _discriminator = get_args(AnyReply)
    missing = {cls.__name__ for cls in _reply_classes() - set(get_args(union))}
    assert not missing, f"add to events.replies.AnyReply: {sorted(missing)}"


def test_no_two_reply_classes_share_a_kind() -> None:
    kinds = [cls.model_fields["kind"].default for cls in _reply_classes()]
    assert len(kinds) == len(set(kinds))
