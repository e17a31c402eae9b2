"""Notification: client accounts with channels, and every message delivered to a client."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Final, Literal

from pydantic import Field

from events.base import Command, Message, Reply


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"


class CreateAccount(Command):
    """Open the client's notification account with its channels (email, sms)."""

    kind: Literal["CreateAccount"] = "CreateAccount"
    customer_id: str
    username: str
    email: str
    phone: str | None = None
    """No SMS channel without one."""
    first_name: str | None = None
    """The name messages greet the client by; the username when not given."""
    last_name: str | None = None


class CloseAccount(Command):
    """Compensation: close the account this saga opened."""

    kind: Literal["CloseAccount"] = "CloseAccount"


class NotifyCustomer(Command):
    """Tell a client about an event, on the first channel of theirs that works.

    Comes after the point of no return: never refused, only retried when the worker is away.
    """

    kind: Literal["NotifyCustomer"] = "NotifyCustomer"
    customer_id: str
    template: str
    params: dict[str, str] = Field(default_factory=dict)


class SendGiftCardCode(Command):
    """E-mail a gift card's activation code to its recipient (the code is derived here)."""

    kind: Literal["SendGiftCardCode"] = "SendGiftCardCode"
    gift_card_id: str
    recipient_name: str
    recipient_email: str
    amount: str
    currency: str
    design: str


class AccountCreated(Reply):
    kind: Literal["AccountCreated"] = "AccountCreated"
    account_id: str


class Notified(Reply):
    kind: Literal["Notified"] = "Notified"
    delivered: bool
    channel: Channel | None = None
    notification_id: str | None = None
    detail: str = ""


class NotificationSent(Message):
    """``notifications.sent``: one message delivered by a channel adapter."""

    notification_id: str
    channel: Channel
    recipient: str
    template: str
    subject: str
    body: str
    correlation_id: str | None = None


NotificationCommand = Annotated[
    CreateAccount | CloseAccount | NotifyCustomer | SendGiftCardCode,
    Field(discriminator="kind"),
]

USERNAME_TAKEN: Final = "USERNAME_TAKEN"
RECIPIENT_UNREACHABLE: Final = "RECIPIENT_UNREACHABLE"
