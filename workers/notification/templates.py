"""Message templates per event: subject and body, filled from the command's parameters."""

from __future__ import annotations

from dataclasses import dataclass
from string import Template


@dataclass(frozen=True)
class MessageTemplate:
    subject: str
    body: str
    fallbacks: tuple[tuple[str, str], ...] = ()
    """A parameter an orchestrator of the release before does not send, and the one it sends
    that stands in for it."""

    def render(self, params: dict[str, str]) -> tuple[str, str]:
        stand_ins = {name: params[other] for name, other in self.fallbacks if other in params}
        params = {**stand_ins, **params}
        return (
            Template(self.subject).safe_substitute(params),
            Template(self.body).safe_substitute(params),
        )


TEMPLATES: dict[str, MessageTemplate] = {
    "order-confirmed": MessageTemplate(
        "Order $order_id is paid",
        "Hello $first_name, your order $order_id is paid ($total $currency) and on its way "
        "to $delivery.",
    ),
    "wallet-topped-up": MessageTemplate(
        "Your wallet is topped up",
        "Hello $first_name, $amount $currency arrived on your wallet; the balance is "
        "$balance $currency.",
    ),
    "giftcard-purchased": MessageTemplate(
        "Your gift card is on its way",
        "Hello $first_name, your payment of $amount $currency went through: the gift card "
        "is sent to $recipient_name.",
    ),
    "payment-failed": MessageTemplate(
        "Your $what did not go through",
        "Hello $first_name, your $what of $amount $currency did not go through: $why "
        "(code $reason). If any of it was taken, it has been given back.",
        fallbacks=(("what", "purpose"), ("why", "reason")),
    ),
    "giftcard-code": MessageTemplate(
        "$recipient_name, you have a gift card",
        "Hello $recipient_name, somebody gave you a gift card of $amount $currency "
        "(design: $design). Your activation code: $code",
    ),
}


def template(name: str) -> MessageTemplate:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise ValueError(f"no notification template {name!r}; known: {sorted(TEMPLATES)}") from None
