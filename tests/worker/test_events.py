"""The worker's event factory (`worker/events.py`): one place that makes every event it publishes."""

from __future__ import annotations

from producers.contract import CallContext, ErrorCode, ErrorInfo, Status
from producers.jobs import build_job
from worker import events

CALL = CallContext(call_id="CA1", direction="inbound", from_number="+14155551234", to_number="+14155550000")


def test_terminal_and_the_tool_message_follow_from_the_status_and_the_error() -> None:
    """`accepted`/`failed` are terminal, the rest not; the sentence is the contract's for the error."""
    err = ErrorInfo(code=ErrorCode.INVALID_NUMBER, message="no such number")
    failed = events.new_event("j1", "CA1", Status.FAILED, error=err)
    assert failed.terminal is True and failed.tool_message.startswith("SMS couldn't be sent")
    assert events.new_event("j1", "CA1", Status.ACCEPTED).terminal is True
    assert events.new_event("j1", "CA1", Status.SENDING).terminal is False


def test_a_job_event_without_a_plan_carries_only_the_masked_recipient() -> None:
    """A refusal before any plan: no provider or sender, the job's own `to` masked."""
    job = build_job(agent_id="a1", call=CALL, message="hi", to="+14155559876")
    event = events.job_event(job, None, Status.FAILED, attempt=1)
    assert (event.to, event.provider, event.from_) == ("+1415****876", None, None)


def test_a_replay_of_the_stored_event_repeats_its_fields_for_the_new_job() -> None:
    """The stored outcome is the first job's terminal event; the replay is the same outcome under
    the second job's id, terminal, with the same sentence."""
    first = build_job(agent_id="a1", call=CALL, message="hi")
    second = build_job(agent_id="a1", call=CALL, message="hi")
    stored = events.new_event(
        first.job_id, "CA1", Status.ACCEPTED, attempt=1, provider="twilio", provider_message_id="SM1",
        to="+1415****234", from_="+14155550000", segments=1, encoding="gsm7",
    )  # fmt: skip
    replayed = events.replay_event(second, stored.model_dump(mode="json"))
    assert replayed.job_id == second.job_id and replayed.terminal
    keep = ("status", "attempt", "provider", "provider_message_id", "to", "from_", "segments", "encoding")
    assert replayed.model_dump(include=set(keep)) == stored.model_dump(include=set(keep))
    assert replayed.tool_message == stored.tool_message == "SMS sent."
