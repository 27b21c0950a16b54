"""Logging, configured in one place for the worker, the CLI and Celery's own loggers.

structlog renders JSON lines (or the console renderer on a terminal); stdlib loggers — Celery,
kombu — go through the same processors. A last processor masks anything that looks like a phone
number, so a number that slips into a message from a library is still not logged in full.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from producers.contract import mask_number
from worker.settings import Settings

_NUMBER = re.compile(r"\+\d{7,15}\b")


def mask_numbers(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    for key, value in event_dict.items():
        if isinstance(value, str) and "+" in value:
            event_dict[key] = _NUMBER.sub(lambda m: mask_number(m.group(0)) or "", value)
    return event_dict


def configure_logging(settings: Settings, *, stream: TextIO | None = None) -> None:
    stream = stream or sys.stderr
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        mask_numbers,
    ]
    console = settings.log_format == "console" or (settings.log_format == "auto" and stream.isatty())
    renderer: Processor = structlog.dev.ConsoleRenderer() if console else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
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
    # The Twilio SDK logs every request (URL and headers) at INFO.
    logging.getLogger("twilio.http_client").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def bind(**values: Any) -> None:
    structlog.contextvars.bind_contextvars(**values)


def clear() -> None:
    structlog.contextvars.clear_contextvars()
