"""Building a `Job` from the arguments of `send()`; bad arguments raise here, before any I/O."""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from datetime import timedelta

from pydantic import ValidationError

from producers.contract import CallContext, Job, VariableValue, utcnow, validation_problems
from producers.tracing import current_traceparent

#: How long a job may wait before it is dropped as `expired` instead of sent late.
DEFAULT_EXPIRES_IN = 300.0
#: The longest a job may wait (a day): a text for a live call is useless later than that.
MAX_EXPIRES_IN = 86400.0


def new_job_id() -> str:
    return uuid.uuid4().hex


def build_job(
    *,
    agent_id: str,
    call: CallContext,
    template: str | None = None,
    variables: Mapping[str, VariableValue] | None = None,
    message: str | None = None,
    to: str | None = None,
    from_: str | None = None,
    connection: str | None = None,
    idempotency_key: str | None = None,
    expires_in: float = DEFAULT_EXPIRES_IN,
    job_id: str | None = None,
    traceparent: str | None = None,
) -> Job:
    """A validated job; raises `ValueError` (or `TypeError`) for arguments no worker could accept.

    `traceparent` defaults to the active OpenTelemetry span's, when there is one (producers/tracing.py).
    """
    if not isinstance(call, CallContext):
        raise TypeError(f"'call' must be a CallContext, not {type(call).__name__}")
    if (
        isinstance(expires_in, bool)
        or not isinstance(expires_in, int | float)
        or not math.isfinite(expires_in)
        or not 0 < expires_in <= MAX_EXPIRES_IN
    ):
        raise ValueError(f"'expires_in' must be positive and finite, at most {MAX_EXPIRES_IN:.0f} seconds")
    if variables is not None and not isinstance(variables, Mapping):
        raise TypeError(f"'variables' must be a mapping of names to values, not {type(variables).__name__}")
    job_id = job_id or new_job_id()
    now = utcnow()
    try:
        return Job(
            job_id=job_id,
            idempotency_key=idempotency_key or job_id,
            agent_id=agent_id,
            call=call,
            to=to,
            from_=from_,
            connection=connection,
            template=template,
            variables=dict(variables or {}),
            message=message,
            created_at=now,
            expires_at=now + timedelta(seconds=expires_in),
            traceparent=traceparent or current_traceparent(),
        )
    except ValidationError as exc:
        raise ValueError(f"invalid SMS request: {validation_problems(exc, root='job')}") from None
