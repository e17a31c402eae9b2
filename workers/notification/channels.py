"""Channel adapters: how a message reaches a client. The built-in ones are simulators.

An adapter answers SENT, BOUNCED (permanent: the address will never work) or raises
ChannelUnavailable (transient: try again later). What is sent goes to
``notifications.sent``; real providers plug in behind the same interface.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from events.notification import Channel

BOUNCE_DOMAIN = "@bounce.test"


class Delivery(StrEnum):
    SENT = "SENT"
    BOUNCED = "BOUNCED"


class ChannelUnavailable(Exception):
    """The provider is down; the message is not lost, the step is retried."""


class ChannelAdapter(Protocol):
    """A provider of one channel. ``idempotency_key`` names the message (its saga, template
    and channel): a provider takes it as its own idempotency key, so that a batch retried
    after a database fault does not send the message twice."""

    channel: Channel

    async def deliver(
        self, recipient: str, subject: str, body: str, idempotency_key: str
    ) -> Delivery: ...


class SimulatedEmail:
    """Addresses ending in ``@bounce.test`` fail permanently (the contract's test rule)."""

    channel = Channel.EMAIL

    async def deliver(
        self, recipient: str, subject: str, body: str, idempotency_key: str
    ) -> Delivery:
        return Delivery.BOUNCED if recipient.lower().endswith(BOUNCE_DOMAIN) else Delivery.SENT


class SimulatedSms:
    channel = Channel.SMS

    async def deliver(
        self, recipient: str, subject: str, body: str, idempotency_key: str
    ) -> Delivery:
        return Delivery.SENT


class SimulatedPush:
    channel = Channel.PUSH

    async def deliver(
        self, recipient: str, subject: str, body: str, idempotency_key: str
    ) -> Delivery:
        return Delivery.SENT


def simulated_channels() -> dict[Channel, ChannelAdapter]:
    adapters: list[ChannelAdapter] = [SimulatedEmail(), SimulatedSms(), SimulatedPush()]
    return {adapter.channel: adapter for adapter in adapters}


CHANNEL_ORDER: tuple[Channel, ...] = (Channel.EMAIL, Channel.SMS, Channel.PUSH)
"""The bounce rule: a bounced channel is marked and the next one in this order is tried."""
