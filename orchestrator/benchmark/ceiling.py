"""The ceiling: a bare aiokafka orchestrator and participants, same message flow, no database.

It keeps saga state in memory and commits nothing anywhere: what it reaches is the most a
Kafka design in Python can do on this broker and machine, not a usable system.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from events.bench import delivery_fails
from orchestrator.benchmark.scenarios import STANDARD
from orchestrator.kafka import client_kwargs
from orchestrator.settings import Settings

PREFIX: Final = "ceiling."
REQUESTED: Final = PREFIX + "order-placed"
STATUS: Final = PREFIX + "status"
REPLIES: Final = PREFIX + "replies"
STEPS: Final = ("payment", "store", "delivery")
COMMANDS: Final = {step: f"{PREFIX}{step}.commands" for step in STEPS}
TOPICS: Final = (REQUESTED, STATUS, REPLIES, *COMMANDS.values())

SCENARIO = replace(STANDARD, name="ceiling", request_topic=REQUESTED, status_topic=STATUS)
"""The standard saga's traffic, on the ceiling's own topics."""

FORWARD = ("ReservePayment", "ReserveStock", "CreateDelivery")
BACKWARD = ("RefundPayment", "ReleaseStock")


async def run_ceiling(settings: Settings, stop: Callable[[], bool]) -> None:
    kafka = client_kwargs(settings)
    producer = AIOKafkaProducer(**kafka, linger_ms=1, acks=1)
    await producer.start()
    sagas: dict[str, list[object]] = {}  # order_id -> [step index, compensating, reason]

    async def consume(
        topics: list[str],
        group: str,
        handle: Callable[[str, dict[str, object]], list[tuple[str, str, dict[str, object]]]],
    ) -> None:
        consumer = AIOKafkaConsumer(
            *topics,
            **kafka,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=settings.consumer_fetch_max_wait_ms,
            session_timeout_ms=settings.consumer_session_timeout_ms,
            heartbeat_interval_ms=settings.consumer_heartbeat_interval_ms,
        )
        await consumer.start()
        try:
            while not stop():
                batches = await consumer.getmany(
                    timeout_ms=50, max_records=settings.consumer_max_batch
                )
                pending = []
                for records in batches.values():
                    for record in records:
                        for topic, key, body in handle(record.topic, json.loads(record.value)):
                            pending.append(
                                await producer.send(
                                    topic, json.dumps(body).encode(), key=key.encode()
                                )
                            )
                if pending:
                    await asyncio.gather(*pending)
                    await consumer.commit()
        finally:
            await consumer.stop()

    def orchestrate(
        topic: str, body: dict[str, object]
    ) -> list[tuple[str, str, dict[str, object]]]:
        order_id = str(body["order_id"])
        if topic == REQUESTED:
            sagas[order_id] = [0, False, None]
            return [(COMMANDS["payment"], order_id, {"kind": FORWARD[0], "order_id": order_id})]
        state = sagas[order_id]
        index, compensating = int(state[0]), bool(state[1])  # type: ignore[call-overload]
        if not compensating and body["kind"] == "StepFailed":
            state[1], state[2] = True, body["reason"]
            index -= 1
            state[0] = index
            return [
                (COMMANDS[STEPS[index]], order_id, {"kind": BACKWARD[index], "order_id": order_id})
            ]
        if compensating:
            index -= 1
            state[0] = index
            if index >= 0:
                return [
                    (
                        COMMANDS[STEPS[index]],
                        order_id,
                        {"kind": BACKWARD[index], "order_id": order_id},
                    )
                ]
            del sagas[order_id]
            return [
                (
                    STATUS,
                    order_id,
                    {"order_id": order_id, "status": "CANCELLED", "reason": state[2]},
                )
            ]
        index += 1
        state[0] = index
        if index < len(STEPS):
            return [
                (COMMANDS[STEPS[index]], order_id, {"kind": FORWARD[index], "order_id": order_id})
            ]
        del sagas[order_id]
        return [(STATUS, order_id, {"order_id": order_id, "status": "CONFIRMED", "reason": None})]

    def participate(
        topic: str, body: dict[str, object]
    ) -> list[tuple[str, str, dict[str, object]]]:
        order_id = str(body["order_id"])
        if body["kind"] == "CreateDelivery" and delivery_fails(order_id):
            reply: dict[str, object] = {
                "kind": "StepFailed",
                "order_id": order_id,
                "reason": "NO_DELIVERY_CAPACITY",
            }
        else:
            reply = {"kind": "Done", "order_id": order_id}
        return [(REPLIES, order_id, reply)]

    try:
        await asyncio.gather(
            consume([REQUESTED, REPLIES], "ceiling.orchestrator", orchestrate),
            *(consume([COMMANDS[step]], f"ceiling.{step}", participate) for step in STEPS),
        )
    finally:
        await producer.stop()
