"""What the service does with a verified inbound text: it records it for the audit trail."""

from __future__ import annotations

import redis

from worker.config.models import Connection
from worker.inbound import InboundMessage, record


def hand_on(client: redis.Redis, connection: Connection, message: InboundMessage) -> str:
    """Record the message (numbers masked, the text as length + hash); the outcome for the metrics."""
    record(client, message)
    return "received"
