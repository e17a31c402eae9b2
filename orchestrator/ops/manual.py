"""Operator actions on one saga (retry a step, compensate), recorded with who and why."""

from __future__ import annotations

import uuid

from aiokafka.errors import KafkaConnectionError, KafkaError
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.engine.clock import AlignedClock
from orchestrator.engine.instance import SagaInstance
from orchestrator.engine.machine import RetryPolicy
from orchestrator.engine.outbox import OutboxRelay
from orchestrator.engine.runtime import SagaRuntime
from orchestrator.errors import KafkaUnavailable
from orchestrator.publisher import KafkaPublisher
from orchestrator.sagas import ALL_SAGAS
from orchestrator.settings import Settings
from orchestrator.writers import WriterLease
from schemas.sagas import orchestrator_outbox


async def act(
    settings: Settings,
    engine: AsyncEngine,
    saga_id: uuid.UUID,
    action: str,
    actor: str,
    why: str,
    writer: int | None = None,
) -> SagaInstance:
    """Apply ``retry`` or ``compensate`` in one transaction and publish what it sends.

    Uses a producer only: joining the orchestrator's consumer groups from a command line
    tool would make the running services rebalance. With ``writer`` (the id ``engine``'s
    connections carry), the services' sweepers leave its outbox rows to it while it runs.
    """
    clock = AlignedClock()
    publisher = KafkaPublisher(settings, f"{settings.group_prefix}-ops", clock)
    try:
        await publisher.start()
    except (KafkaConnectionError, KafkaError, OSError) as exc:
        await publisher.stop()
        raise KafkaUnavailable(
            f"cannot reach Kafka at {settings.kafka_bootstrap_servers}: {exc or type(exc).__name__}"
        ) from None
    lease = WriterLease(engine, writer) if writer is not None else None
    try:
        if lease is not None:
            await lease.hold()
        async with engine.connect() as conn:
            await clock.align(conn)
        relay = OutboxRelay(engine, orchestrator_outbox, publisher, writer=writer)
        policy = RetryPolicy(
            settings.step_timeout_s,
            settings.retry_budget,
            settings.retry_backoff_s,
            settings.retry_backoff_max_s,
        )
        runtime = SagaRuntime(engine, ALL_SAGAS, policy, relay, settings.max_message_bytes, clock)
        saved = await runtime.manual(saga_id, action, actor, why)
        await relay.drain()
        return saved
    finally:
        await publisher.stop()
        if lease is not None:
            await lease.release()
