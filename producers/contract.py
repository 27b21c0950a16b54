"""Wire contract v1: what a producer in any language puts on the queue and reads back.

A job is a Celery task message (protocol 2, JSON) for the task `sms.send` on the Redis list `sms`,
with one keyword argument `job` holding a `Job`. Every outcome is an `Event` appended to the
call's result channel, the Redis Stream `sms:events:<call_id>`, which expires `EVENTS_TTL_SECONDS`
after its last event. Exactly one event per job is `terminal` (`accepted` or `failed`). After an
`accepted`, delivery events follow on the same stream (`sent`, `unconfirmed`, `delivered`,
`undelivered`, never `terminal`): ranked by `DELIVERY_RANK`, each one higher than the job's
previous delivery status, so a final one (`delivered`, `undelivered`) sticks and a duplicate or
late, lower receipt publishes nothing.

The worker imports this module; this module imports nothing from the worker.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
    model_validator,
)

CONTRACT_VERSION: Literal[1] = 1
#: The Celery task name producers send to.
TASK_NAME = "sms.send"
#: The Redis list (Celery queue) jobs are pushed to.
#: W3C Trace Context `traceparent`: version 00, a 32-hex trace id, a 16-hex parent span id, flags.
TRACEPARENT_PATTERN = r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"

QUEUE = "sms"
#: Seconds a call's result channel lives after its last event.
EVENTS_TTL_SECONDS = 24 * 3600
#: Entries kept per call's result channel (approximate trim; a call sends a handful of texts).
EVENTS_MAXLEN = 1000
#: The most characters a provider accepts in one SMS body (Twilio 21617, Plivo, Telnyx: 10 parts).
MAX_MESSAGE_CHARS = 1600
#: The stream entry field that holds an event's JSON.
EVENT_FIELD = "event"


def events_key(call_id: str) -> str:
    """The Redis Stream that holds every event of one call."""
    return f"sms:events:{call_id}"


def idempotency_key(key: str) -> str:
    """The Redis hash that records the claim and the outcome of one idempotency key."""
    return f"sms:idem:{key}"


def call_counter_key(call_id: str) -> str:
    """The Redis counter of distinct sends made for one call (the per-call cap)."""
    return f"sms:count:{call_id}"


# -- delivery receipts ------------------------------------------------------------------------------
# Written by the worker only; listed here beside the other keys so every key name is in one place.


def message_key(provider: str, message_id: str) -> str:
    """The Redis hash that maps a provider's message id to its job and call, written in the same
    transaction as the `accepted` outcome: `job_id`, `call_id`, `connection`, `connection_id`, `to`
    (masked), `attempt`, `segments`, `from_`, and the job's current delivery `status` and `rank`."""
    return f"sms:msg:{provider}:{message_id}"


def parked_key(provider: str, message_id: str) -> str:
    """The Redis list of receipts that arrived before their message's mapping (applied when it appears)."""
    return f"sms:parked:{provider}:{message_id}"


def receipts_log_key(provider: str, message_id: str) -> str:
    """The Redis Stream of every raw receipt of one message (numbers masked), for the audit trail."""
    return f"sms:receipts:{provider}:{message_id}"


def call_jobs_key(call_id: str) -> str:
    """The Redis hash of a call's job summaries (template name, masked recipient, body length and
    hash), one field per job, written with the job's outcome, for the audit trail."""
    return f"sms:calljobs:{call_id}"


#: Seconds a receipt waits for its message's mapping before it is given up (VA Notify waits 300 s).
PARKED_TTL_SECONDS = 600


#: The Redis Stream the sandbox provider records accepted messages into.
SANDBOX_OUTBOX_KEY = "sms:sandbox:outbox"

#: Raw queue entries no worker can run (not JSON, an undecodable body, an unknown task, …), kept
#: for `midcall-sms dead` (a capped list with a TTL; newest first).
DEAD_LETTER_KEY = "sms:dead"
#: Retries waiting for their time: a sorted set of task messages scored by when they are due (ms
#: since the epoch); workers move due ones onto the queue.
DELAYED_KEY = "sms:delayed"
#: The set of worker instances that reserve messages (for the sweep that restores dead ones' work).
#: Like the reservation keys below, transport bookkeeping kept beside kombu's own keys (`unacked`),
#: outside this project's `sms:` data keys.
WORKERS_KEY = "sms_workers"


def worker_alive_key(worker_id: str) -> str:
    """A worker instance's heartbeat (a short TTL, refreshed while the process lives)."""
    return f"sms_worker_alive:{worker_id}"


def worker_reserved_key(worker_id: str) -> str:
    """The delivery tags a worker instance has reserved and not yet acknowledged (transport
    bookkeeping beside kombu's `unacked` hash, outside this project's `sms:` keys like it)."""
    return f"unacked_by:{worker_id}"


#: delivery tag -> the worker instance that reserved it (beside kombu's `unacked` hash).
RESERVED_BY_KEY = "unacked_owner"

#: What ids (job, call, agent, idempotency key) may contain.
IDENTIFIER_PATTERN = r"^[A-Za-z0-9_.:@/+=\-]{1,200}$"
Identifier = Annotated[str, StringConstraints(pattern=IDENTIFIER_PATTERN)]


def _utf8(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains characters that are not valid text (a lone surrogate)") from None
    return value


Text = Annotated[StrictStr, AfterValidator(_utf8)]
#: A template variable's value: text or a number (booleans are refused, not turned into 1).
VariableValue = Text | StrictInt | StrictFloat


class Status(StrEnum):
    """Where one SMS stands. `accepted` and `failed` are terminal for the job."""

    QUEUED = "queued"  #: the job is on the queue
    SENDING = "sending"  #: a worker is calling the provider
    RETRYING = "retrying"  #: a retryable error; `next_attempt_at` says when
    ACCEPTED = "accepted"  #: the provider took the message (not yet delivered)
    FAILED = "failed"  #: nothing was sent, or the provider refused it
    SENT = "sent"  #: a receipt says the provider handed it to the carrier
    UNCONFIRMED = "unconfirmed"  #: the carrier never confirmed: probably delivered; never resend
    DELIVERED = "delivered"  #: the provider's receipt says the handset got it
    UNDELIVERED = "undelivered"  #: the provider's receipt says it was not delivered


TERMINAL_STATUSES = frozenset({Status.ACCEPTED, Status.FAILED})
#: Statuses that receipts publish after a job's `accepted`.
DELIVERY_STATUSES = frozenset({Status.SENT, Status.UNCONFIRMED, Status.DELIVERED, Status.UNDELIVERED})
#: A delivery status replaces the job's current one only when its rank is higher (`accepted` is 0).
DELIVERY_RANK: dict[Status, int] = {
    Status.ACCEPTED: 0,
    Status.SENT: 1,
    Status.UNCONFIRMED: 2,
    Status.DELIVERED: 3,
    Status.UNDELIVERED: 3,
}
#: Delivery statuses nothing replaces.
FINAL_DELIVERY_STATUSES = frozenset({Status.DELIVERED, Status.UNDELIVERED})


class ErrorCode(StrEnum):
    """One taxonomy of failures across providers (README, "Outcomes and errors")."""

    INVALID_NUMBER = "invalid_number"
    NOT_MOBILE = "not_mobile"
    RECIPIENT_OPTED_OUT = "recipient_opted_out"
    RECIPIENT_NOT_ALLOWED = "recipient_not_allowed"
    LIMIT_REACHED = "limit_reached"
    MESSAGE_TOO_LONG = "message_too_long"
    TEMPLATE_ERROR = "template_error"
    SMS_DISABLED = "sms_disabled"
    SENDER_INVALID = "sender_invalid"
    AUTH_FAILED = "auth_failed"
    RATE_LIMITED = "rate_limited"
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    EXPIRED = "expired"
    UNDELIVERED = "undelivered"
    #: a provider refused the message for a reason outside this table; `provider_code` keeps its code
    PROVIDER_ERROR = "provider_error"
    #: the job itself is malformed (a producer bug); nothing was sent
    INVALID_REQUEST = "invalid_request"


RETRYABLE_CODES = frozenset({ErrorCode.RATE_LIMITED, ErrorCode.PROVIDER_UNAVAILABLE})

#: What the agent can tell the caller, per error code (short, for the model).
_REASONS: dict[ErrorCode, str] = {
    ErrorCode.INVALID_NUMBER: "that isn't a valid phone number; confirm the number with the caller",
    ErrorCode.NOT_MOBILE: "that number can't receive texts; ask for a mobile number",
    ErrorCode.RECIPIENT_OPTED_OUT: "that number has opted out of texts; they can text START to opt back in",
    ErrorCode.RECIPIENT_NOT_ALLOWED: "texts can only go to the caller's own number",
    ErrorCode.LIMIT_REACHED: "the limit of texts for this call has been reached",
    ErrorCode.MESSAGE_TOO_LONG: "the message is too long; shorten it",
    ErrorCode.TEMPLATE_ERROR: "the message template couldn't be filled in",
    ErrorCode.SMS_DISABLED: "texting isn't enabled for this agent",
    ErrorCode.SENDER_INVALID: "the sending number isn't set up for texting",
    ErrorCode.AUTH_FAILED: "the SMS provider rejected our credentials",
    ErrorCode.RATE_LIMITED: "the SMS provider is busy; try again in a moment",
    ErrorCode.PROVIDER_UNAVAILABLE: "the SMS provider couldn't be reached; try again in a moment",
    ErrorCode.EXPIRED: "it couldn't be sent in time",
    ErrorCode.UNDELIVERED: "the carrier didn't deliver it; offer another way to share it",
    ErrorCode.PROVIDER_ERROR: "the SMS provider refused it",
    ErrorCode.INVALID_REQUEST: "the request was malformed",
}

#: Causes that share a code but need their own sentence: (code, cause) -> what the agent says.
_CAUSE_REASONS: dict[tuple[ErrorCode, str], str] = {
    (ErrorCode.RECIPIENT_NOT_ALLOWED, "country"): "texts to that country aren't allowed for this agent",
    (ErrorCode.SENDER_INVALID, "custom_endpoint"): (
        "the agent's SMS endpoint isn't allowed; it must be a public https address"
    ),
    (ErrorCode.LIMIT_REACHED, "recipient"): (
        "that number has already had the most texts allowed for now; try again later"
    ),
    (ErrorCode.RATE_LIMITED, "sender"): "too many texts are waiting on this number right now",
}
#: Codes whose detail helps the model correct its next call (which variable is missing, how long).
_DETAILED_CODES = frozenset({ErrorCode.TEMPLATE_ERROR, ErrorCode.MESSAGE_TOO_LONG})

SENT_MESSAGE = "SMS sent."
NOT_SENT_PREFIX = "SMS couldn't be sent"
PENDING_MESSAGE = "SMS not confirmed yet: it is queued and will be sent shortly."
DELIVERED_MESSAGE = "SMS delivered."
HANDED_TO_CARRIER_MESSAGE = "SMS handed to the carrier; delivery not confirmed yet."
UNCONFIRMED_MESSAGE = "SMS probably delivered: the carrier didn't confirm delivery. Don't send it again."
NOT_DELIVERED_PREFIX = "SMS wasn't delivered"


def reason(code: ErrorCode, cause: str | None = None) -> str:
    """The short, speakable reason for an error code (and its cause, when it has its own sentence)."""
    if cause is not None:
        found = _CAUSE_REASONS.get((code, cause))
        if found is not None:
            return found
    return _REASONS[code]


def tool_message(
    status: Status | Literal["pending"],
    code: ErrorCode | None = None,
    detail: str | None = None,
    cause: str | None = None,
) -> str:
    """The exact text an LLM tool call returns for this outcome.

    "SMS sent." only when a provider accepted the message; "SMS couldn't be sent: <reason>."
    when it failed; never "sent" for anything else. For template and length errors the `detail`
    (which variable is missing, how long the text is) is added so the model can fix its call.

    Delivery states: "SMS delivered."; "SMS wasn't delivered: <reason>." where the reason is the
    receipt's speakable `detail` (the error's `message`, from the provider's receipt table: "the
    carrier filtered it as spam; offer to read it out"), else the code's; `sent` and `unconfirmed`
    say that delivery is not confirmed, and `unconfirmed` that it must not be sent again.
    """
    if status == Status.ACCEPTED:
        return SENT_MESSAGE
    if status == Status.DELIVERED:
        return DELIVERED_MESSAGE
    if status == Status.FAILED:
        code = code or ErrorCode.PROVIDER_ERROR
        extra = f" ({detail})" if detail and code in _DETAILED_CODES else ""
        return f"{NOT_SENT_PREFIX}: {reason(code, cause)}{extra}."
    if status == Status.UNDELIVERED:
        spoken = (detail or "").strip().rstrip(".") or reason(code or ErrorCode.UNDELIVERED)
        return f"{NOT_DELIVERED_PREFIX}: {spoken}."
    if status == Status.SENT:
        return HANDED_TO_CARRIER_MESSAGE
    if status == Status.UNCONFIRMED:
        return UNCONFIRMED_MESSAGE
    if status == Status.SENDING:
        return "SMS is being sent."
    if status == Status.RETRYING:
        if code == ErrorCode.RATE_LIMITED and cause == "sender":
            return "SMS not sent yet: it is waiting for its turn on the sending number."
        return "SMS not sent yet: the provider is being retried."
    return PENDING_MESSAGE


class CallContext(BaseModel):
    """The live call an SMS belongs to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    call_id: Identifier
    direction: Literal["inbound", "outbound"]
    from_number: str = Field(min_length=1, max_length=32)
    to_number: str = Field(min_length=1, max_length=32)

    @property
    def customer_number(self) -> str:
        """The caller on inbound calls, the dialed number on outbound calls."""
        return self.from_number if self.direction == "inbound" else self.to_number


class Job(BaseModel):
    """One request to send one SMS: the single keyword argument `job` of the task."""

    model_config = ConfigDict(extra="forbid")

    v: Literal[1] = CONTRACT_VERSION
    job_id: Identifier
    idempotency_key: Identifier
    agent_id: Identifier
    call: CallContext
    to: str | None = Field(default=None, max_length=32, description="Default: the customer's number.")
    from_: str | None = Field(default=None, max_length=32, description="Default: the connection's number.")
    connection: str | None = Field(default=None, max_length=200, description="Connection label.")
    template: str | None = Field(default=None, max_length=200)
    variables: dict[str, VariableValue] = Field(default_factory=dict)
    message: Text | None = Field(default=None, max_length=10 * MAX_MESSAGE_CHARS)
    expires_at: datetime
    created_at: datetime
    traceparent: str | None = Field(
        default=None,
        pattern=TRACEPARENT_PATTERN,
        description=(
            "Optional W3C trace context (a `traceparent` header value) of the producer's send(): "
            "the worker's spans continue that trace; a worker without tracing ignores it."
        ),
    )

    @model_validator(mode="after")
    def _one_body(self) -> Job:
        if (self.template is None) == (self.message is None):
            raise ValueError("give exactly one of 'template' or 'message'")
        if self.expires_at.tzinfo is None or self.created_at.tzinfo is None:
            raise ValueError("'expires_at' and 'created_at' must carry a timezone")
        return self


class ErrorInfo(BaseModel):
    """Why an SMS was not sent (or not delivered), normalized across providers."""

    model_config = ConfigDict(frozen=True)

    code: ErrorCode
    provider_code: str | None = None
    message: str
    retryable: bool = False
    #: which of the code's causes, when it has its own sentence: `country`
    #: (recipient_not_allowed), `custom_endpoint` (sender_invalid), `recipient` (limit_reached),
    #: `sender` (rate_limited: our own limit of the sending number)
    cause: str | None = None


class Event(BaseModel):
    """One entry of a call's result channel."""

    model_config = ConfigDict(frozen=True)

    v: Literal[1] = CONTRACT_VERSION
    job_id: str
    call_id: str
    status: Status
    terminal: bool
    at: datetime
    attempt: int = 0
    provider: str | None = None
    provider_message_id: str | None = None
    to: str | None = Field(default=None, description="Masked: +1415****234.")
    from_: str | None = Field(default=None, description="The sending number or sender id.")
    segments: int | None = None
    #: how the body is encoded: `gsm7` (160 per SMS, 153 per part) or `ucs2` (70, 67)
    encoding: Literal["gsm7", "ucs2"] | None = None
    error: ErrorInfo | None = None
    tool_message: str
    #: set when an earlier attempt may have reached the provider, so this send may be a second copy
    possible_duplicate: bool = False
    #: for `retrying`: when the next attempt is due
    next_attempt_at: datetime | None = None

    def dumps(self) -> str:
        return self.model_dump_json(exclude_none=True)


def utcnow() -> datetime:
    return datetime.now(UTC)


SCHEMA_DIR = Path(__file__).parent / "schemas"


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schemas of the contract, generated from the models."""
    return {
        "job.schema.json": Job.model_json_schema(),
        "event.schema.json": Event.model_json_schema(),
    }


def write_json_schemas(directory: Path = SCHEMA_DIR) -> None:
    """Regenerate the committed JSON Schema files (a test keeps them current)."""
    for name, schema in json_schemas().items():
        (directory / name).write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")


def mask_number(number: str | None) -> str | None:
    """A phone number as it may appear in events and logs: `+14155551234` -> `+1415****234`."""
    if number is None:
        return None
    if len(number) < 12:
        # Too short to show both ends without revealing most of it.
        return number[:2] + "*" * max(len(number) - 2, 0)
    return f"{number[:5]}****{number[-3:]}"


def as_text(value: bytes | str | Any) -> str:
    """A Redis reply's string as `str` (redis-py returns bytes or str depending on `decode_responses`)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def validation_problems(exc: ValidationError, *, root: str = "", limit: int | None = None) -> str:
    """A pydantic validation error as `field.path: message; …` — never the offending value.

    The location is joined by "."; `root` stands for an empty one (the whole object); pydantic's
    "Value error, " prefix is dropped; `limit` keeps the first errors only.
    """
    parts = []
    for err in exc.errors()[:limit]:
        field = ".".join(str(p) for p in err["loc"]) or root
        message = err["msg"].removeprefix("Value error, ")
        parts.append(f"{field}: {message}" if field else message)
    return "; ".join(parts)
