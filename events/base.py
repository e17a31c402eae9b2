"""Base classes of every message: upstream records, commands, replies and outcomes."""

from __future__ import annotations

import functools
import hashlib
import json
import re
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any, ClassVar, Literal, TypeVar
from uuid import UUID

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from events.money import plain

Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$")]
"""An entity id on the wire: letters, digits and ``._:@-``, at most 128 characters."""


_UUID_TEXT = re.compile(
    r"(?:urn:uuid:)?(\{)?[0-9A-Fa-f]{8}(-?)[0-9A-Fa-f]{4}\2[0-9A-Fa-f]{4}\2[0-9A-Fa-f]{4}\2"
    r"[0-9A-Fa-f]{12}(?(1)\})"
)


def parse_uuid(text: str) -> UUID:
    """A UUID in one of the forms ``uuid.UUID`` reads, ASCII hex digits only: ``uuid.UUID``
    alone also takes other scripts' digits, underscores and surrounding spaces, so one id
    would have many spellings (and an answer echoing one, text no header can carry)."""
    if not _UUID_TEXT.fullmatch(text):
        raise ValueError(f"not a UUID: {text[:64]!r}")
    return UUID(text)


def unstorable(text: str) -> bool:
    """Text no database could store: a NUL character or a lone surrogate."""
    return "\x00" in text or any("\ud800" <= char <= "\udfff" for char in text)


class Message(BaseModel):
    """An internal message: immutable, and strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=False).encode("utf-8")


class UpstreamRecord(BaseModel):
    """A record published by a system outside the project (tolerant reader: extras ignored)."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)

    event_type: ClassVar[str]

    def business_key(self) -> str:
        raise NotImplementedError

    def record_key(self) -> str:
        """The Kafka key the contract names for this topic (usually the business key)."""
        return self.business_key()

    def content_digest(self) -> str:
        """What the record asks, as 40 hex digits: the version of its model (8), then its
        content (32), the same for records that ask the same however they spell it (members
        in any order, unknown ones, ``10.5`` or ``"10.50"``), so that a record reusing a
        business key for another request is told from a repeat. A secret among the members
        is no easier to guess from it than from the digest that travels in its place."""
        canonical = json.dumps(
            _canonical(self.digest_content()),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            default=str,
        )
        content = hashlib.blake2b(canonical.encode("utf-8"), digest_size=16).hexdigest()
        return _model_version(type(self)) + content

    def digest_content(self) -> dict[str, Any]:
        """What ``content_digest`` reads: every member, as validated; a subclass puts a member
        its saga reads in one normal form (an activation code) in that form."""
        return self.model_dump()

    def asks_otherwise(self, digest: str) -> bool:
        """Whether this record asks something else than the one whose ``content_digest`` is
        ``digest``. Not if that digest was made under another version of the model (a release
        that added a member, say, would read the same bytes otherwise): it cannot tell."""
        mine = self.content_digest()
        return digest[:_VERSION_DIGITS] == mine[:_VERSION_DIGITS] and digest != mine


DIGEST_RULES = 1
"""The version of how ``content_digest`` reads a record: raise it with any change to it, or to
a normaliser of a record's members that a JSON schema does not show (``events.money``)."""
_VERSION_DIGITS = 8


@functools.cache
def _model_version(model: type[BaseModel]) -> str:
    """The model's members, types, defaults and constraints (its JSON schema) and
    ``DIGEST_RULES``, as 8 hex digits."""
    schema = json.dumps([DIGEST_RULES, model.model_json_schema()], sort_keys=True)
    return hashlib.blake2b(schema.encode("utf-8"), digest_size=_VERSION_DIGITS // 2).hexdigest()


def _canonical(value: Any) -> Any:
    """``value`` with one spelling for each amount and enum member, sequences as lists."""
    if isinstance(value, dict):
        return {key: _canonical(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    if isinstance(value, Decimal):
        return str(plain(value))
    if isinstance(value, Enum):
        return value.value
    return value


class Command(Message):
    """An order to one participant; subclasses fix ``kind`` to their class name."""

    kind: str


class Reply(Message):
    """A participant's answer to one command; correlated by the command id in the headers."""

    kind: str


ReplyT = TypeVar("ReplyT", bound=Reply)


def expect(reply: Reply, kind: type[ReplyT]) -> ReplyT:
    """``reply`` as the kind a step awaits; a TypeError names what came instead (the engine
    then compensates the step as answered unexpectedly)."""
    if not isinstance(reply, kind):
        raise TypeError(f"expected {kind.__name__}, got {reply.kind}")
    return reply


DETAIL_CHARS = 1_000


def _shortened(text: object) -> object:
    """A refusal's sentence cut to ``DETAIL_CHARS``: the reason code decides, the sentence
    only explains, so a long one (many short SKUs, an escaped name) must not fail the reply."""
    if isinstance(text, str) and len(text) > DETAIL_CHARS:
        return text[: DETAIL_CHARS - 1] + "…"
    return text


class StepFailed(Reply):
    """A business refusal (or, with ``retryable``, a transient fault worth retrying)."""

    kind: Literal["StepFailed"] = "StepFailed"
    reason: str = Field(min_length=1, max_length=64)
    detail: Annotated[str, BeforeValidator(_shortened)] = Field(default="", max_length=DETAIL_CHARS)
    retryable: bool = False


class Compensated(Reply):
    """A compensation has taken effect (or there was nothing to undo)."""

    kind: Literal["Compensated"] = "Compensated"


class Outcome(Message):
    """The one terminal record of a saga, on its status topic."""
