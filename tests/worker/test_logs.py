"""Logging: one pipeline for structlog and stdlib loggers, JSON or console, numbers masked."""

from __future__ import annotations

import io
import json
import logging
import random
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import structlog

from producers.contract import CallContext
from producers.jobs import build_job
from worker.config.models import SmsConfig
from worker.config.source import StaticConfigSource
from worker.logs import QUIET_LOGGERS, configure_logging, mask_numbers, renders_json
from worker.providers import ProviderPool
from worker.service import SmsService
from worker.settings import Settings

CALLER = "+14155551234"
MASKED = "+1415****234"


class TtyStream(io.StringIO):
    """An in-memory stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Each test configures logging its own way; the previous setup comes back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    yield
    root.handlers = handlers
    root.setLevel(level)
    for name, saved in levels.items():
        logging.getLogger(name).setLevel(saved)
    structlog.reset_defaults()


def configured(log_format: str = "auto", *, tty: bool = False) -> io.StringIO:
    stream = TtyStream() if tty else io.StringIO()
    settings = Settings(log_format=log_format)
    configure_logging(settings, stream=stream, cache_loggers=False)
    return stream


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line]


def test_numbers_are_masked_in_strings_nested_values_and_url_encoded_forms() -> None:
    """Every E.164 number is masked, inside text, dicts, lists and tuples, and as `%2B` in a form body."""
    event = {
        "event": f"texting {CALLER} now",
        "to": CALLER,
        "nested": {"numbers": [CALLER, ("+447700900123",)]},
        "form": "To=%2B14155551234&From=%2b15005550006",
    }
    masked = mask_numbers(None, "info", event)
    assert masked["event"] == f"texting {MASKED} now"
    assert masked["to"] == MASKED
    assert masked["nested"] == {"numbers": [MASKED, ("+4477****123",)]}
    assert masked["form"] == "To=%2B1415****234&From=%2B1500****006"
    assert CALLER not in json.dumps(masked)


def test_text_without_phone_numbers_is_left_alone() -> None:
    """Short digit runs, amounts and timestamps are not numbers and keep their value."""
    event = {"event": "retry in +5 s", "amount": "+12.50", "at": "2026-11-23T04:51:03+00:00", "n": 42}
    assert mask_numbers(None, "info", dict(event)) == event


@pytest.mark.parametrize(
    ("log_format", "tty", "json_expected"),
    [("auto", False, True), ("auto", True, False), ("json", True, True), ("console", False, False)],
    ids=["auto-pipe", "auto-terminal", "json-on-terminal", "console-on-pipe"],
)
def test_the_renderer_is_json_by_default_and_console_on_a_terminal(
    log_format: str, tty: bool, json_expected: bool
) -> None:
    """`auto` renders JSON into a pipe and the console format on a terminal; an explicit format wins."""
    stream = configured(log_format, tty=tty)
    structlog.get_logger("test.renderer").info("hello.world", answer=42)
    line = stream.getvalue().strip()
    assert renders_json(Settings(log_format=log_format), stream) is json_expected
    if json_expected:
        record = json.loads(line)
        assert (record["event"], record["answer"], record["level"]) == ("hello.world", 42, "info")
        assert record["logger"] == "test.renderer"
        assert record["timestamp"].endswith("Z")
    else:
        assert "hello.world" in line and "answer" in line
        with pytest.raises(json.JSONDecodeError):
            json.loads(line)


def test_stdlib_records_from_libraries_are_json_and_masked() -> None:
    """A Celery or kombu record goes through the same processors: a JSON line, numbers masked."""
    stream = configured("json")
    logging.getLogger("celery.worker.consumer").warning("could not text %s", CALLER)
    [record] = json_lines(stream)
    assert record == {**record, "event": f"could not text {MASKED}", "level": "warning"}
    assert record["logger"] == "celery.worker.consumer"


def test_exceptions_are_rendered_into_the_line_and_masked() -> None:
    """A logged exception becomes an `exception` field, with numbers in its message masked."""
    stream = configured("json")
    try:
        raise ValueError(f"bad number {CALLER}")
    except ValueError:
        structlog.get_logger("test.exc").exception("send.crashed")
    [record] = json_lines(stream)
    assert "ValueError: bad number " + MASKED in record["exception"]
    assert CALLER not in stream.getvalue()


def test_noisy_loggers_are_quieted_below_warning() -> None:
    """Twilio's per-request lines and httpx's and Celery's per-task INFO lines are dropped; warnings stay."""
    stream = configured("json")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).info("per-request detail")
    logging.getLogger("twilio.http_client").warning("twilio is unhappy")
    logging.getLogger("celery.apps.worker").info("worker ready")
    assert [r["event"] for r in json_lines(stream)] == ["twilio is unhappy", "worker ready"]


def test_the_canonical_line_has_the_send_but_no_number_and_no_body(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """One `sms.send` line per outcome, with job, call, agent, provider, attempt, latency and the
    body's length and hash, never the body nor the full number."""
    stream = configured("json")
    settings = Settings(redis_url=redis_url)
    config = SmsConfig.model_validate(
        {
            "connections": [{"label": "Sandbox", "provider": "sandbox", "default": True}],
            "agents": {
                "agent_abc123": {"voice_tools": {"sms_mid_call": {"enabled": True, "provider": "sandbox"}}}
            },
        }
    )
    pool = ProviderPool(settings, redis_client)
    service = SmsService(settings, redis_client, StaticConfigSource(config), pool, rng=random.Random(1))
    call = CallContext(call_id="CA-log", direction="inbound", from_number=CALLER, to_number="+14155550000")
    body = "Your one-time code is 731904"
    job = build_job(agent_id="agent_abc123", call=call, message=body)
    try:
        assert service.handle(job.model_dump(mode="json"), attempt=1, owner="w1") is None
    finally:
        pool.close()
    [line] = [r for r in json_lines(stream) if r["event"] == "sms.send"]
    assert line["job_id"] == job.job_id
    assert (line["call_id"], line["agent_id"], line["provider"]) == ("CA-log", "agent_abc123", "sandbox")
    assert (line["attempt"], line["outcome"], line["to"]) == (1, "accepted", MASKED)
    assert line["latency_ms"] >= 0 and line["provider_ms"] >= 0
    assert line["body_chars"] == len(body) and len(line["body_sha256"]) == 16
    assert "731904" not in stream.getvalue()
    assert CALLER not in stream.getvalue()
