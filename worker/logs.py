"""Logging, configured in one place for the worker, the CLI and Celery's own loggers.

structlog renders JSON lines (or the console renderer on a terminal); stdlib loggers — Celery,
kombu — go through the same processors. A last processor masks anything that looks like a phone
number, nested values and URL-encoded numbers included, so a number that slips into a message
from a library is still not logged in full. Message bodies are never logged (the canonical
`sms.send` line has their length and a hash).

Quieted below WARNING: the Twilio SDK's per-request lines (URL and headers), httpx's request
lines, and Celery's per-task "received"/"succeeded"/"retry" lines, which the canonical line
replaces — one line per outcome of one send.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from producers.contract import Event, Job, Status, mask_number, utcnow
from worker.settings import Settings

if TYPE_CHECKING:
    from worker.plan import SendPlan

_NUMBER = re.compile(r"(?:\+|%2[Bb])\d{7,15}\b")
#: Loggers whose INFO lines repeat what the canonical line says, or show request details.
QUIET_LOGGERS = ("twilio.http_client", "httpx", "celery.app.trace", "celery.worker.strategy")
#: The canonical line's logger (`sms.send`), and its stdlib twin for the level check.
log = structlog.get_logger("worker.send")
_send_log = logging.getLogger("worker.send")


def _mask_match(match: re.Match[str]) -> str:
    found = match.group(0)
    if found.startswith("+"):
        return mask_number(found) or ""
    return "%2B" + (mask_number("+" + found[3:]) or "")[1:]


def _mask(value: Any) -> Any:
    if isinstance(value, str):
        return _NUMBER.sub(_mask_match, value) if ("+" in value or "%2" in value) else value
    if isinstance(value, dict):
        return {key: _mask(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_mask(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_mask(item) for item in value)
    return value


def mask_numbers(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    for key, value in event_dict.items():
        event_dict[key] = _mask(value)
    return event_dict


def renders_json(settings: Settings, stream: TextIO) -> bool:
    """JSON unless `SMS_LOG_FORMAT=console`, or `auto` (the default) on a terminal."""
    if settings.log_format == "auto":
        return not stream.isatty()
    return settings.log_format == "json"


def configure_logging(
    settings: Settings,
    *,
    stream: TextIO | None = None,
    capture_warnings: bool = False,
    cache_loggers: bool = True,
) -> None:
    """Route structlog and stdlib logging to one handler on `stream` (default: standard error).

    `capture_warnings` sends `warnings.warn` through the same handler (the worker process; not
    in tests, where pytest turns warnings into errors). Tests pass `cache_loggers=False`: a
    cached logger keeps the configuration it was first used with.
    """
    stream = stream or sys.stderr
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        mask_numbers,
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if renders_json(settings, stream)
        else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=cache_loggers,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(settings.log_level.upper())
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    if capture_warnings:
        logging.captureWarnings(True)


def bind(**values: Any) -> None:
    structlog.contextvars.bind_contextvars(**values)


def clear() -> None:
    structlog.contextvars.clear_contextvars()


def send_line(
    job: Job,
    plan: SendPlan | None,
    event: Event,
    *,
    attempt: int,
    started: float,
    provider_ms: float | None = None,
    **extra: Any,
) -> None:
    """The canonical line: one per outcome of one delivery, with no number and no body (its
    length and hash); WARNING for `failed`. Nothing is built when the level is off."""
    failed = event.status == Status.FAILED
    if not _send_log.isEnabledFor(logging.WARNING if failed else logging.INFO):
        return
    fields: dict[str, Any] = {
        "job_id": job.job_id,
        "call_id": job.call.call_id,
        "agent_id": job.agent_id,
        "attempt": attempt,
        "outcome": event.status.value,
        "latency_ms": round((time.monotonic() - started) * 1000, 2),
        "queue_ms": round((utcnow() - job.created_at).total_seconds() * 1000, 1),
        "to": event.to,
    }
    if plan is not None:
        fields.update(
            provider=plan.connection.provider,
            connection=plan.connection.label,
            segments=plan.segments,
            encoding=plan.encoding,
            body_chars=len(plan.body),
            body_sha256=hashlib.sha256(plan.body.encode()).hexdigest()[:16],
        )
    if provider_ms is not None:
        fields["provider_ms"] = round(provider_ms, 2)
    if event.error is not None:
        fields.update(error_code=event.error.code.value, provider_code=event.error.provider_code)
    if event.provider_message_id:
        fields["provider_message_id"] = event.provider_message_id
    if event.possible_duplicate:
        fields["possible_duplicate"] = True
    fields.update(extra)
    (log.warning if failed else log.info)("sms.send", **fields)
