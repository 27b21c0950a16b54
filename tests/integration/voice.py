"""Shared by the voice-agent adapter tests: a sandbox worker's config and the status poll's step."""

from __future__ import annotations

from typing import Any

import redis

from producers.contract import SANDBOX_OUTBOX_KEY
from worker.providers.sandbox import SandboxProvider, receipt_key
from worker.receipts import apply_receipt

AGENT_ID = "agent_voice"
CALLER = "+14155551234"
OUR_NUMBER = "+14155550000"
#: Sandbox recipients whose status poll says delivered / undelivered (30007, carrier filtering).
DELIVERED = "+15005550012"
UNDELIVERED = "+15005550013"
TEMPLATE = "Your appointment is confirmed for {date} at {time}."
CONFIG: dict[str, Any] = {
    "connections": [{"label": "Sandbox", "provider": "sandbox", "default": True, "from_number": OUR_NUMBER}],
    "agents": {
        AGENT_ID: {
            "voice_tools": {
                "sms_mid_call": {
                    "enabled": True,
                    "provider": "sandbox",
                    "recipient_policy": "any",
                    "templates": {"booking": TEMPLATE},
                    "max_per_call": 10,
                }
            }
        }
    },
}


def poll_sandbox(redis_url: str, message_id: str) -> str:
    """What the worker's status poll does for one sandbox message: read its receipt, apply it."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        stored = client.get(receipt_key(message_id))
        status, _, code = str(stored or "sent:").partition(":")
        update = SandboxProvider.receipt({"message_id": message_id, "status": status, "error_code": code})
        return apply_receipt(client, update)
    finally:
        client.close()


def outbox(redis_url: str) -> list[dict[str, str]]:
    """The sandbox outbox: every text a phone would have received."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        entries: list[tuple[str, dict[str, str]]] = client.xrange(SANDBOX_OUTBOX_KEY)  # type: ignore[assignment]
        return [fields for _, fields in entries]
    finally:
        client.close()


def clear_outbox(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        client.delete(SANDBOX_OUTBOX_KEY)
    finally:
        client.close()
