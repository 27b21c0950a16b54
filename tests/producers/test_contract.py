"""The wire contract: committed JSON Schemas, job validation, tool messages, number masking."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
from pydantic import ValidationError

from producers.contract import (
    DELIVERY_RANK,
    FINAL_DELIVERY_STATUSES,
    NOT_SENT_PREFIX,
    SCHEMA_DIR,
    SENT_MESSAGE,
    CallContext,
    ErrorCode,
    Event,
    Job,
    Status,
    json_schemas,
    mask_number,
    reason,
    tool_message,
    write_json_schemas,
)

REGENERATE = 'python -c "from producers.contract import write_json_schemas; write_json_schemas()"'

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def call(direction: str = "inbound") -> CallContext:
    return CallContext.model_validate(
        {
            "call_id": "CA42",
            "direction": direction,
            "from_number": "+14155551234",
            "to_number": "+14155550000",
        }
    )


def job_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "job_id": "job-1",
        "idempotency_key": "CA42:tool-call-7",
        "agent_id": "agent_abc123",
        "call": call().model_dump(),
        "template": "booking_confirmation",
        "variables": {"date": "March 10"},
        "created_at": NOW,
        "expires_at": NOW + timedelta(minutes=5),
    }
    data.update(overrides)
    return data


def schema_drift(directory: Path) -> list[str]:
    """The committed schema files under `directory` that differ from the models, with how to fix it."""
    problems = []
    for name, expected in json_schemas().items():
        path = directory / name
        if not path.exists():
            problems.append(f"{path} is missing")
        elif json.loads(path.read_text()) != expected:
            problems.append(f"{path} is out of date")
    if problems:
        problems.append(f"regenerate the schemas with: {REGENERATE}")
    return problems


# -- JSON Schemas ---------------------------------------------------------------------------------


def test_committed_schemas_match_the_models() -> None:
    """The JSON Schemas committed under producers/schemas equal the ones generated from the models."""
    problems = schema_drift(SCHEMA_DIR)
    assert not problems, "\n".join(problems)


def test_schema_drift_is_detected_and_explains_how_to_regenerate(tmp_path: Path) -> None:
    """A schema file that no longer matches the models is reported, with the command that fixes it."""
    write_json_schemas(tmp_path)
    assert schema_drift(tmp_path) == []
    stale = json.loads((tmp_path / "job.schema.json").read_text())
    stale["required"] = [*stale["required"], "no_such_field"]
    (tmp_path / "job.schema.json").write_text(json.dumps(stale))
    (tmp_path / "event.schema.json").unlink()

    problems = schema_drift(tmp_path)

    assert any("job.schema.json is out of date" in p for p in problems)
    assert any("event.schema.json is missing" in p for p in problems)
    assert problems[-1].endswith(REGENERATE)


def test_committed_job_schema_accepts_a_real_job_and_rejects_a_bodyless_one() -> None:
    """A job serialized by the models validates against the committed schema; one missing fields does not."""
    schema = json.loads((SCHEMA_DIR / "job.schema.json").read_text())
    job = Job.model_validate(job_data())
    jsonschema.validate(job.model_dump(mode="json"), schema)
    incomplete = job.model_dump(mode="json")
    del incomplete["call"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(incomplete, schema)


def test_committed_event_schema_accepts_a_real_event() -> None:
    """An event as the worker writes it validates against the committed event schema."""
    schema = json.loads((SCHEMA_DIR / "event.schema.json").read_text())
    event = Event(
        job_id="job-1",
        call_id="CA42",
        status=Status.ACCEPTED,
        terminal=True,
        at=NOW,
        to=mask_number("+14155551234"),
        tool_message=tool_message(Status.ACCEPTED),
    )
    jsonschema.validate(json.loads(event.dumps()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**json.loads(event.dumps()), "status": "read"}, schema)


@pytest.mark.parametrize("status", ["sent", "unconfirmed", "delivered", "undelivered"])
def test_committed_event_schema_accepts_delivery_events(status: str) -> None:
    """The delivery statuses receipts publish are in the committed event schema."""
    schema = json.loads((SCHEMA_DIR / "event.schema.json").read_text())
    event = Event(
        job_id="job-1",
        call_id="CA42",
        status=Status(status),
        terminal=False,
        at=NOW,
        tool_message=tool_message(Status(status)),
    )
    jsonschema.validate(json.loads(event.dumps()), schema)


# -- Job ------------------------------------------------------------------------------------------


def test_job_with_template_or_message_is_valid() -> None:
    """A job with exactly one of template or message validates."""
    assert Job.model_validate(job_data()).template == "booking_confirmation"
    free = Job.model_validate(job_data(template=None, variables={}, message="hello"))
    assert free.message == "hello"
    assert free.template is None


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"template": None}, id="neither"),
        pytest.param({"message": "hello"}, id="both"),
    ],
)
def test_job_requires_exactly_one_of_template_or_message(overrides: dict[str, Any]) -> None:
    """A job with neither or both of template and message is refused, naming both fields."""
    with pytest.raises(ValidationError, match="exactly one of 'template' or 'message'"):
        Job.model_validate(job_data(**overrides))


@pytest.mark.parametrize("field", ["created_at", "expires_at"])
def test_job_refuses_naive_datetimes(field: str) -> None:
    """A job whose created_at or expires_at has no timezone is refused."""
    with pytest.raises(ValidationError, match="must carry a timezone"):
        Job.model_validate(job_data(**{field: datetime(2030, 1, 1, 12, 0)}))


def test_job_accepts_iso_strings_with_an_offset() -> None:
    """Datetimes as ISO strings with an offset (the JSON wire form) validate and keep their timezone."""
    job = Job.model_validate(
        job_data(created_at="2030-01-01T12:00:00Z", expires_at="2030-01-01T12:05:00+00:00")
    )
    assert job.expires_at - job.created_at == timedelta(minutes=5)
    assert job.created_at.tzinfo is not None


def test_job_refuses_unknown_fields_and_other_versions() -> None:
    """Unknown top-level fields and a contract version other than 1 are refused."""
    with pytest.raises(ValidationError, match="extra"):
        Job.model_validate(job_data(priority="high"))
    with pytest.raises(ValidationError, match="v"):
        Job.model_validate(job_data(v=2))


# -- tool messages --------------------------------------------------------------------------------


def test_tool_message_for_accepted_is_exactly_sms_sent() -> None:
    """An accepted SMS is reported to the model as exactly "SMS sent."."""
    assert tool_message(Status.ACCEPTED) == "SMS sent."
    assert SENT_MESSAGE == "SMS sent."


@pytest.mark.parametrize("code", list(ErrorCode))
def test_tool_message_for_every_failure_code_says_not_sent_with_its_reason(code: ErrorCode) -> None:
    """Every error code has a non-empty reason and a failed SMS reads "SMS couldn't be sent: <reason>."."""
    text = tool_message(Status.FAILED, code)
    assert reason(code).strip()
    assert text.startswith("SMS couldn't be sent: ")
    assert text == f"{NOT_SENT_PREFIX}: {reason(code)}."
    assert "SMS sent" not in text


def test_reasons_differ_per_code() -> None:
    """Each error code has its own reason, so the agent can say something specific."""
    reasons = [reason(code) for code in ErrorCode]
    assert len(set(reasons)) == len(reasons)


def test_failed_without_a_code_still_says_not_sent() -> None:
    """A failure with no code still reads as not sent, with the generic provider reason."""
    assert tool_message(Status.FAILED) == f"{NOT_SENT_PREFIX}: {reason(ErrorCode.PROVIDER_ERROR)}."


@pytest.mark.parametrize("status", [*[s for s in Status if s != Status.ACCEPTED], "pending"])
def test_no_status_but_accepted_claims_the_sms_was_sent(status: Any) -> None:
    """Only an accepted SMS yields "SMS sent."; every other status says something else."""
    text = tool_message(status, ErrorCode.PROVIDER_UNAVAILABLE)
    assert text != SENT_MESSAGE
    assert not text.startswith("SMS sent")


def test_delivery_ranks_put_final_statuses_above_the_others() -> None:
    """sent < unconfirmed < delivered = undelivered, all above accepted; the finals are the top rank."""
    assert DELIVERY_RANK[Status.ACCEPTED] < DELIVERY_RANK[Status.SENT] < DELIVERY_RANK[Status.UNCONFIRMED]
    assert DELIVERY_RANK[Status.UNCONFIRMED] < DELIVERY_RANK[Status.DELIVERED]
    assert DELIVERY_RANK[Status.DELIVERED] == DELIVERY_RANK[Status.UNDELIVERED] == max(DELIVERY_RANK.values())
    top = max(DELIVERY_RANK.values())
    assert {s for s, r in DELIVERY_RANK.items() if r == top} == FINAL_DELIVERY_STATUSES


def test_delivery_tool_messages_are_short_and_true() -> None:
    """Each delivery state has its own sentence; only `delivered` says delivered, and
    `unconfirmed` says not to send again."""
    assert tool_message(Status.DELIVERED) == "SMS delivered."
    assert "not confirmed" in tool_message(Status.SENT)
    assert "delivered" not in tool_message(Status.SENT).replace("not confirmed", "")
    assert "probably delivered" in tool_message(Status.UNCONFIRMED)
    assert "Don't send it again" in tool_message(Status.UNCONFIRMED)


def test_undelivered_speaks_the_receipts_reason() -> None:
    """`undelivered` reads "SMS wasn't delivered: <the receipt's reason>.", or the code's reason
    when the receipt gave none."""
    spoken = "the carrier filtered it as spam; offer to read it out or share it another way"
    text = tool_message(Status.UNDELIVERED, ErrorCode.UNDELIVERED, spoken)
    assert text == f"SMS wasn't delivered: {spoken}."
    assert tool_message(Status.UNDELIVERED, ErrorCode.NOT_MOBILE) == (
        f"SMS wasn't delivered: {reason(ErrorCode.NOT_MOBILE)}."
    )


# -- masking --------------------------------------------------------------------------------------


def test_mask_number_hides_the_middle_digits() -> None:
    """An E.164 number is shown as its first five and last three characters around four stars."""
    assert mask_number("+14155551234") == "+1415****234"
    assert mask_number("+447911123456") == "+4479****456"
    assert mask_number(None) is None


@pytest.mark.parametrize("number", ["", "+", "+1", "+12", "+1234", "+123456"])
def test_mask_number_reveals_at_most_two_characters_of_very_short_inputs(number: str) -> None:
    """Inputs of up to seven characters keep at most their first two characters visible."""
    masked = mask_number(number)
    assert masked is not None
    assert len(masked) == len(number)
    assert masked[2:] == "*" * max(len(number) - 2, 0)


def test_mask_number_never_leaks_a_short_number() -> None:
    """Whatever its length, a masked number hides at least four characters (or all but two)."""
    leaks = []
    for length in range(3, 17):
        number = "+" + "1234567890123456"[: length - 1]
        masked = mask_number(number)
        assert masked is not None
        hidden = len(number) - len(masked.replace("*", ""))
        if hidden < min(4, len(number) - 2):
            leaks.append(f"{number} -> {masked}")
    assert not leaks, leaks


# -- CallContext ----------------------------------------------------------------------------------


def test_customer_number_is_the_caller_on_inbound_calls() -> None:
    """On an inbound call the customer is the caller (from_number)."""
    assert call("inbound").customer_number == "+14155551234"


def test_customer_number_is_the_dialed_number_on_outbound_calls() -> None:
    """On an outbound call the customer is the dialed number (to_number)."""
    assert call("outbound").customer_number == "+14155550000"


def test_call_context_refuses_unknown_direction_and_fields() -> None:
    """A call context with an unknown direction or an extra field is refused."""
    with pytest.raises(ValidationError, match="direction"):
        call("sideways")
    with pytest.raises(ValidationError, match="extra"):
        CallContext.model_validate({**call().model_dump(), "agent": "x"})
