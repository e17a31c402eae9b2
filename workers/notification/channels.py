"""Channel adapters: how a message reaches a client. The built-in ones are simulators.

An adapter answers SENT, BOUNCED (permanent: the address will never work) or raises
ChannelUnavailable (transient: try again later). What is sent goes to
``notifications.sent``; real providers plug in behind the same interface.
"""

from __future__ import annotations

from collections import OrderedDict
from enum import StrEnum
from typing import Protocol

from events.notification import Channel

BOUNCE_DOMAIN = "@bounce.test"
FLAKY_DOMAIN = "@flaky.test"
FLAKY_FAILURES = 2
"""Addresses at ``FLAKY_DOMAIN`` are unavailable on the first tries of each message."""


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
    """Addresses ending in ``@bounce.test`` fail permanently (the contract's test rule);
    those ending in ``@flaky.test`` are unavailable on the first ``FLAKY_FAILURES`` tries of
    each message (counted in memory, by idempotency key), then delivered."""

    channel = Channel.EMAIL

    def __init__(self, remembered: int = 10_000) -> None:
        self._tries: OrderedDict[str, int] = OrderedDict()
        self._remembered = remembered

    async def deliver(
        self, recipient: str, subject: str, body: str, idempotency_key: str
    ) -> Delivery:
        address = recipient.lower()
        if address.endswith(FLAKY_DOMAIN) and self._tried(idempotency_key) <= FLAKY_FAILURES:
            raise ChannelUnavailable(
                f"the simulated mail provider is down (an {FLAKY_DOMAIN} address)"
            )
        return Delivery.BOUNCED if address.endswith(BOUNCE_DOMAIN) else Delivery.SENT

    def _tried(self, key: str) -> int:
        """How many times the message of ``key`` has been tried, this one included."""
        tries = self._tries.pop(key, 0) + 1
        self._tries[key] = tries
        while len(self._tries) > self._remembered:
            self._tries.popitem(last=False)
        return tries


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
