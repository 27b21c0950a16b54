"""midcall-sms producers: what a live-call process imports to text the caller.

Light on purpose: redis and pydantic only; no Celery, no provider SDKs.
"""

from producers.client import SmsClient
from producers.contract import (
    QUEUE,
    TASK_NAME,
    CallContext,
    ErrorCode,
    ErrorInfo,
    Event,
    Job,
    Status,
)
from producers.delivery import DeliveryResult
from producers.results import SendResult
from producers.sync_client import SyncSmsClient

__all__ = [
    "QUEUE",
    "TASK_NAME",
    "CallContext",
    "DeliveryResult",
    "ErrorCode",
    "ErrorInfo",
    "Event",
    "Job",
    "SendResult",
    "SmsClient",
    "Status",
    "SyncSmsClient",
]
