"""The balance rows a batch of billing commands will lock, locked first and in key order:
client wallets by id, then gift cards by id (``workers.runtime.LocksAhead``). Each statement
finds its rows through their keys (``= ANY(ARRAY(...))``: an ``IN (subquery)`` under an
``OR`` would scan the whole table)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from events.billing import (
    ActivateCustomerWallet,
    ActivateGiftCard,
    BalanceSource,
    CancelGiftCard,
    CloseCustomerWallet,
    CreditWallet,
    DebitBalance,
    RedeemActivationCode,
    RefundBalance,
    UndoRedemption,
)
from events.envelope import Envelope
from schemas.billing import billing_operations, customer_wallets, gift_cards, ledger_entries
from workers.giftcard_codes import stored_hash
from workers.operations import step_arrays, step_keys

_UNDONE_STEPS = "unnest(CAST(:ids AS uuid[]), CAST(:steps AS text[])) AS u(saga_id, step)"


def _touched(prefix: str, reply_member: str) -> str:
    """The ids of one kind of account that the steps being undone moved money on or made."""
    return f"""
        SELECT substr(e.account, {len(prefix) + 1}) FROM {ledger_entries.name} AS e
        JOIN {_UNDONE_STEPS} ON e.saga_id = u.saga_id AND e.step = u.step
        WHERE e.account LIKE '{prefix}%'
        UNION ALL
        SELECT o.reply ->> '{reply_member}' FROM {billing_operations.name} AS o
        JOIN {_UNDONE_STEPS} ON o.saga_id = u.saga_id AND o.step = u.step"""


_LOCK_WALLETS = text(
    f"""
    SELECT w.wallet_id FROM {customer_wallets.name} AS w
    WHERE w.customer_id = ANY(CAST(:customers AS text[]))
       OR w.wallet_id = ANY(ARRAY({_touched("wallet:", "wallet_id")}))
    ORDER BY w.wallet_id COLLATE "C"
    FOR UPDATE OF w
    """
)
_LOCK_GIFT_CARDS = text(
    f"""
    SELECT g.gift_card_id FROM {gift_cards.name} AS g
    WHERE g.gift_card_id = ANY(CAST(:cards AS text[]))
       OR g.code_hash = ANY(CAST(:hashes AS text[]))
       OR g.gift_card_id = ANY(ARRAY({_touched("giftcard:", "gift_card_id")}))
    ORDER BY g.gift_card_id COLLATE "C"
    FOR UPDATE OF g
    """
)


async def lock_balances(
    conn: AsyncConnection, code_key: str, commands: Sequence[tuple[Envelope, Any]]
) -> None:
    customers: set[str] = set()
    cards: set[str] = set()
    hashes: set[str] = set()
    undone: list[Envelope] = []
    for envelope, command in commands:
        match command:
            case DebitBalance(source=BalanceSource.GIFT_CARD):
                cards.add(command.gift_card_id or "")
            case ActivateGiftCard():
                cards.add(command.gift_card_id)
            case DebitBalance() | CreditWallet() | ActivateCustomerWallet():
                customers.add(command.customer_id)
            case RedeemActivationCode():
                hashes.add(stored_hash(code_key, command.code_digest))
            case RefundBalance() | CancelGiftCard() | CloseCustomerWallet() | UndoRedemption():
                undone.append(envelope)
    steps = step_arrays(step_keys(undone))
    if customers or undone:
        await conn.execute(_LOCK_WALLETS, {"customers": sorted(customers), **steps})
    if cards or hashes or undone:
        await conn.execute(
            _LOCK_GIFT_CARDS, {"cards": sorted(cards), "hashes": sorted(hashes), **steps}
        )
