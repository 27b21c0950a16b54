"""The shared pieces every publisher uses: the event factory, the stream writer, the error
formatter and the bytes-or-str helper (`producers/events.py`, `producers/contract.py`)."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from pydantic import BaseModel, ValidationError, model_validator

from producers.contract import (
    EVENT_FIELD,
    EVENTS_TTL_SECONDS,
    ErrorCode,
    ErrorInfo,
    Event,
    Status,
    as_text,
    events_key,
    tool_message,
    validation_problems,
)
from producers.events import lua_publish, new_event, publish


@pytest.mark.parametrize(
    ("status", "terminal"),
    [
        (Status.QUEUED, False),
        (Status.SENDING, False),
        (Status.RETRYING, False),
        (Status.ACCEPTED, True),
        (Status.FAILED, True),
        (Status.SENT, False),
        (Status.DELIVERED, False),
        (Status.UNDELIVERED, False),
    ],
)
def test_new_event_is_terminal_exactly_for_accepted_and_failed(status: Status, terminal: bool) -> None:
    """Only `accepted` and `failed` end a job unless the caller says otherwise."""
    assert new_event("j1", "c1", status).terminal is terminal
    assert new_event("j1", "c1", status, terminal=not terminal).terminal is (not terminal)


def test_new_event_says_the_sentence_of_its_status_and_error() -> None:
    """The default tool message is the contract's sentence for the status, the error's code, its
    message as the detail (shown for template errors) and its cause."""
    error = ErrorInfo(code=ErrorCode.TEMPLATE_ERROR, message="missing variable 'date'")
    failed = new_event("j1", "c1", Status.FAILED, error=error, attempt=1)
    assert failed.tool_message == tool_message(Status.FAILED, ErrorCode.TEMPLATE_ERROR, error.message)
    assert "missing variable 'date'" in failed.tool_message
    assert failed.error == error and failed.attempt == 1
    limited = new_event(
        "j1", "c1", Status.RETRYING, error=ErrorInfo(code=ErrorCode.RATE_LIMITED, message="x", cause="sender")
    )
    assert limited.tool_message == "SMS not sent yet: it is waiting for its turn on the sending number."
    assert new_event("j1", "c1", Status.ACCEPTED).tool_message == "SMS sent."
    assert new_event("j1", "c1", Status.QUEUED, tool_message="custom").tool_message == "custom"


def test_publish_appends_the_event_and_refreshes_the_channels_ttl(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """`publish` on a client: the event's JSON under the `event` field of the call's stream, which
    then expires a day after its last event."""
    event = new_event("j1", "CA-ev", Status.ACCEPTED)
    publish(redis_client, event)
    entries: Any = redis_client.xrange(events_key("CA-ev"))
    [(_, fields)] = entries
    assert Event.model_validate_json(fields[EVENT_FIELD.encode()]) == event
    assert 0 < redis_client.ttl(events_key("CA-ev")) <= EVENTS_TTL_SECONDS


def test_lua_publish_is_the_same_write_inside_a_script(redis_client: redis.Redis) -> None:
    """The Lua statements write the same entry and TTL, and with `id_var` hand back the entry's id."""
    script = f"{lua_publish('KEYS[1]', 'ARGV[1]', id_var='id')}\nreturn id"
    event = new_event("j1", "CA-lua", Status.SENDING)
    entry_id = redis_client.eval(script, 1, events_key("CA-lua"), event.dumps())
    entries: Any = redis_client.xrange(events_key("CA-lua"))
    assert [as_text(entry_id)] == [as_text(i) for i, _ in entries]
    assert redis_client.ttl(events_key("CA-lua")) > 0


class _Sample(BaseModel):
    name: str
    count: int

    @model_validator(mode="after")
    def _positive(self) -> _Sample:
        if self.count < 0:
            raise ValueError("count must not be negative")
        return self


def _error(data: dict[str, Any]) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        _Sample.model_validate(data)
    return caught.value


def test_validation_problems_name_the_field_never_the_value() -> None:
    """`field: message` pairs, the empty location as `root`, pydantic's "Value error, " prefix
    dropped, the offending value never shown, and `limit` keeping the first errors."""
    exc = _error({"name": 12345678, "count": "secret-value"})
    text = validation_problems(exc)
    assert text.startswith("name: ") and "; count: " in text
    assert "secret-value" not in text and "12345678" not in text
    assert validation_problems(exc, limit=1).count(":") == 1
    whole = _error({"name": "a", "count": -1})
    assert validation_problems(whole, root="job") == "job: count must not be negative"
    assert validation_problems(whole) == "count must not be negative"


def test_as_text_reads_bytes_and_str_alike() -> None:
    """Replies of a decoding and a non-decoding client read the same."""
    assert as_text(b"1700000000000-0") == as_text("1700000000000-0") == "1700000000000-0"
    assert as_text(7) == "7"
