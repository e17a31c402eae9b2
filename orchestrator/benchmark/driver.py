"""The load generator: a closed loop keeping C sagas in flight, timing each one end to end."""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import time
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition
from rich.progress import Progress

from orchestrator.benchmark.scenarios import Scenario
from orchestrator.fetch_pacing import FetchPacing
from orchestrator.kafka import client_kwargs
from orchestrator.settings import Settings


@dataclass
class DriveResult:
    sagas: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.sagas / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return 0.0
        if len(self.latencies_ms) == 1:
            return self.latencies_ms[0]
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[int(q) - 1]


async def drive(
    settings: Settings,
    scenario: Scenario,
    run_id: str,
    total: int,
    warmup: int,
    concurrency: int,
    progress: Progress | None = None,
    label: str = "sagas",
    timeout_s: float = 600.0,
) -> DriveResult:
    """Publish ``warmup + total`` requests, C at a time; measure the last ``total``.

    The rate's window runs from the ``warmup``-th outcome (the first send, with no warm-up),
    or from the send of the first measured saga when that came earlier, to the last outcome:
    a short run cannot look faster than its sagas' own latency allows, and a long one loses
    at most one saga's latency from its window.
    """
    kafka = client_kwargs(settings)
    producer = AIOKafkaProducer(**kafka, linger_ms=0, acks=1)
    consumer = AIOKafkaConsumer(
        **kafka,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.consumer_fetch_max_wait_ms,
    )
    # paced as the services' consumers are, so the last hop of a saga is not the driver's
    pacing = FetchPacing.configured(settings)
    request_topic, status_topic = scenario.request_topic, scenario.status_topic
    await producer.start()
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(status_topic)
        while not partitions:
            await asyncio.sleep(0.1)
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(status_topic)
        consumer.assign([TopicPartition(status_topic, p) for p in partitions])
        await consumer.seek_to_beginning()
        gc.freeze()  # a full collection of the process's start-up objects would pause the timing

        everything = warmup + total
        sent_at: dict[str, float] = {}
        done = 0
        result = DriveResult(total, 0.0)
        task = progress.add_task(label, total=everything) if progress is not None else None

        async def send(index: int) -> None:
            order_id = f"{run_id}-{index:07d}"
            sent_at[order_id] = time.perf_counter()
            await producer.send(request_topic, scenario.body(order_id), key=order_id.encode())

        next_index = 0
        measured_from = time.perf_counter() if warmup == 0 else 0.0
        first_measured_sent: float | None = None
        for _ in range(min(concurrency, everything)):
            await send(next_index)
            next_index += 1
        deadline = time.monotonic() + timeout_s
        while done < everything:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{everything - done} sagas unfinished after {timeout_s}s")
            batches = await consumer.getmany(timeout_ms=100, max_records=10_000)
            now = time.perf_counter()
            if pacing is not None:
                pacing.after(consumer, sum(len(records) for records in batches.values()))
            for records in batches.values():
                for record in records:
                    status = json.loads(record.value)
                    order_id = status.get(scenario.id_field, "")
                    started = sent_at.pop(order_id, None)
                    if started is None:
                        continue  # another run's outcome, or a duplicate
                    done += 1
                    if done == warmup:
                        measured_from = now
                    if done > warmup:
                        if first_measured_sent is None or started < first_measured_sent:
                            first_measured_sent = started
                        result.latencies_ms.append((now - started) * 1_000)
                    if (status.get("status"), status.get("reason")) != scenario.expected(order_id):
                        result.wrong.append(order_id)  # warm-up sagas are checked too
                    if next_index < everything:
                        await send(next_index)
                        next_index += 1
            if progress is not None and task is not None:
                progress.update(task, completed=done)
        if first_measured_sent is not None:
            measured_from = min(measured_from, first_measured_sent)
        result.seconds = time.perf_counter() - measured_from
        return result
    finally:
        await consumer.stop()
        await producer.stop()
