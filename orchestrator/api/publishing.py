"""The API's outbox: the upstream record that starts a saga commits in the transaction of the
request's own rows, and is published right after commit. A crash or a broker failure between
the two leaves the record in ``api_outbox``, where the process's sweeper (or the next
process's) publishes it."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from events.base import UpstreamRecord
from events.envelope import Envelope
from orchestrator.api.sagas import find_on
from orchestrator.engine.outbox import OutboundMessage, OutboxRelay, OutboxRow, write_outbox

SOURCE = "orchestra/api"


class ApiOutbox:
    def __init__(self, relay: OutboxRelay) -> None:
        self.relay = relay

    async def start_saga(
        self,
        conn: AsyncConnection,
        saga_type: str,
        topic: str,
        record: UpstreamRecord,
        correlation_id: str,
    ) -> Sequence[OutboxRow]:
        """Write ``record`` in the caller's transaction unless its saga (by the record's
        business key) exists already; ``publish`` the rows after commit. A
        request asked again before its saga starts writes the record again: the saga is
        started once all the same (by business key)."""
        if await find_on(conn, saga_type, record.business_key()) is not None:
            return []
        envelope = Envelope(type=record.event_type, source=SOURCE, correlation_id=correlation_id)
        message = OutboundMessage(
            topic, record.record_key(), envelope.headers(), record.model_dump_json().encode()
        )
        return await write_outbox(conn, self.relay.table, [message])

    def publish(self, rows: Sequence[OutboxRow]) -> None:
        """Publish committed rows, in the background (the request waits on its saga's row);
        the sweeper leaves them to this until they are out, and takes them if that fails."""
        self.relay.publish_soon(rows)
