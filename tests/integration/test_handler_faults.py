"""A worker's handler that fails on one command: the command is dead-lettered and refused,
its saga compensates, and the other commands of the batch go through."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from events import topics
from events.base import Reply
from events.envelope import Envelope
from events.notification import CreateAccount
from orchestrator.app import Application
from orchestrator.client import UpstreamClient
from orchestrator.embedded import EmbeddedStack
from orchestrator.settings import Settings
from tests.integration import commerce as c
from tests.integration.helpers import query
from workers.registry import WORKERS, WorkerSpec
from workers.runtime import CommandHandler, Handled

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def own_stack() -> Iterator[EmbeddedStack]:
    with EmbeddedStack() as embedded:
        yield embedded


async def crash(conn: AsyncConnection) -> None:
    raise RuntimeError("template engine crashed")


async def violate_a_check(conn: AsyncConnection) -> None:
    """A statement that breaks a constraint on every attempt: an integrity error that is no
    race, so retrying it would stall the partition."""
    await conn.execute(
        text("DO $$ BEGIN RAISE check_violation USING MESSAGE = 'template engine crashed'; END $$")
    )


def buggy(spec: WorkerSpec, bug: Callable[[AsyncConnection], Awaitable[None]]) -> WorkerSpec:
    """The notification worker, with a bug that only the username 'explode' meets."""

    def build(settings: Settings) -> CommandHandler:
        real = spec.build(settings)

        async def handle(
            conn: AsyncConnection, envelope: Envelope, command: Any
        ) -> Reply | Handled:
            if isinstance(command, CreateAccount) and command.username == "explode":
                await bug(conn)
            return await real(conn, envelope, command)

        return handle

    return dataclasses.replace(spec, build=build)


@pytest.mark.parametrize("bug", [crash, violate_a_check])
async def test_failing_command_is_dead_lettered_and_its_saga_compensated(
    own_stack: EmbeddedStack, bug: Callable[[AsyncConnection], Awaitable[None]]
) -> None:
    workers = {**WORKERS, "notification": buggy(WORKERS["notification"], bug)}
    app = Application(own_stack.settings(group_prefix="faults"), workers=workers)
    await app.start()
    try:
        dlq = topics.dlq(topics.NOTIFICATION_COMMANDS)
        async with UpstreamClient(own_stack.settings(), watch=[*c.WATCHED, dlq]) as client:
            seen = c.Outcomes(client)
            victim = c.customer().model_copy(update={"username": "explode"})
            others = [c.customer() for _ in range(5)]
            for record in [victim, *others]:
                await client.send(topics.CUSTOMERS_REGISTERED, record)
            done = await seen.wait([r.customer_id for r in [victim, *others]])
            await seen.settle(1)
            letters = [
                r for r in seen.others if r.topic == dlq and victim.customer_id.encode() in r.value
            ]
    finally:
        await app.stop()

    assert (done[victim.customer_id]["status"], done[victim.customer_id]["reason"]) == (
        "REJECTED",
        "PARTICIPANT_ERROR",
    )
    assert all(done[r.customer_id]["status"] == "ACTIVE" for r in others)
    assert len(letters) == 1
    assert letters[0].headers["dlq_reason"] == "HANDLER_ERROR"
    assert "template engine crashed" in letters[0].headers["dlq_error"]
    assert await query(
        own_stack.database_url,
        "SELECT status FROM customer_wallets WHERE customer_id = :c",
        c=victim.customer_id,
    ) == [("CLOSED",)]
