"""`build_job`: bad arguments raise before any I/O, naming the field; sensible defaults."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from producers.contract import CallContext, Job
from producers.jobs import DEFAULT_EXPIRES_IN, build_job

CALL = CallContext(call_id="CA42", direction="inbound", from_number="+14155551234", to_number="+14155550000")


def build(**overrides: Any) -> Job:
    arguments: dict[str, Any] = {
        "agent_id": "agent_abc123",
        "call": CALL,
        "template": "booking_confirmation",
        "variables": {"date": "March 10", "count": 2, "price": 9.5},
    }
    arguments.update(overrides)
    return build_job(**arguments)


def test_a_templated_job_carries_the_arguments() -> None:
    """A templated job keeps the agent, call, template, variables and overrides it was given."""
    job = build(to="+14155551234", from_="+14155550000", connection="Twilio - Support")
    assert job.agent_id == "agent_abc123"
    assert job.call == CALL
    assert job.template == "booking_confirmation"
    assert job.variables == {"date": "March 10", "count": 2, "price": 9.5}
    assert job.message is None
    assert (job.to, job.from_, job.connection) == ("+14155551234", "+14155550000", "Twilio - Support")


def test_a_free_text_job_has_no_template() -> None:
    """A job built with a message and no template carries the message."""
    job = build(template=None, variables=None, message="Your code is 1234")
    assert job.message == "Your code is 1234"
    assert job.template is None
    assert job.variables == {}


def test_neither_template_nor_message_is_refused() -> None:
    """Without a template or a message, build_job raises ValueError naming both fields."""
    with pytest.raises(ValueError, match="'template' or 'message'"):
        build(template=None, variables=None)


def test_template_and_message_together_are_refused() -> None:
    """Giving both a template and a message raises ValueError naming both fields."""
    with pytest.raises(ValueError, match="'template' or 'message'"):
        build(message="hello")


@pytest.mark.parametrize(
    "value", [["a"], {"nested": "x"}, None, object()], ids=["list", "dict", "none", "object"]
)
def test_non_scalar_variable_values_are_refused(value: Any) -> None:
    """A variable value that is not text or a number raises ValueError naming the variable."""
    with pytest.raises(ValueError, match=r"variables\.date"):
        build(variables={"date": value})


def test_boolean_variable_values_are_refused() -> None:
    """A boolean variable value raises ValueError instead of being sent as "1"."""
    with pytest.raises(ValueError, match=r"variables\.confirmed"):
        build(variables={"confirmed": True})


@pytest.mark.parametrize("call", [None, "CA42", {"call_id": "CA42"}], ids=["none", "str", "dict"])
def test_call_must_be_a_call_context(call: Any) -> None:
    """A call that is not a CallContext raises TypeError naming 'call'."""
    with pytest.raises(TypeError, match="'call' must be a CallContext"):
        build(call=call)


@pytest.mark.parametrize("expires_in", [0, 0.0, -1, -0.001])
def test_non_positive_expires_in_is_refused(expires_in: float) -> None:
    """An expires_in of zero or less raises ValueError naming 'expires_in'."""
    with pytest.raises(ValueError, match="'expires_in' must be positive"):
        build(expires_in=expires_in)


@pytest.mark.parametrize("expires_in", [float("inf"), float("nan"), 1e12], ids=["inf", "nan", "huge"])
def test_non_finite_or_absurd_expires_in_is_refused_naming_the_field(expires_in: float) -> None:
    """A non-finite or out-of-range expires_in raises ValueError naming 'expires_in'."""
    with pytest.raises(ValueError, match="expires_in"):
        build(expires_in=expires_in)


@pytest.mark.parametrize("variables", [["date"], 5], ids=["list", "int"])
def test_variables_that_are_not_a_mapping_are_refused_naming_the_field(variables: Any) -> None:
    """Variables that are not a mapping raise ValueError or TypeError naming 'variables'."""
    with pytest.raises((ValueError, TypeError), match="variables"):
        build(variables=variables)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("agent_id", ""),
        ("agent_id", "agent with spaces"),
        ("idempotency_key", "x" * 201),
        ("to", "+1" + "4" * 40),
        ("template", "t" * 201),
    ],
)
def test_invalid_identifiers_are_refused_naming_the_field(field: str, value: str) -> None:
    """An empty, malformed or too long identifier raises ValueError naming its field."""
    with pytest.raises(ValueError, match=f"invalid SMS request: {field}:"):
        build(**{field: value})


def test_idempotency_key_defaults_to_the_job_id() -> None:
    """Without an idempotency key, the job id is the key."""
    job = build()
    assert job.job_id
    assert job.idempotency_key == job.job_id


def test_given_idempotency_key_and_job_id_are_kept() -> None:
    """An explicit idempotency key and job id are used as given."""
    job = build(idempotency_key="CA42:tool-call-7", job_id="job-7")
    assert (job.job_id, job.idempotency_key) == ("job-7", "CA42:tool-call-7")


def test_each_job_gets_a_fresh_id() -> None:
    """Two jobs built without a job id get different ids (and so different default keys)."""
    assert build().job_id != build().job_id


@pytest.mark.parametrize("expires_in", [0.5, 30, DEFAULT_EXPIRES_IN])
def test_expires_at_is_created_at_plus_expires_in(expires_in: float) -> None:
    """The job expires exactly expires_in seconds after it was created, both timezone-aware."""
    job = build(expires_in=expires_in)
    assert job.expires_at - job.created_at == timedelta(seconds=expires_in)
    assert job.created_at.tzinfo is not None


def test_default_expiry_is_five_minutes() -> None:
    """Without expires_in a job expires DEFAULT_EXPIRES_IN (300 s) after it was created."""
    job = build()
    assert DEFAULT_EXPIRES_IN == 300.0
    assert job.expires_at - job.created_at == timedelta(seconds=300)
