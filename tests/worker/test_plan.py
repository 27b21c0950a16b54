"""`make_plan`: from a job and the config to connection, recipient, sender and body — or a refusal."""

from __future__ import annotations

from typing import Any

import pytest

from producers.contract import MAX_MESSAGE_CHARS, CallContext, ErrorCode, Job, Status, tool_message
from producers.jobs import build_job
from worker.config.models import SmsConfig
from worker.errors import SendError
from worker.plan import SendPlan, make_plan

CALLER = "+14155551234"
DIALED = "+14155550000"
OTHER = "+14155559876"


def config(**sms: Any) -> SmsConfig:
    """Two Twilio connections (one default), a sandbox one, and agent `agent_abc123` set up by `sms`."""
    settings: dict[str, Any] = {
        "enabled": True,
        "provider": "twilio",
        "templates": {
            "booking_confirmation": "Your appointment is confirmed for {date} at {time}. Details: {link}",
            "code": "Your code is {code}",
        },
    }
    settings.update(sms)
    return SmsConfig.model_validate(
        {
            "connections": [
                {
                    "label": "Twilio - Support",
                    "provider": "twilio",
                    "default": True,
                    "from_number": "+14155550000",
                    "credentials": {"account_sid": "AC1", "auth_token": "t1"},
                },
                {
                    "label": "Twilio - Sales",
                    "provider": "twilio",
                    "from_number": "+14155550001",
                    "credentials": {"account_sid": "AC2", "auth_token": "t2"},
                },
                {"label": "Sandbox", "provider": "sandbox", "from_number": "+14155550002"},
            ],
            "agents": {"agent_abc123": {"voice_tools": {"sms_mid_call": settings}}},
        }
    )


def job(direction: str = "inbound", caller: str = CALLER, **overrides: Any) -> Job:
    call = CallContext.model_validate(
        {"call_id": "CA42", "direction": direction, "from_number": caller, "to_number": DIALED}
    )
    arguments: dict[str, Any] = {
        "agent_id": "agent_abc123",
        "call": call,
        "template": "code",
        "variables": {"code": "1234"},
    }
    arguments.update(overrides)
    return build_job(**arguments)


def refused(cfg: SmsConfig, j: Job) -> SendError:
    with pytest.raises(SendError) as info:
        make_plan(cfg, j)
    return info.value


# -- the agent ------------------------------------------------------------------------------------


def test_an_unknown_agent_is_sms_disabled() -> None:
    """A job for an agent the config does not know fails with sms_disabled."""
    err = refused(config(), job(agent_id="agent_unknown"))
    assert err.code == ErrorCode.SMS_DISABLED
    assert "agent_unknown" in err.message


def test_a_disabled_agent_is_sms_disabled() -> None:
    """A job for an agent whose sms_mid_call is disabled fails with sms_disabled."""
    assert refused(config(enabled=False), job()).code == ErrorCode.SMS_DISABLED


def test_an_agent_without_provider_or_connection_is_sms_disabled() -> None:
    """An enabled agent that names neither a provider nor a connection fails with sms_disabled."""
    assert refused(config(provider=None), job()).code == ErrorCode.SMS_DISABLED


def test_a_provider_without_a_default_connection_is_sms_disabled() -> None:
    """An agent whose provider has no configured connection fails with sms_disabled."""
    assert refused(config(provider="plivo"), job()).code == ErrorCode.SMS_DISABLED


# -- the recipient --------------------------------------------------------------------------------


def test_the_default_recipient_is_the_caller_on_inbound_calls() -> None:
    """Without `to`, an inbound call's SMS goes to the caller."""
    assert make_plan(config(), job("inbound")).to == CALLER


def test_the_default_recipient_is_the_dialed_number_on_outbound_calls() -> None:
    """Without `to`, an outbound call's SMS goes to the number dialed."""
    assert make_plan(config(), job("outbound")).to == DIALED


def test_the_customer_written_differently_is_still_the_customer() -> None:
    """`to` equal to the customer's number in another format is allowed and normalized."""
    assert make_plan(config(), job(to="+1 (415) 555-1234")).to == CALLER


def test_another_recipient_is_refused_by_the_default_caller_only_policy() -> None:
    """A prompt-injected other recipient is refused with recipient_not_allowed under caller_only."""
    err = refused(config(), job(to=OTHER))
    assert err.code == ErrorCode.RECIPIENT_NOT_ALLOWED
    assert not err.retryable


def test_the_caller_is_not_the_recipient_on_outbound_calls() -> None:
    """On an outbound call the caller-only policy refuses the call's from-number (our own line)."""
    assert refused(config(), job("outbound", to=CALLER)).code == ErrorCode.RECIPIENT_NOT_ALLOWED


def test_any_recipient_is_allowed_with_policy_any() -> None:
    """With recipient_policy "any", another valid number is the recipient."""
    assert make_plan(config(recipient_policy="any"), job(to=OTHER)).to == OTHER


def test_allowed_countries_refuse_other_countries() -> None:
    """A recipient outside allowed_countries is refused with recipient_not_allowed; one inside is sent."""
    cfg = config(recipient_policy="any", allowed_countries=["us", "CA"])
    assert make_plan(cfg, job(to="+16135550123")).to == "+16135550123"
    err = refused(cfg, job(to="+442071838750"))
    assert err.code == ErrorCode.RECIPIENT_NOT_ALLOWED
    assert "country" in err.message
    assert err.cause == "country"


def test_a_country_refusal_and_a_not_the_caller_refusal_are_spoken_differently() -> None:
    """The agent hears "that country" for a country outside allowed_countries and "the caller's own
    number" for a recipient that is not the caller: the same code, two causes, two sentences."""
    country = refused(config(recipient_policy="any", allowed_countries=["US"]), job(to="+442071838750"))
    not_caller = refused(config(), job(to=OTHER))
    assert country.code == not_caller.code == ErrorCode.RECIPIENT_NOT_ALLOWED
    spoken = {tool_message(Status.FAILED, e.code, e.message, e.cause) for e in (country, not_caller)}
    assert spoken == {
        "SMS couldn't be sent: texts to that country aren't allowed for this agent.",
        "SMS couldn't be sent: texts can only go to the caller's own number.",
    }


def test_allowed_countries_apply_to_the_caller_too() -> None:
    """Even the caller's own number is refused when its country is not allowed."""
    cfg = config(allowed_countries=["GB"])
    assert refused(cfg, job()).code == ErrorCode.RECIPIENT_NOT_ALLOWED


@pytest.mark.parametrize("to", ["4155551234", "+1415555", "+1 not a number"])
def test_an_invalid_recipient_is_invalid_number(to: str) -> None:
    """A `to` that is not a valid E.164 number fails with invalid_number, before the policy check."""
    assert refused(config(), job(to=to)).code == ErrorCode.INVALID_NUMBER


def test_an_invalid_caller_number_is_invalid_number() -> None:
    """A withheld or garbled caller id with no `to` fails with invalid_number."""
    assert refused(config(), job(caller="anonymous")).code == ErrorCode.INVALID_NUMBER


# -- the body -------------------------------------------------------------------------------------


def test_a_template_is_rendered_with_the_variables() -> None:
    """The plan's body is the agent's template rendered with the job's variables."""
    plan = make_plan(
        config(),
        job(
            template="booking_confirmation",
            variables={"date": "March 10", "time": "2:00 PM", "link": "https://acme.example/b/42"},
        ),
    )
    assert (
        plan.body
        == "Your appointment is confirmed for March 10 at 2:00 PM. Details: https://acme.example/b/42"
    )


def test_an_unknown_template_is_a_template_error() -> None:
    """A template the agent does not have fails with template_error naming it."""
    err = refused(config(), job(template="password_reset", variables={"link": "x"}))
    assert err.code == ErrorCode.TEMPLATE_ERROR
    assert "password_reset" in err.message


def test_a_missing_variable_is_a_template_error_naming_it() -> None:
    """A template variable the job does not give fails with template_error naming the variable."""
    err = refused(config(), job(template="booking_confirmation", variables={"date": "March 10"}))
    assert err.code == ErrorCode.TEMPLATE_ERROR
    assert "link" in err.message and "time" in err.message


def test_free_text_is_sent_when_allowed() -> None:
    """A message without a template is the body when allow_free_text is on (the default)."""
    assert (
        make_plan(config(), job(template=None, variables=None, message="See you soon")).body == "See you soon"
    )


def test_free_text_is_refused_when_not_allowed() -> None:
    """A free-text message is refused with template_error when allow_free_text is false."""
    cfg = config(allow_free_text=False)
    assert refused(cfg, job(template=None, variables=None, message="Call +19005550000")).code == (
        ErrorCode.TEMPLATE_ERROR
    )
    assert make_plan(cfg, job()).body == "Your code is 1234"


def test_a_blank_message_is_refused() -> None:
    """A message of only whitespace is refused instead of sending an empty text."""
    assert (
        refused(config(), job(template=None, variables=None, message="  \n ")).code
        == ErrorCode.TEMPLATE_ERROR
    )


def provider_config(provider: str, **sms: Any) -> SmsConfig:
    """One default connection of `provider` (placeholder credentials) for agent `agent_abc123`."""
    credentials = {
        "twilio": {"account_sid": "AC1", "auth_token": "t1"},
        "plivo": {"auth_id": "MA1", "auth_token": "t1"},
        "telnyx": {"api_key": "KEY1"},
        "sandbox": {},
    }[provider]
    return SmsConfig.model_validate(
        {
            "connections": [
                {
                    "label": "Only",
                    "provider": provider,
                    "default": True,
                    "from_number": "+14155550000",
                    "credentials": credentials,
                }
            ],
            "agents": {
                "agent_abc123": {
                    "voice_tools": {"sms_mid_call": {"enabled": True, "provider": provider, **sms}}
                }
            },
        }
    )


# (provider, body that is just allowed, body one unit over, what the refusal names)
LIMITS = [
    pytest.param("twilio", "a" * 1530, "a" * 1531, ["11 parts", "at most 10 parts"], id="twilio-10-segments"),
    pytest.param("twilio", "ж" * 670, "ж" * 671, ["11 parts", "UCS-2", "at most 10 parts"], id="twilio-ucs2"),
    pytest.param("telnyx", "a" * 1530, "a" * 1531, ["11 parts", "at most 10 parts"], id="telnyx-10-parts"),
    pytest.param("telnyx", "ж" * 670, "ж" * 671, ["11 parts", "UCS-2"], id="telnyx-ucs2"),
    pytest.param(
        "plivo", "a" * 1600, "a" * 1601, ["1,601 characters", "at most 1,600 GSM-7"], id="plivo-gsm"
    ),
    pytest.param("plivo", "ж" * 737, "ж" * 738, ["738 characters", "at most 737 UCS-2"], id="plivo-ucs2"),
    pytest.param("sandbox", "a" * 1600, "a" * 1601, ["1,601 characters", "at most 1,600"], id="sandbox"),
]


@pytest.mark.parametrize(("provider", "longest", "too_long", "named"), LIMITS)
def test_each_providers_real_limit_is_checked_before_sending(
    provider: str, longest: str, too_long: str, named: list[str]
) -> None:
    """The longest body a provider takes is planned; one more unit is `message_too_long`, and the
    message names the parts (or characters) and the provider's limit."""
    cfg = provider_config(provider)
    assert make_plan(cfg, job(template=None, variables=None, message=longest)).body == longest
    err = refused(cfg, job(template=None, variables=None, message=too_long))
    assert err.code == ErrorCode.MESSAGE_TOO_LONG
    for words in named:
        assert words in err.message, err.message


def test_a_body_far_over_every_limit_is_refused_without_counting_it() -> None:
    """A body over ten times the longest SMS is refused by its length alone."""
    assert MAX_MESSAGE_CHARS == 1600
    err = refused(config(), job(variables={"code": "9" * 16_001}))
    assert err.code == ErrorCode.MESSAGE_TOO_LONG
    assert "16,014 characters" in err.message


def test_a_rendered_template_over_the_limit_is_message_too_long() -> None:
    """The limit applies to the rendered template, not to its source."""
    assert refused(config(), job(variables={"code": "9" * 1600})).code == ErrorCode.MESSAGE_TOO_LONG


@pytest.mark.parametrize(
    ("message", "segments"),
    [("a" * 160, 1), ("a" * 161, 2), ("é" * 160, 1), ("ж" * 70, 1), ("ж" * 71, 2), ("😀" * 36, 2)],
)
def test_segments_are_computed_for_the_body(message: str, segments: int) -> None:
    """The plan carries the number of segments the body costs, and its encoding."""
    plan = make_plan(config(), job(template=None, variables=None, message=message))
    assert plan.segments == segments
    assert plan.encoding == ("gsm7" if message[0] in "aé" else "ucs2")


def test_smart_encoding_keeps_a_typographic_body_in_gsm7() -> None:
    """With `smart_encoding: true` curly quotes and an ellipsis become GSM-7 and the text costs one
    segment instead of two; without it (the default) the body is sent as written, in UCS-2."""
    message = "\u201cSee you at 2\u2009PM\u201d \u2014 it\u2019s booked\u2026 " + "a" * 80
    as_written = make_plan(config(), job(template=None, variables=None, message=message))
    assert (as_written.body, as_written.encoding, as_written.segments) == (message, "ucs2", 2)
    smart = make_plan(config(smart_encoding=True), job(template=None, variables=None, message=message))
    assert smart.body == '"See you at 2 PM" - it\'s booked... ' + "a" * 80
    assert (smart.encoding, smart.segments) == ("gsm7", 1)


# -- connection and sender ------------------------------------------------------------------------


def test_the_providers_default_connection_is_used() -> None:
    """An agent that names only a provider sends through that provider's default connection and number."""
    plan = make_plan(config(), job())
    assert plan.connection.label == "Twilio - Support"
    assert plan.from_ == "+14155550000"


def test_the_agents_connection_label_is_used() -> None:
    """An agent that names a connection label sends through it, from its number."""
    plan = make_plan(config(connection="Twilio - Sales"), job())
    assert plan.connection.label == "Twilio - Sales"
    assert plan.from_ == "+14155550001"


def test_the_agents_from_number_wins_over_the_connections() -> None:
    """An agent's own from_number is the sender, rather than its connection's."""
    assert make_plan(config(from_number="+14155550009"), job()).from_ == "+14155550009"


def test_the_fallback_connection_is_resolved() -> None:
    """The agent's fallback_connection label is resolved to its connection."""
    plan = make_plan(config(fallback_connection="Sandbox"), job())
    assert plan.fallback is not None and plan.fallback.label == "Sandbox"
    assert make_plan(config(), job()).fallback is None


def test_validity_and_cap_come_from_the_agent() -> None:
    """The plan carries the agent's validity_seconds and max_per_call."""
    plan = make_plan(config(validity_seconds=600, max_per_call=2), job())
    assert (plan.validity_seconds, plan.max_per_call) == (600, 2)


def test_a_job_choosing_another_connection_is_refused_without_allow_overrides() -> None:
    """A job's connection other than the agent's fails with sender_invalid unless overrides are allowed."""
    err = refused(config(), job(connection="Twilio - Sales"))
    assert err.code == ErrorCode.SENDER_INVALID


def test_a_job_naming_the_agents_own_connection_is_fine() -> None:
    """A job's connection equal to the agent's label is not an override."""
    assert make_plan(
        config(connection="Twilio - Sales"), job(connection="Twilio - Sales")
    ).connection.label == ("Twilio - Sales")


def test_a_job_may_choose_another_connection_with_allow_overrides() -> None:
    """With allow_overrides, the job's connection label is used."""
    plan = make_plan(config(allow_overrides=True), job(connection="Sandbox"))
    assert plan.connection.label == "Sandbox"


def test_an_unknown_override_connection_is_sender_invalid() -> None:
    """An override naming no configured connection fails with sender_invalid."""
    assert refused(config(allow_overrides=True), job(connection="Nope")).code == ErrorCode.SENDER_INVALID


def test_a_job_choosing_another_sender_is_refused_without_allow_overrides() -> None:
    """A job's from_ other than the configured number fails with sender_invalid without allow_overrides."""
    assert refused(config(), job(from_="+14155550001")).code == ErrorCode.SENDER_INVALID


def test_a_job_repeating_the_configured_sender_is_fine() -> None:
    """A job's from_ equal to the configured number (in any format) is not an override."""
    assert make_plan(config(), job(from_="+1 415 555 0000")).from_ == "+14155550000"


def test_a_job_may_choose_another_sender_with_allow_overrides() -> None:
    """With allow_overrides, the job's from_ is the sender, normalized."""
    assert make_plan(config(allow_overrides=True), job(from_="+1 415 555 0001")).from_ == "+14155550001"


def test_an_invalid_override_sender_is_sender_invalid() -> None:
    """A from_ that is not a valid number fails with sender_invalid even when overrides are allowed."""
    assert refused(config(allow_overrides=True), job(from_="12345")).code == ErrorCode.SENDER_INVALID


def test_an_agent_level_custom_provider_synthesizes_a_custom_connection() -> None:
    """An agent with provider custom and custom_api_url sends through a custom connection built from them."""
    cfg = config(
        provider="custom",
        custom_api_url="https://gateway.acme.example/sms",
        custom_api_headers={"Authorization": "Bearer sekret-XYZ-123"},
        from_number="+14155550009",
    )
    plan = make_plan(cfg, job())
    assert plan.connection.provider == "custom"
    assert plan.connection.custom_api_url == "https://gateway.acme.example/sms"
    assert plan.connection.custom_api_headers["Authorization"].get_secret_value() == "Bearer sekret-XYZ-123"
    assert "agent_abc123" in plan.connection.label
    assert plan.from_ == "+14155550009"
    assert "sekret-XYZ-123" not in repr(plan)


def test_an_agent_level_custom_provider_without_url_is_sms_disabled() -> None:
    """An agent with provider custom but no custom_api_url nor custom connection fails with sms_disabled."""
    assert refused(config(provider="custom"), job()).code == ErrorCode.SMS_DISABLED


def test_a_plan_is_a_send_plan() -> None:
    """make_plan returns a SendPlan with every field filled for a plain templated job."""
    plan = make_plan(config(), job())
    assert isinstance(plan, SendPlan)
    assert (plan.to, plan.from_, plan.body, plan.segments) == (CALLER, "+14155550000", "Your code is 1234", 1)
