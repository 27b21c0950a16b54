"""From a job and the config to what exactly to send: connection, recipient, sender, body.

Every refusal here is a `SendError` with its taxonomy code, raised before any provider is called.
"""

from __future__ import annotations

from dataclasses import dataclass

from producers.contract import MAX_MESSAGE_CHARS, ErrorCode, Job
from worker import segments, templates
from worker.config.models import Connection, RecipientCap, SmsConfig, SmsMidCall
from worker.errors import SendError
from worker.providers import PROVIDER_CLASSES
from worker.ratelimit import RateLimit, sender_rate
from worker.recipients import InvalidNumber, normalize, region_of
from worker.segments import Encoding


@dataclass(frozen=True, slots=True)
class SendPlan:
    connection: Connection
    fallback: Connection | None
    to: str
    from_: str | None
    body: str
    segments: int
    validity_seconds: int | None
    max_per_call: int
    encoding: Encoding = "gsm7"
    #: the sending number's limit (None: none)
    rate: RateLimit | None = None
    #: texts to this recipient across the agent's calls (None: no cap)
    max_per_recipient: RecipientCap | None = None


def make_plan(config: SmsConfig, job: Job) -> SendPlan:
    agent = config.agents.get(job.agent_id)
    if agent is None:
        raise SendError(ErrorCode.SMS_DISABLED, f"agent {job.agent_id!r} is not configured for SMS")
    sms = agent.sms
    if not sms.enabled:
        raise SendError(ErrorCode.SMS_DISABLED, f"agent {job.agent_id!r} has sms_mid_call disabled")
    connection = _connection(config, job, sms)
    fallback = config.connection(sms.fallback_connection) if sms.fallback_connection else None
    to = _recipient(job, sms)
    from_ = _sender(job, sms, connection)
    body = _body(job, sms)
    if sms.smart_encoding:
        body = segments.smart_encode(body)
    if not body.strip():
        raise SendError(ErrorCode.TEMPLATE_ERROR, "the message is empty")
    parts = _check_length(body, connection)
    return SendPlan(
        connection=connection,
        fallback=fallback,
        to=to,
        from_=from_,
        body=body,
        segments=parts.parts,
        validity_seconds=sms.validity_seconds,
        max_per_call=sms.max_per_call,
        encoding=parts.encoding,
        rate=sender_rate(connection, from_, parts.parts),
        max_per_recipient=sms.max_per_recipient,
    )


def _check_length(body: str, connection: Connection) -> segments.Segments:
    """The body's parts, checked against the provider's limits (parts, characters per encoding)."""
    if len(body) > 10 * MAX_MESSAGE_CHARS:  # no provider takes this; don't walk it character by character
        raise SendError(
            ErrorCode.MESSAGE_TOO_LONG,
            f"the message has {len(body):,} characters; the most is {MAX_MESSAGE_CHARS:,}",
        )
    parts = segments.analyze(body)
    refusal = PROVIDER_CLASSES[connection.provider].limits.refusal(connection.provider, parts)
    if refusal is not None:
        raise SendError(ErrorCode.MESSAGE_TOO_LONG, refusal)
    return parts


def _connection(config: SmsConfig, job: Job, sms: SmsMidCall) -> Connection:
    label = sms.connection
    if job.connection is not None and job.connection != label:
        if not sms.allow_overrides:
            raise SendError(ErrorCode.SENDER_INVALID, "this agent does not allow choosing another connection")
        label = job.connection
    if label is not None:
        found = config.connection(label)
        if found is None:
            raise SendError(ErrorCode.SENDER_INVALID, f"unknown connection {label!r}")
        return found
    if sms.provider is not None and PROVIDER_CLASSES[sms.provider].spec.endpoint_url:
        if not sms.custom_api_url:
            raise SendError(ErrorCode.SMS_DISABLED, f"provider {sms.provider} needs custom_api_url")
        return Connection(
            label=f"{job.agent_id} {sms.provider} endpoint",
            provider=sms.provider,
            custom_api_url=sms.custom_api_url,
            custom_api_headers=dict(sms.custom_api_headers),
        )
    if sms.provider is None:
        raise SendError(ErrorCode.SMS_DISABLED, "the agent names neither a provider nor a connection")
    found = config.default_connection(sms.provider)
    if found is None:
        raise SendError(ErrorCode.SMS_DISABLED, f"no default {sms.provider} connection is configured")
    return found


def _recipient(job: Job, sms: SmsMidCall) -> str:
    try:
        to = normalize(job.to or job.call.customer_number)
    except InvalidNumber as exc:
        raise SendError(ErrorCode.INVALID_NUMBER, f"recipient: {exc}") from None
    # With no `to` the recipient is the customer, already normalized: parse once on the hot path.
    if sms.recipient_policy == "caller_only" and job.to is not None and job.to != job.call.customer_number:
        try:
            customer: str | None = normalize(job.call.customer_number)
        except InvalidNumber:
            customer = None
        if to != customer:
            raise SendError(
                ErrorCode.RECIPIENT_NOT_ALLOWED, "this agent may only text the customer on the call"
            )
    if sms.allowed_countries is not None and region_of(to) not in sms.allowed_countries:
        raise SendError(
            ErrorCode.RECIPIENT_NOT_ALLOWED,
            "texts to this country are not allowed for this agent",
            cause="country",
        )
    return to


def _sender(job: Job, sms: SmsMidCall, connection: Connection) -> str | None:
    overridden = job.connection is not None and job.connection != sms.connection
    # A job that picked another connection sends from that connection's number.
    configured = (
        (connection.from_number or sms.from_number)
        if overridden
        else (sms.from_number or connection.from_number)
    )
    if job.from_ is None:
        return configured
    try:
        wanted = normalize(job.from_)
    except InvalidNumber as exc:
        raise SendError(ErrorCode.SENDER_INVALID, f"from_: {exc}") from None
    if wanted != configured and not sms.allow_overrides:
        raise SendError(ErrorCode.SENDER_INVALID, "this agent does not allow choosing the sending number")
    return wanted


def _body(job: Job, sms: SmsMidCall) -> str:
    if job.template is not None:
        source = sms.templates.get(job.template)
        if source is None:
            raise SendError(ErrorCode.TEMPLATE_ERROR, f"unknown template {job.template!r}")
        try:
            return templates.render(source, job.variables)
        except templates.TemplateError as exc:
            raise SendError(ErrorCode.TEMPLATE_ERROR, f"template {job.template!r}: {exc}") from None
    if not sms.allow_free_text:
        raise SendError(ErrorCode.TEMPLATE_ERROR, "this agent only sends its templates, not free text")
    return job.message or ""
