"""Notification worker: client accounts with channels, delivery with the bounce rule."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import bindparam, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from events import topics
from events.base import Reply, StepFailed, expect
from events.envelope import Envelope
from events.notification import (
    RECIPIENT_UNREACHABLE,
    USERNAME_TAKEN,
    AccountCreated,
    Channel,
    CloseAccount,
    CreateAccount,
    NotificationSent,
    Notified,
    NotifyCustomer,
    SendGiftCardCode,
)
from orchestrator.engine.outbox import OutboundMessage
from schemas.notification import accounts, channels, notification_operations, notifications
from workers.giftcard_codes import derive_code
from workers.notification.channels import (
    CHANNEL_ORDER,
    ChannelAdapter,
    ChannelUnavailable,
    Delivery,
    simulated_channels,
)
from workers.notification.templates import template
from workers.operations import Operations, step_arrays, step_key, step_keys
from workers.runtime import Handled

GIFT_CARD_CODE = "giftcard-code"

Sender = Callable[[AsyncConnection, Envelope, Any, list[OutboundMessage]], Awaitable[Reply]]

# Statements built once, not per command (see workers/operations.py).
_ACTIVE_ACCOUNT = select(accounts.c.account_id, accounts.c.first_name).where(
    accounts.c.customer_id == bindparam("b_customer_id"), accounts.c.status == "ACTIVE"
)
_ACTIVE_CHANNELS = (
    select(accounts.c.account_id, accounts.c.first_name, channels.c.channel, channels.c.address)
    .join_from(accounts, channels, channels.c.account_id == accounts.c.account_id)
    .where(
        accounts.c.customer_id == bindparam("b_customer_id"),
        accounts.c.status == "ACTIVE",
        channels.c.status == "ACTIVE",
    )
    .with_for_update(of=channels)
)
_LOCK_BATCH_CHANNELS = text(
    f"""
    SELECT c.account_id FROM {channels.name} AS c
    WHERE c.account_id = ANY(ARRAY(
            SELECT a.account_id FROM {accounts.name} AS a
            WHERE a.customer_id = ANY(CAST(:customers AS text[])) AND a.status = 'ACTIVE'
          ))
       OR c.account_id = ANY(ARRAY(
            SELECT o.reply ->> 'account_id' FROM {notification_operations.name} AS o
            JOIN unnest(CAST(:ids AS uuid[]), CAST(:steps AS text[])) AS u(saga_id, step)
              ON o.saga_id = u.saga_id AND o.step = u.step
          ))
    ORDER BY c.account_id COLLATE "C", c.channel COLLATE "C"
    FOR UPDATE OF c
    """
)
_INSERT_NOTIFICATION = pg_insert(notifications)
_TAKEN = select(accounts.c.customer_id).where(
    (accounts.c.username == bindparam("b_username"))
    | (accounts.c.customer_id == bindparam("b_customer_id"))
)
_INSERT_ACCOUNT = pg_insert(accounts)
_INSERT_CHANNEL = pg_insert(channels)
_DELETE_CHANNELS = delete(channels).where(channels.c.account_id == bindparam("b_account_id"))
_DELETE_ACCOUNT = delete(accounts).where(accounts.c.account_id == bindparam("b_account_id"))
_BOUNCED = (
    update(channels)
    .where(
        channels.c.account_id == bindparam("b_account_id"),
        channels.c.channel == bindparam("b_channel"),
    )
    .values(status="BOUNCED", updated_at=func.now())
)


class NotificationService:
    """Handles the notification commands; each is idempotent per saga step."""

    def __init__(
        self, code_key: str, adapters: dict[Channel, ChannelAdapter] | None = None
    ) -> None:
        self.code_key = code_key
        self.adapters = adapters or simulated_channels()
        self.operations = Operations(notification_operations)

    async def lock_ahead(
        self, conn: AsyncConnection, commands: Sequence[tuple[Envelope, Any]]
    ) -> None:
        """The channel rows of every client the batch notifies, and of every account it
        closes, in key order (``workers.runtime.LocksAhead``)."""
        customers = sorted({c.customer_id for _, c in commands if isinstance(c, NotifyCustomer)})
        closed = step_keys(e for e, c in commands if isinstance(c, CloseAccount))
        if customers or closed:
            await conn.execute(
                _LOCK_BATCH_CHANNELS, {"customers": customers, **step_arrays(closed)}
            )

    async def __call__(
        self, conn: AsyncConnection, envelope: Envelope, command: object
    ) -> Reply | Handled:
        match command:
            case CreateAccount():
                return await self.create_account(conn, envelope, command)
            case CloseAccount():
                return await self.close_account(conn, envelope)
            case NotifyCustomer():
                return await self._sending(conn, envelope, self._notify_customer, command)
            case SendGiftCardCode():
                return await self._sending(conn, envelope, self._send_code, command)
        raise TypeError(f"notification cannot handle {type(command).__name__}")

    async def create_account(
        self, conn: AsyncConnection, envelope: Envelope, command: CreateAccount
    ) -> Reply:
        saga_id, _ = step_key(envelope)

        async def action() -> Reply:
            taken = (
                await conn.execute(
                    _TAKEN,
                    {"b_username": command.username, "b_customer_id": command.customer_id},
                )
            ).first()
            if taken is not None:
                return StepFailed(
                    reason=USERNAME_TAKEN,
                    detail=f"username {command.username!r} or client {command.customer_id} "
                    "already has an account",
                )
            account_id = f"ACC-{uuid4().hex[:16]}"
            await conn.execute(
                _INSERT_ACCOUNT,
                {
                    "account_id": account_id,
                    "customer_id": command.customer_id,
                    "username": command.username,
                    "first_name": command.first_name or command.username,
                    "last_name": command.last_name or "",
                    "status": "ACTIVE",
                    "saga_id": saga_id,
                },
            )
            await conn.execute(
                _INSERT_CHANNEL,
                [
                    {
                        "account_id": account_id,
                        "channel": channel,
                        "address": address,
                        "status": "ACTIVE",
                    }
                    for channel, address in (
                        (Channel.EMAIL.value, command.email),
                        (Channel.SMS.value, command.phone),
                    )
                    if address is not None
                ],
            )
            return AccountCreated(account_id=account_id)

        return await self.operations.run(conn, envelope, action)

    async def close_account(self, conn: AsyncConnection, envelope: Envelope) -> Reply:
        """Compensation: the account and its channels go, so the username is free again."""

        async def undo(done: Reply) -> StepFailed | None:
            done = expect(done, AccountCreated)
            await conn.execute(_DELETE_CHANNELS, {"b_account_id": done.account_id})
            await conn.execute(_DELETE_ACCOUNT, {"b_account_id": done.account_id})
            return None

        return await self.operations.undo(conn, envelope, undo)

    async def _sending(
        self, conn: AsyncConnection, envelope: Envelope, send: Sender, command: Any
    ) -> Handled:
        """Run a delivering step once; what it sent is published with its reply."""
        outbox: list[OutboundMessage] = []

        async def action() -> Reply:
            try:
                reply: Reply = await send(conn, envelope, command, outbox)
            except ChannelUnavailable as exc:
                outbox.clear()
                return StepFailed(reason="CHANNEL_UNAVAILABLE", detail=str(exc), retryable=True)
            return reply

        reply = await self.operations.run(conn, envelope, action)
        return Handled(reply, tuple(outbox))

    async def _notify_customer(
        self,
        conn: AsyncConnection,
        envelope: Envelope,
        command: NotifyCustomer,
        outbox: list[OutboundMessage],
    ) -> Reply:
        saga_id, _ = step_key(envelope)
        rows = (await conn.execute(_ACTIVE_CHANNELS, {"b_customer_id": command.customer_id})).all()
        if rows:
            account_id, first_name = rows[0].account_id, rows[0].first_name
        else:  # no account, or one whose every channel has bounced
            account = (
                await conn.execute(_ACTIVE_ACCOUNT, {"b_customer_id": command.customer_id})
            ).first()
            if account is None:
                detail = f"client {command.customer_id} has no account"
                return Notified(delivered=False, detail=detail)
            account_id, first_name = account.account_id, account.first_name
        addresses = {Channel(row.channel): row.address for row in rows}
        params = {"first_name": first_name, **command.params}
        subject, body = template(command.template).render(params)
        for channel in (c for c in CHANNEL_ORDER if c in addresses):
            recipient = addresses[channel]
            key = f"{saga_id}:{command.template}:{channel.value}"
            result = await self.adapters[channel].deliver(recipient, subject, body, key)
            notification_id = await self._record(
                conn, saga_id, command.template, channel, recipient, result
            )
            if result == Delivery.SENT:
                outbox.append(
                    _sent(
                        envelope,
                        notification_id,
                        channel,
                        recipient,
                        command.template,
                        subject,
                        body,
                    )
                )
                return Notified(delivered=True, channel=channel, notification_id=notification_id)
            await conn.execute(_BOUNCED, {"b_account_id": account_id, "b_channel": channel.value})
        return Notified(delivered=False, detail="every channel of the client bounced")

    async def _send_code(
        self,
        conn: AsyncConnection,
        envelope: Envelope,
        command: SendGiftCardCode,
        outbox: list[OutboundMessage],
    ) -> Reply:
        saga_id, _ = step_key(envelope)
        params = {
            "recipient_name": command.recipient_name,
            "amount": command.amount,
            "currency": command.currency,
            "design": command.design,
            "code": derive_code(self.code_key, command.gift_card_id),
        }
        subject, body = template(GIFT_CARD_CODE).render(params)
        email = self.adapters[Channel.EMAIL]
        key = f"{saga_id}:{GIFT_CARD_CODE}:{Channel.EMAIL.value}"
        result = await email.deliver(command.recipient_email, subject, body, key)
        notification_id = await self._record(
            conn, saga_id, GIFT_CARD_CODE, Channel.EMAIL, command.recipient_email, result
        )
        if result == Delivery.BOUNCED:
            return StepFailed(
                reason=RECIPIENT_UNREACHABLE,
                detail=f"{command.recipient_email} bounced; the code was not delivered",
            )
        outbox.append(
            _sent(
                envelope,
                notification_id,
                Channel.EMAIL,
                command.recipient_email,
                GIFT_CARD_CODE,
                subject,
                body,
            )
        )
        return Notified(delivered=True, channel=Channel.EMAIL, notification_id=notification_id)

    async def _record(
        self,
        conn: AsyncConnection,
        saga_id: UUID,
        template_name: str,
        channel: Channel,
        recipient: str,
        result: Delivery,
    ) -> str:
        notification_id = f"N-{uuid4().hex[:20]}"
        await conn.execute(
            _INSERT_NOTIFICATION,
            {
                "notification_id": notification_id,
                "saga_id": saga_id,
                "template": template_name,
                "channel": channel.value,
                "recipient": recipient,
                "status": result.value,
                "detail": "" if result == Delivery.SENT else "permanent failure",
            },
        )
        return notification_id


def _sent(
    envelope: Envelope,
    notification_id: str,
    channel: Channel,
    recipient: str,
    template_name: str,
    subject: str,
    body: str,
) -> OutboundMessage:
    record = NotificationSent(
        notification_id=notification_id,
        channel=channel,
        recipient=recipient,
        template=template_name,
        subject=subject,
        body=body,
        correlation_id=envelope.correlation_id,
    )
    headers = Envelope(
        type="notifications.sent.v1",
        source="orchestra/notification",
        correlation_id=envelope.correlation_id,
        causation_id=envelope.id,
    )
    return OutboundMessage.of(topics.NOTIFICATIONS_SENT, recipient, headers, record)
