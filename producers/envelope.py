"""Celery task messages (protocol 2, JSON) for the Redis transport, built without Celery.

Why by hand: `Celery.send_task` is synchronous and takes a kombu connection from a pool, so an
asyncio producer would have to hop to a thread for every SMS. A job is one `LPUSH` of this
envelope onto the `sms` list — exactly what kombu's Redis transport writes — so the async
client enqueues in one non-blocking round trip. `tests/producers/test_envelope.py` holds this
format to the one Celery itself produces, and the integration tests have real workers consume it.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import uuid
from typing import Any

from producers.contract import QUEUE, TASK_NAME, Job, mask_number

_ORIGIN = f"{os.getpid()}@{socket.gethostname()}"


def job_summary(job: Job) -> str:
    """What Flower and Celery's logs show instead of the job: no number, no message text."""
    body = f"template={job.template}" if job.template else f"message=<{len(job.message or '')} chars>"
    return (
        f"{{'job': '<job {job.job_id} agent={job.agent_id} call={job.call.call_id} "
        f"to={mask_number(job.to) or 'customer'} {body}>'}}"
    )


def task_message(job: Job, job_json: str | None = None) -> bytes:
    """The Redis list entry that makes a Celery worker run `sms.send(job=...)`."""
    job_json = job_json if job_json is not None else job.model_dump_json(exclude_none=True)
    return celery_message(TASK_NAME, job.job_id, f'{{"job": {job_json}}}', kwargsrepr=job_summary(job))


def celery_message(
    task: str, task_id: str, kwargs_json: str, *, kwargsrepr: str, eta: str | None = None
) -> bytes:
    """A Celery protocol-2 message for `task(**kwargs)` on the queue `sms`, as kombu's Redis
    transport stores it; `eta` (ISO 8601) makes the worker hold it until then."""
    body = f'[[], {kwargs_json}, {{"callbacks": null, "errbacks": null, "chain": null, "chord": null}}]'
    message: dict[str, Any] = {
        "body": base64.b64encode(body.encode()).decode("ascii"),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py",
            "task": task,
            "id": task_id,
            "shadow": None,
            "eta": eta,
            # The job's own `expires_at` is enforced by the task, which reports `expired`; a Celery
            # `expires` would revoke the message silently and leave the caller without an outcome.
            "expires": None,
            "group": None,
            "group_index": None,
            "retries": 0,
            "timelimit": [None, None],
            "root_id": task_id,
            "parent_id": None,
            "argsrepr": "()",
            "kwargsrepr": kwargsrepr,
            "origin": _ORIGIN,
            "ignore_result": True,
            "replaced_task_nesting": 0,
            "stamped_headers": None,
            "stamps": {},
        },
        "properties": {
            "correlation_id": task_id,
            "reply_to": "",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": QUEUE},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return json.dumps(message, separators=(",", ":")).encode()
