"""What the service does with a verified inbound text: record it for the audit trail, then act on
opt-out keywords (STOP-family opts the writer out, START / UNSTOP / YES back in; `worker.optout`)."""

from __future__ import annotations

import redis

from worker import optout
from worker.config.models import Connection
from worker.inbound import InboundMessage, record
from worker.settings import Settings


def hand_on(
    client: redis.Redis, connection: Connection, message: InboundMessage, *, settings: Settings
) -> str:
    """Record the message (numbers masked, the text as length + hash) and apply its keyword; the
    outcome for the metrics: `opt_out`, `opt_in`, `help` or `received`."""
    record(client, message)
    action = optout.handle_inbound(client, connection, message, settings=settings)
    return action or "received"
