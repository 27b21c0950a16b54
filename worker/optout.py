"""The local opt-out list: who replied STOP, so that nothing is sent to them (and the agent can say so).

A number is opted out for the sending number it wrote STOP to, or for every number of the
connection when the connection's `opt_out_scope` is `connection`. It is added when:

- an inbound text with an opt-out keyword arrives (`handle_inbound`, called by the HTTP service);
- a send fails with the provider's opt-out code (Twilio 21610, Telnyx 40300: the providers' error
  tables map them to `recipient_opted_out`, and the service then calls `record`);
- a delivery receipt says so (Plivo `ErrorCode` 200, or any receipt whose error the provider's
  table maps to `recipient_opted_out`): the message's mapping, written with the `accepted`
  outcome, carries the list and field (`mapping_fields`), and `worker.receipts.apply_receipt`
  sets it in the same script that ranks the receipt;
- an operator adds it (`midcall-sms optout add`).

START / UNSTOP / YES removes it. Each connection's list is one Redis hash,
`sms:optout:<connection_id>`, whose fields are `<sending number>|<hash>` (or `*|<hash>` for the
whole connection), where `<hash>` is the recipient's keyed hash (`worker/hashing.py`), never the
number; the value records the masked number, when and why. The send path checks the list inside
the claim script (`worker/idempotency.py`), so it costs no Redis round trip of its own; a send
that switches to its fallback connection checks that connection's list too (`check`, one HMGET
on that rare path).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import redis

from producers.contract import mask_number, utcnow
from worker.config.models import Connection
from worker.hashing import hash_key, hash_number
from worker.settings import Settings

#: Replies that opt out (carriers' and providers' list: STOP, STOPALL, UNSUBSCRIBE, CANCEL, END,
#: QUIT; Twilio adds OPTOUT, REVOKE, STOP ALL).
OPT_OUT_KEYWORDS = frozenset(
    {"STOP", "STOPALL", "STOP ALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"}
)
#: Replies that opt back in.
OPT_IN_KEYWORDS = frozenset({"START", "UNSTOP", "YES"})
HELP_KEYWORDS = frozenset({"HELP", "INFO"})
#: Twilio's `OptOutType` values (Advanced Opt-Out) as our actions.
_HINTS = {"STOP": "opt_out", "START": "opt_in", "HELP": "help"}

Action = Literal["opt_out", "opt_in", "help"]
Scope = Literal["number", "connection"]
#: the field prefix of an opt-out that covers every number of the connection
ALL_NUMBERS = "*"


class Inbound(Protocol):
    """What `handle_inbound` reads of an inbound text (`worker.inbound.InboundMessage`)."""

    @property
    def from_number(self) -> str: ...
    @property
    def to_number(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def keyword_hint(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class OptOut:
    """One entry of the list, as it may be shown: the number masked."""

    number: str
    #: the sending number it applies to, or `*` for the whole connection
    sender: str
    at: str
    reason: str


def list_key(connection: Connection) -> str:
    """The Redis hash of a connection's opt-outs."""
    return f"sms:optout:{connection.connection_id}"


def field(digest: str, sender: str | None) -> str:
    """The hash field of an opt-out of `digest` for `sender` (None: the whole connection)."""
    return f"{sender or ALL_NUMBERS}|{digest}"


def scope_sender(connection: Connection, sender: str | None) -> str | None:
    """The sending number an opt-out from `sender` is recorded for: itself (default: the
    connection's number), or None (the whole connection) with `opt_out_scope: connection`."""
    sender = sender or connection.from_number
    return sender if connection.opt_out_scope == "number" else None


def mapping_fields(connection: Connection, number: str, sender: str | None, *, key: bytes) -> dict[str, str]:
    """What a sent message's mapping keeps so that a receipt saying "opted out" can record it
    without the number: the list's key and the entry's field (the keyed hash, never the number)."""
    return {
        "optout_key": list_key(connection),
        "optout_field": field(hash_number(key, number), scope_sender(connection, sender)),
    }


def entry_json(masked_number: str, field_name: str, reason: str) -> str:
    """An entry's value for a list field (`<sender>|<hash>`), as `record` writes it."""
    sender = field_name.split("|", 1)[0]
    entry = {"number": masked_number, "sender": sender, "at": utcnow().isoformat(), "reason": reason[:200]}
    return json.dumps(entry, separators=(",", ":"))


def keyword(text: str, hint: str | None = None) -> Action | None:
    """What an inbound text asks for: the provider's own reading first (Twilio `OptOutType`),
    else the whole text, trimmed and case-folded, against the keyword lists."""
    if hint:
        found = _HINTS.get(hint.strip().upper())
        if found is not None:
            return found  # type: ignore[return-value]
    words = " ".join(text.upper().split()).strip(" .!")
    if words in OPT_OUT_KEYWORDS:
        return "opt_out"
    if words in OPT_IN_KEYWORDS:
        return "opt_in"
    if words in HELP_KEYWORDS:
        return "help"
    return None


def _key(client: redis.Redis, key: bytes | None, settings: Settings | None) -> bytes:
    return key if key is not None else hash_key(settings or Settings(), client)


def record(
    client: redis.Redis,
    connection: Connection,
    number: str,
    *,
    reason: str,
    sender: str | None = None,
    key: bytes | None = None,
    settings: Settings | None = None,
) -> None:
    """Opt `number` out: from `sender` (default: the connection's number), or from the whole
    connection when its `opt_out_scope` is `connection` (or it has no number). One HSET."""
    name = field(hash_number(_key(client, key, settings), number), scope_sender(connection, sender))
    client.hset(list_key(connection), name, entry_json(mask_number(number) or "", name, reason))


def remove(
    client: redis.Redis,
    connection: Connection,
    number: str,
    *,
    sender: str | None = None,
    key: bytes | None = None,
    settings: Settings | None = None,
) -> int:
    """Opt `number` back in for `sender` (default: the connection's number) and for the whole
    connection; with neither a sender nor a connection number, every entry of `number`. Returns
    how many entries were removed."""
    digest = hash_number(_key(client, key, settings), number)
    name = list_key(connection)
    sender = sender or connection.from_number
    if sender is None:
        fields = [f for f in _fields(client, name) if f.endswith(f"|{digest}")]
    else:
        fields = [field(digest, sender), field(digest, None)]
    return int(client.hdel(name, *fields)) if fields else 0


def check(
    client: redis.Redis,
    connection: Connection,
    number: str,
    *,
    sender: str | None = None,
    key: bytes | None = None,
    settings: Settings | None = None,
) -> OptOut | None:
    """The entry that keeps texts from `sender` (default: the connection's number) from reaching
    `number`, or None. (The send path does this inside its claim; this is for the CLI and tests.)"""
    digest = hash_number(_key(client, key, settings), number)
    sender = sender or connection.from_number
    values = client.hmget(list_key(connection), [field(digest, sender), field(digest, None)])
    found = next((v for v in values if v), None)
    return _entry(found) if found else None


def entries(client: redis.Redis, connection: Connection) -> list[OptOut]:
    """Every opt-out of the connection, oldest first (numbers masked)."""
    values = client.hvals(list_key(connection))
    return sorted((_entry(v) for v in values), key=lambda e: e.at)


def handle_inbound(
    client: redis.Redis,
    connection: Connection,
    message: Inbound,
    *,
    key: bytes | None = None,
    settings: Settings | None = None,
) -> Action | None:
    """Act on an inbound text: STOP-family keywords opt the writer out of the number they wrote
    to (or the connection), START / UNSTOP / YES opt them back in. Returns what was done (`help`
    is only reported: the provider answers HELP itself), or None for any other text."""
    action = keyword(message.text, message.keyword_hint)
    if action == "opt_out":
        record(client, connection, message.from_number, reason="inbound STOP", sender=message.to_number,
               key=key, settings=settings)  # fmt: skip
    elif action == "opt_in":
        remove(client, connection, message.from_number, sender=message.to_number, key=key, settings=settings)
    return action


def _fields(client: redis.Redis, name: str) -> list[str]:
    return [f.decode() if isinstance(f, bytes) else str(f) for f in client.hkeys(name)]


def _entry(raw: Any) -> OptOut:
    data = json.loads(raw)
    return OptOut(
        number=str(data.get("number", "")),
        sender=str(data.get("sender", ALL_NUMBERS)),
        at=str(data.get("at", "")),
        reason=str(data.get("reason", "")),
    )
