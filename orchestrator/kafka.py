"""Kafka connection options (security passed through) and explicit topic creation."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterable
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.protocol import ConsumerProtocol
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    TopicAlreadyExistsError,
    for_code,
)
from aiokafka.helpers import create_ssl_context
from aiokafka.protocol.group import JoinGroupRequest
from faststream.security import (
    BaseSecurity,
    SASLPlaintext,
    SASLScram256,
    SASLScram512,
)

from orchestrator import tolerant_records
from orchestrator.errors import KafkaUnavailable, SettingsError
from orchestrator.settings import Settings

log = structlog.get_logger(__name__)

tolerant_records.install()  # every consumer of the process, the CLI's too


def _ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    try:
        context: ssl.SSLContext = create_ssl_context(
            cafile=settings.kafka_ssl_cafile,
            certfile=settings.kafka_ssl_certfile,
            keyfile=settings.kafka_ssl_keyfile,
        )
    except (OSError, ssl.SSLError) as exc:  # a file that is not PEM, a key that does not fit
        raise SettingsError(f"bad settings: ORCHESTRA_KAFKA_SSL_*: {exc}") from None
    return context


def broker_security(settings: Settings) -> BaseSecurity | None:
    """FastStream's security object for the configured protocol, or None for PLAINTEXT."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    ssl_context = _ssl_context(settings)
    if protocol == "SSL":
        return BaseSecurity(ssl_context=ssl_context, use_ssl=True)
    username = settings.kafka_sasl_username or ""
    password = (
        settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else ""
    )
    use_ssl = protocol == "SASL_SSL"
    kinds = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}
    kind = kinds[settings.kafka_sasl_mechanism or "PLAIN"]
    return kind(username, password, ssl_context=ssl_context, use_ssl=use_ssl)


def admin_kwargs(settings: Settings) -> dict[str, object]:
    """aiokafka client options with the same security as the broker."""
    options: dict[str, object] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
        "request_timeout_ms": 15_000,
    }
    if settings.kafka_security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism or "PLAIN"
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = (
            settings.kafka_sasl_password.get_secret_value()
            if settings.kafka_sasl_password
            else None
        )
    ssl_context = _ssl_context(settings)
    if ssl_context is not None:
        options["ssl_context"] = ssl_context
    return options


def client_kwargs(settings: Settings) -> dict[str, object]:
    """Options for a producer or consumer (``admin_kwargs`` less the admin's request timeout)."""
    return {k: v for k, v in admin_kwargs(settings).items() if k != "request_timeout_ms"}


REQUEST_OVERHEAD_BYTES = 64_000
"""Room in a produce request beyond the message itself: headers, batch and request framing."""


def max_request_size(settings: Settings) -> int:
    """A producer's ``max_request_size``: the configured largest message, and its framing."""
    return settings.max_message_bytes + REQUEST_OVERHEAD_BYTES


async def ensure_topics(
    settings: Settings,
    topics: Iterable[str],
    partitions: int | None = None,
    timeout_s: float = 20.0,
) -> None:
    """Create the missing topics explicitly, with the configured partitions and replication."""
    admin = AIOKafkaAdminClient(**admin_kwargs(settings))
    try:
        await asyncio.wait_for(admin.start(), timeout=timeout_s)
    except (KafkaConnectionError, KafkaError, OSError, TimeoutError) as exc:
        await admin.close()
        raise KafkaUnavailable(
            f"cannot reach Kafka at {settings.kafka_bootstrap_servers}: {exc or type(exc).__name__}"
        ) from None
    try:
        existing = set(await admin.list_topics())
        missing = sorted(set(topics) - existing)
        count = partitions or settings.topic_partitions
        await _warn_of_other_counts(admin, sorted(set(topics) & existing), count)
        if not missing:
            return
        new = [NewTopic(name, count, settings.topic_replication_factor) for name in missing]
        with contextlib.suppress(TopicAlreadyExistsError):  # a concurrent starter made them
            answer = await admin.create_topics(new)
            refused = topics_refused(answer)
            if refused:
                raise KafkaUnavailable(
                    f"Kafka did not create {len(refused)} topics ({', '.join(refused)}); "
                    f"{count} partitions, replication factor {settings.topic_replication_factor}"
                    " (ORCHESTRA_TOPIC_PARTITIONS, ORCHESTRA_TOPIC_REPLICATION_FACTOR)"
                )
    finally:
        await admin.close()


def topics_refused(answer: Any) -> list[str]:
    """The topics a CreateTopics answer refused, each with why (one made meanwhile by a
    concurrent starter is not refused): aiokafka returns the answer, it raises on none."""
    refused = []
    for entry in getattr(answer, "topic_errors", ()):
        topic, code = entry[0], entry[1]
        if code in (0, TopicAlreadyExistsError.errno):
            continue
        why = entry[2] if len(entry) > 2 and entry[2] else for_code(code).__name__
        refused.append(f"{topic}: {why}")
    return refused


async def _warn_of_other_counts(admin: AIOKafkaAdminClient, topics: list[str], count: int) -> None:
    """The setting only shapes topics yet to be made: say so when existing ones differ (an
    earlier start with another setting, a broker that auto-created a topic)."""
    if not topics:
        return
    try:
        described = await admin.describe_topics(topics)
    except (KafkaError, OSError) as exc:
        log.debug("topics not described", error=str(exc))
        return
    other = {
        str(t["topic"]): len(t["partitions"])
        for t in described
        if t.get("partitions") and len(t["partitions"]) != count
    }
    if other:
        log.warning(
            "topics made before with another partition count; the setting applies only to "
            "new topics",
            setting=count,
            topics=other,
        )


END_WAIT_S = 5.0
"""How long ``end_offsets`` waits for a fetch to report every partition's high watermark."""


async def end_offsets(
    consumer: AIOKafkaConsumer,
    partitions: list[TopicPartition],
    *,
    strict: bool = False,
    listed: dict[TopicPartition, int] | None = None,
) -> dict[TopicPartition, int]:
    """Each partition's end: the larger of the end offset the broker lists and the high
    watermark a fetch from there reports. Tansu 0.6 lists the first offset of a partition's
    last record batch, plus one, so the rest of that batch would not count. Takes over the
    consumer's assignment. A partition with no high watermark within ``END_WAIT_S`` keeps its
    listed end, or, with ``strict``, is a KafkaUnavailable. ``listed``: the broker's list, when
    the caller has it already."""
    if listed is None:
        listed = await consumer.end_offsets(partitions)
    listed = {tp: listed[tp] for tp in partitions}
    consumer.assign(partitions)
    for tp, end in listed.items():
        consumer.seek(tp, end)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + END_WAIT_S
    while any(consumer.highwater(tp) is None for tp in partitions) and loop.time() < deadline:
        await consumer.getmany(timeout_ms=100)
    unknown = [f"{tp.topic}[{tp.partition}]" for tp in partitions if consumer.highwater(tp) is None]
    if unknown and strict:
        raise KafkaUnavailable(f"no high watermark for {', '.join(unknown)}")
    if unknown:
        log.warning("no high watermark; the listed end is used", partitions=unknown)
    return {tp: max(end, consumer.highwater(tp) or 0) for tp, end in listed.items()}


async def group_lag(settings: Settings, group: str, topics: Iterable[str]) -> int:
    """Records of ``topics`` that consumer group ``group`` has not committed yet."""
    wanted = set(topics)
    consumer = AIOKafkaConsumer(**admin_kwargs(settings))
    admin = AIOKafkaAdminClient(**admin_kwargs(settings))
    try:
        await consumer.start()
        await admin.start()
        partitions = [
            TopicPartition(topic, partition)
            for topic in sorted(wanted)
            for partition in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        ends = await end_offsets(consumer, partitions) if partitions else {}
        starts = await consumer.beginning_offsets(partitions) if partitions else {}
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
        return sum(
            max(0, end - _committed(committed, tp, starts.get(tp, 0))) for tp, end in ends.items()
        )
    finally:
        await consumer.stop()
        await admin.close()


def _committed(committed: dict[TopicPartition, Any], partition: TopicPartition, start: int) -> int:
    """The group's committed offset of ``partition``; where the partition starts when the group
    has none there (the broker's -1), or one that retention has since deleted."""
    offset = committed[partition].offset if partition in committed else -1
    return max(start, offset)


async def list_topics(settings: Settings) -> list[str]:
    admin = AIOKafkaAdminClient(**admin_kwargs(settings))
    try:
        await admin.start()
        return list(await admin.list_topics())
    except (KafkaConnectionError, KafkaError, OSError) as exc:
        raise KafkaUnavailable(f"cannot reach Kafka: {exc or type(exc).__name__}") from None
    finally:
        await admin.close()


async def release_stale_leader(coordinator: Any, leader_id: str) -> str | None:
    """Free a group whose leader left during a rebalance, on the embedded broker (Tansu).

    Tansu 0.6.0 removes a member that sends LeaveGroup while its group is rebalancing but
    keeps it as the group's leader: every JoinGroup then names it, every other member's
    SyncGroup answers REBALANCE_IN_PROGRESS, and the group never forms again (a leader is
    only dropped when it misses its heartbeats as a member). One JoinGroup under the departed
    leader's member id makes it a member again; sending no heartbeat, it expires after the
    session timeout, which drops it as leader, and the next member to join leads.
    ``coordinator`` is the stuck consumer's aiokafka group coordinator; returns None once
    the broker took the JoinGroup, else what it answered.
    """
    topics = coordinator._subscription.topics
    protocols = []
    for assignor in coordinator._assignors:
        metadata = assignor.metadata(topics)
        protocols.append(
            (assignor.name, metadata if isinstance(metadata, bytes) else metadata.encode())
        )
    joined = await coordinator._send_req(
        JoinGroupRequest(
            coordinator.group_id,
            coordinator._session_timeout_ms,
            coordinator._rebalance_timeout_ms,
            leader_id,
            None,
            ConsumerProtocol.PROTOCOL_TYPE,
            protocols,
        )
    )
    if joined.error_code != 0:
        return f"JoinGroup answered error {joined.error_code}"
    return None
