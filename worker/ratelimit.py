"""Sender rate limits: which rate applies to a sending number (no I/O; the GCRA runs in the claim).

A sending number's rate is, in order: the connection's `number_rates[number]`, the connection's
`messages_per_second` (+ `burst`), or the provider's default for the kind of number
(`SmsProvider.sender_rates`: long code, toll-free, short code, other countries). The cost of a
message is its segments (providers state throughput in segments per second). The limiter itself,
a GCRA (generic cell rate algorithm) shared by every worker, is part of the claim script in
`worker/idempotency.py`: a send inside the limit goes at once; one over it is scheduled for its
slot when that slot comes before the job's deadline, else refused at once.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import phonenumbers

from worker.config.models import Connection
from worker.providers import PROVIDER_CLASSES
from worker.providers.base import NumberType

#: countries where a geographic number is a "long code" with the long-code default rate
_LONG_CODE_REGIONS = frozenset({"US", "CA"})


@dataclass(frozen=True, slots=True)
class RateLimit:
    """The limit one message is held to: its sending number's GCRA state and parameters."""

    #: the Redis key of the sending number's GCRA state (its theoretical arrival time)
    key: str
    per_second: float
    #: how many messages may leave at once before the rate applies
    burst: int
    #: what this message costs (its segments)
    cost: int

    @property
    def interval_ms(self) -> float:
        """Milliseconds one unit (segment) occupies the number."""
        return 1000.0 / self.per_second


def rate_key(connection: Connection, from_: str | None) -> str:
    """The GCRA state of a sending number (a number pool without `from`: per connection)."""
    return f"sms:rate:{from_}" if from_ else f"sms:rate:pool:{connection.connection_id}"


@functools.lru_cache(maxsize=4096)
def number_type(number: str) -> NumberType:
    """The kind of a sending number, for its default rate: short code (not E.164: 3–8 digits),
    toll-free, a US/CA long code, or a number of another country."""
    if not number.startswith("+"):
        return "short_code"
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return "international"
    if phonenumbers.number_type(parsed) == phonenumbers.PhoneNumberType.TOLL_FREE:
        return "toll_free"
    region = phonenumbers.region_code_for_number(parsed)
    return "long_code" if region in _LONG_CODE_REGIONS else "international"


def default_burst(per_second: float) -> int:
    """One second's worth of messages, at least one."""
    return max(1, int(per_second))


def sender_rate(connection: Connection, from_: str | None, cost: int = 1) -> RateLimit | None:
    """The limit a message from `from_` on `connection` is held to, or None (no limit)."""
    override = connection.number_rates.get(from_) if from_ else None
    if override is not None:
        per_second, burst = override.messages_per_second, override.burst
    elif connection.messages_per_second is not None:
        per_second, burst = connection.messages_per_second, connection.burst
    else:
        defaults = PROVIDER_CLASSES[connection.provider].sender_rates
        if defaults is None or from_ is None:
            return None
        per_second, burst = defaults[number_type(from_)], connection.burst
    return RateLimit(
        key=rate_key(connection, from_),
        per_second=per_second,
        burst=burst if burst is not None else default_burst(per_second),
        cost=max(cost, 1),
    )
