"""Celery's consumer, with its hooks for messages it cannot run sending them to `sms:dead`.

Loaded by `worker_consumer` in worker/app.py. The transport (`worker/transport.py`) already
screens every entry's envelope, body and headers; what is left for Celery to find is a well-formed
task message for a task this worker does not have (an unknown task name), a message Celery's
strategy refuses, or content it cannot decode. Stock Celery logs those with the message body (which
holds phone numbers and texts) and drops them; here each is dead-lettered with one line that names
the reason only (`worker/deadletter.py`), and acknowledged.
"""

from __future__ import annotations

import json
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer

from producers.contract import QUEUE
from worker import deadletter
from worker.liveness import instance_id
from worker.transport import safe_text


class Consumer(CeleryConsumer):  # type: ignore[misc]  # celery is untyped
    def _dead_letter(self, message: Any, reason: str, detail: str) -> None:
        raw = message._raw if hasattr(message, "_raw") else None
        data = json.dumps(raw).encode() if raw is not None else bytes(message.body or b"")
        channel = message.channel
        policy = getattr(channel, "dead_letter_policy", deadletter.DEFAULT_POLICY)
        queue = (message.delivery_info or {}).get("routing_key") or QUEUE
        with channel.conn_or_acquire() as client:
            deadletter.push(
                client, data, reason=reason, detail=detail, queue=str(queue), worker=instance_id(),
                policy=policy,
            )  # fmt: skip
        message.ack_log_error(self._logger, self.connection_errors)

    @property
    def _logger(self) -> Any:
        from celery.worker.consumer.consumer import logger

        return logger

    def on_unknown_message(self, body: Any, message: Any) -> None:
        self._dead_letter(message, "unknown_message", "not a task message")

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        headers = message.headers if isinstance(message.headers, dict) else {}
        name = headers.get("task")
        shown = safe_text(name) if isinstance(name, str) else "?"
        self._dead_letter(message, "unknown_task", f"no task named {shown!r} here")

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        self._dead_letter(message, "invalid_task", type(exc).__name__)

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        self._dead_letter(message, "bad_body", f"cannot decode: {type(exc).__name__}")
