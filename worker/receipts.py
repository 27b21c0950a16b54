"""Delivery receipts: a provider's word on a message it accepted, turned into one event of the call.

Where receipts come from, and what each provider module exposes for them (the HTTP service
calls the classmethods for callbacks; the poller calls `fetch_status` on a provider instance from
`worker.providers.ProviderPool`):

- twilio: `TwilioProvider.receipt(form_fields)` (`MessageSid`, `MessageStatus`, `ErrorCode`, …);
  `TwilioProvider.fetch_status(sid)` (`GET …/Messages/{sid}.json` through the SDK's fetch).
- plivo: `PlivoProvider.receipt(form_fields)` (`MessageUUID`, `Status`, `ErrorCode`, …);
  `PlivoProvider.fetch_status(uuid)` (`GET …/Message/{uuid}/`).
- telnyx: `TelnyxProvider.receipt(json_body)` (the parsed webhook: `data.event_type`,
  `data.payload.to[].status`, `data.payload.errors[]`); `TelnyxProvider.fetch_status(id)`
  (`GET /v2/messages/{id}`).
- sandbox: `SandboxProvider.receipt(fields)`; `SandboxProvider.fetch_status(id)` (its magic numbers).

`worker.providers.receipt_parser(name)` returns the classmethod for a provider name, so no caller
needs an `if provider == …` chain. Each module keeps its receipt error table (`RECEIPT_ERRORS`:
provider code -> taxonomy code and a reason the agent can speak). A parser raises `ValueError`
for a body that is not a receipt (the HTTP service answers 400).

`apply_receipt(client, update)` then does the rest, atomically per message:

1. read the message's mapping (`sms:msg:<provider>:<id>`, written with the `accepted` outcome);
2. no mapping yet (providers fire `queued`/`sent` before the worker stored it): park the receipt
   on `sms:parked:<provider>:<id>` in a script that checks the mapping again, so a receipt is
   either parked before the outcome script (which reads the parked list in the same atomic call
   and applies what it finds) or sees the mapping — never dropped in between;
3. a receipt that came through a connection's callback route (`connection_id` set) must be about
   a message that connection sent: when the mapping names another connection the receipt is a
   `mismatch` and changes nothing (not even the audit log);
4. otherwise one script compares the receipt's rank with the job's current delivery status: a
   higher rank is stored and its event published on the call's stream; the same status is a
   `duplicate`; a lower one (or the other final one) is `stale`. Final statuses stick.

Every raw receipt is appended (numbers masked, message text as length + hash) to
`sms:receipts:<provider>:<id>` with what became of it, for the audit trail.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import redis
import structlog

from producers.contract import (
    DELIVERY_RANK,
    FINAL_DELIVERY_STATUSES,
    PARKED_TTL_SECONDS,
    ErrorCode,
    ErrorInfo,
    Status,
    events_key,
    mask_number,
    message_key,
    parked_key,
    receipts_log_key,
)
from worker import events, metrics, optout, tracing

DeliveryStatus = Literal["queued", "sending", "sent", "delivered", "undelivered", "unconfirmed"]
ApplyResult = Literal["published", "duplicate", "stale", "parked", "mismatch"]
#: Statuses that publish an event; `queued` and `sending` only go into the audit log.
_PUBLISHING: frozenset[str] = frozenset(s.value for s in DELIVERY_RANK if s != Status.ACCEPTED)
log = structlog.get_logger("worker.receipts")
#: Raw receipts kept per message (a message gets a handful).
RECEIPTS_LOG_MAXLEN = 100
#: Parked receipts kept per message.
PARKED_MAXLEN = 50


@dataclass(frozen=True, slots=True)
class ReceiptUpdate:
    """One receipt, normalized: what a provider said about one message it accepted."""

    provider: str  #: "twilio" | "plivo" | "telnyx" | "sandbox"
    message_id: str  #: the provider's message id (Twilio SID, Plivo UUID, Telnyx id)
    status: DeliveryStatus  #: normalized; `queued`/`sending` publish nothing
    error: ErrorInfo | None = None  #: for `undelivered`: taxonomy code, provider code, speakable reason
    raw: Mapping[str, Any] = field(default_factory=dict)  #: the fields as received (masked when stored)
    source: Literal["callback", "poll"] = "callback"
    occurred_at: datetime | None = None
    #: the connection whose callback route the receipt came to (None: a poll, which reads the
    #: mapping's own connection); checked against the mapping's `connection_id`
    connection_id: str | None = None

    @property
    def final(self) -> bool:
        return self.status in FINAL_DELIVERY_STATUSES

    def to_json(self) -> str:
        """The update as stored (parked receipts, the audit log): raw fields masked."""
        return json.dumps(
            {
                "provider": self.provider,
                "message_id": self.message_id,
                "status": self.status,
                "error": self.error.model_dump(mode="json") if self.error else None,
                "raw": mask_raw(self.raw),
                "source": self.source,
                "occurred_at": self.occurred_at.isoformat() if self.occurred_at else None,
                "connection_id": self.connection_id,
            },
            separators=(",", ":"),
            default=str,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> ReceiptUpdate:
        data = json.loads(text)
        return cls(
            provider=data["provider"],
            message_id=data["message_id"],
            status=data["status"],
            error=ErrorInfo.model_validate(data["error"]) if data.get("error") else None,
            raw=data.get("raw") or {},
            source=data.get("source", "callback"),
            occurred_at=datetime.fromisoformat(data["occurred_at"]) if data.get("occurred_at") else None,
            connection_id=data.get("connection_id"),
        )


_PHONE = re.compile(r"^\+?\d{7,15}$")
_BODY_KEYS = frozenset({"text", "body", "Body", "Text"})


def mask_raw(value: Any) -> Any:
    """A raw receipt as it may be stored: phone numbers masked, message text as length + hash."""
    if isinstance(value, Mapping):
        return {
            str(k): _body_digest(v) if k in _BODY_KEYS and isinstance(v, str) else mask_raw(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [mask_raw(v) for v in value]
    if isinstance(value, str) and _PHONE.match(value):
        number = value if value.startswith("+") else f"+{value}"
        return mask_number(number)
    return value


def _body_digest(text: str) -> str:
    return f"<{len(text)} chars, sha256 {hashlib.sha256(text.encode()).hexdigest()[:16]}>"


# KEYS: mapping hash, parked list, receipts log. ARGV: update JSON, ttl s.
# Parks the receipt only while the mapping is absent; `mapped` tells the caller to apply it now.
_PARK = f"""
if redis.call('EXISTS', KEYS[1]) == 1 then return 'mapped' end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('LTRIM', KEYS[2], -{PARKED_MAXLEN}, -1)
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[2]))
redis.call('XADD', KEYS[3], 'MAXLEN', '~', {RECEIPTS_LOG_MAXLEN}, '*', 'receipt', ARGV[1], 'result', 'parked')
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[2]))
return 'parked'
"""

# KEYS: mapping hash, the call's event stream, receipts log (, the connection's opt-out list).
# ARGV: status, rank, event JSON ('' for a status that publishes nothing), update JSON, log ttl s,
#       '1' when the receipt was parked before (its raw fields are already in the log),
#       the opt-out field and its entry JSON ('' unless the receipt says the recipient opted out).
_RANK = f"""
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return 'stale' end
local cur_rank = tonumber(redis.call('HGET', KEYS[1], 'rank') or '0')
local rank = tonumber(ARGV[2])
local result
if ARGV[3] ~= '' and rank > cur_rank then
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'status', ARGV[1], 'rank', rank, 'status_at', t[1])
{events.lua_publish("KEYS[2]", "ARGV[3]")}
  result = 'published'
elseif ARGV[1] == cur then
  result = 'duplicate'
else
  result = 'stale'
end
local fields = {{'receipt', ARGV[4], 'result', result}}
if ARGV[6] == '1' then fields = {{'receipt', ARGV[4], 'result', result, 'was_parked', '1'}} end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', {RECEIPTS_LOG_MAXLEN}, '*', unpack(fields))
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[5]))
if ARGV[7] and ARGV[7] ~= '' then redis.call('HSET', KEYS[4], ARGV[7], ARGV[8]) end
return result
"""


def _registered(client: redis.Redis) -> tuple[Any, Any]:
    """The two scripts on `client` (EVALSHA, falling back to EVAL; registering only hashes them)."""
    return client.register_script(_PARK), client.register_script(_RANK)


def status_callback_url(public_url: str, provider: str, connection_id: str) -> str:
    """Where a provider posts a connection's receipts: `{SMS_PUBLIC_URL}/v1/webhooks/{provider}/
    {connection_id}/status` (never a secret in it; the signature proves the sender)."""
    return f"{public_url.rstrip('/')}/v1/webhooks/{provider}/{connection_id}/status"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_mapping(client: redis.Redis, provider: str, message_id: str) -> dict[str, str]:
    """The message's mapping (job, call, connection, current delivery status), or {} when unknown."""
    raw = client.hgetall(message_key(provider, message_id))
    return {_text(k): _text(v) for k, v in raw.items()}


def apply_receipt(
    client: redis.Redis, update: ReceiptUpdate, *, log_ttl: int = 24 * 3600, was_parked: bool = False
) -> ApplyResult:
    """Apply one receipt: publish its event if it ranks above the job's delivery status so far.

    Returns `published` (an event went on the call's stream), `duplicate` (the job already has
    this status), `stale` (a higher or final status is there already, or the status publishes
    nothing), `parked` (the message's mapping is not stored yet; applied when it is) or
    `mismatch` (the receipt came through another connection's route than the one that sent the
    message: nothing is written).
    """
    park, rank = _registered(client)
    stored = update.to_json()
    mapping = read_mapping(client, update.provider, update.message_id)
    if not mapping:
        if was_parked:
            return "parked"  # still unknown: it stays where it is
        keys = [
            message_key(update.provider, update.message_id),
            parked_key(update.provider, update.message_id),
            receipts_log_key(update.provider, update.message_id),
        ]
        if _text(park(keys=keys, args=[stored, PARKED_TTL_SECONDS])) == "parked":
            return "parked"
        mapping = read_mapping(client, update.provider, update.message_id)
    if not belongs(update, mapping):
        log.warning(
            "receipt.connection_mismatch", provider=update.provider, message_id=update.message_id,
            callback_connection_id=update.connection_id, connection_id=mapping.get("connection_id"),
        )  # fmt: skip
        return "mismatch"
    with tracing.receipt_span(mapping.get("traceparent"), update.provider, update.status) as span:
        applied = _apply_mapped(update, mapping, stored, rank, log_ttl, was_parked)
        tracing.annotate(span, result=applied)
    return applied


def belongs(update: ReceiptUpdate, mapping: Mapping[str, str]) -> bool:
    """Whether a receipt may change the mapped message: a poll always may; a callback only when
    it came to the route of the connection that sent the message. (A mapping written before the
    mapping had `connection_id` is trusted, as the signature was checked.)"""
    sender = mapping.get("connection_id")
    return update.connection_id is None or not sender or sender == update.connection_id


def _apply_mapped(
    update: ReceiptUpdate,
    mapping: dict[str, str],
    stored: str,
    rank: Any,
    log_ttl: int,
    was_parked: bool,
) -> ApplyResult:
    status = Status(update.status) if update.status in _PUBLISHING else None
    event_json = ""
    if status is not None:
        event_json = events.delivery_event(
            mapping, status, error=update.error, provider_message_id=update.message_id
        ).dumps()
    keys = [
        message_key(update.provider, update.message_id),
        events_key(mapping["call_id"]),
        receipts_log_key(update.provider, update.message_id),
    ]
    args: list[Any] = [
        update.status,
        DELIVERY_RANK[status] if status is not None else -1,
        event_json,
        stored,
        log_ttl,
        "1" if was_parked else "",
    ]
    opt_out = _opt_out(update, mapping)
    if opt_out is not None:
        keys.append(opt_out[0])
        args.extend(opt_out[1:])
    result = rank(keys=keys, args=args)
    applied: ApplyResult = _text(result)  # type: ignore[assignment]
    if applied == "published":
        metrics.observe_receipt(
            update.provider, update.status, accepted_at=_when(mapping.get("accepted_at")),
            at=update.occurred_at if update.occurred_at and update.occurred_at.tzinfo else datetime.now(UTC),
        )  # fmt: skip
    return applied


def _opt_out(update: ReceiptUpdate, mapping: Mapping[str, str]) -> tuple[str, str, str] | None:
    """The opt-out list, field and entry to set when the receipt says the recipient opted out
    (Plivo 200, Telnyx 40300, Twilio 21610, …: the provider's table maps it to
    `recipient_opted_out`), from the fields the mapping keeps (`worker.optout.mapping_fields`)."""
    if update.error is None or update.error.code != ErrorCode.RECIPIENT_OPTED_OUT:
        return None
    key, name = mapping.get("optout_key"), mapping.get("optout_field")
    if not key or not name:
        return None  # a mapping written before it kept the opt-out fields
    code = f" {update.error.provider_code}" if update.error.provider_code else ""
    reason = f"{update.provider}{code} receipt"
    return key, name, optout.entry_json(mapping.get("to") or "", name, reason)


def _when(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def apply_parked(client: redis.Redis, provider: str, message_id: str, parked: list[Any]) -> list[ApplyResult]:
    """Apply receipts that were parked for a message whose mapping now exists, then drop them.

    Called by the worker right after the outcome transaction (which read the parked list), and by
    the status poller (in case that worker died in between). Applying one twice is harmless: the
    ranking makes the second a `duplicate`.
    """
    results = [
        apply_receipt(client, ReceiptUpdate.from_json(_text(item)), was_parked=True) for item in parked
    ]
    if results and "parked" not in results:
        client.delete(parked_key(provider, message_id))
    return results


def drain_parked(client: redis.Redis, provider: str, message_id: str) -> list[ApplyResult]:
    """Apply whatever is parked for the message now (the poller's safety net)."""
    parked = client.lrange(parked_key(provider, message_id), 0, -1)
    return apply_parked(client, provider, message_id, list(parked))


def receipt_log(client: redis.Redis, provider: str, message_id: str) -> list[dict[str, Any]]:
    """Every raw receipt of one message, oldest first: `at` (ms since the epoch, from the stream
    id), `result`, and the stored update (masked)."""
    entries: Any = client.xrange(receipts_log_key(provider, message_id))
    log: list[dict[str, Any]] = []
    for entry_id, fields in entries:
        decoded = {_text(k): _text(v) for k, v in fields.items()}
        receipt = json.loads(decoded.get("receipt", "{}"))
        log.append(
            {
                "at_ms": int(_text(entry_id).split("-")[0]),
                "result": decoded.get("result"),
                "was_parked": decoded.get("was_parked") == "1",
                **receipt,
            }
        )
    return log
