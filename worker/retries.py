"""What to do after a failed provider call: retry at a time, fall back to another connection, or give
up. Pure functions: no I/O, no clock (the caller passes `now`), randomness only from the `rng` given.

- A retryable error is tried again while the connection in use has attempts left (the primary and
  the fallback each get `max_attempts`) and the next attempt comes before the job's deadline; the
  wait is exponential with full jitter, never shorter than the provider's Retry-After.
- Otherwise an error of the connection (not of the recipient: unavailable, credentials refused,
  rate limited) moves the send to the agent's fallback connection, once.
- Otherwise the job fails with the error.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from producers.contract import ErrorCode
from worker.errors import SendError

#: Errors of a connection (not of the recipient) after which the fallback connection is tried.
FALLBACK_CODES = frozenset({ErrorCode.PROVIDER_UNAVAILABLE, ErrorCode.AUTH_FAILED, ErrorCode.RATE_LIMITED})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempts per connection, and the backoff's base and cap (seconds)."""

    max_attempts: int = 4
    first_delay: float = 0.25
    max_delay: float = 20.0


@dataclass(frozen=True, slots=True)
class RetryAt:
    """Try the same connection again after `delay` seconds, at `at`."""

    delay: float
    at: datetime


@dataclass(frozen=True, slots=True)
class FallBack:
    """Send through the fallback connection now (its attempts count from this one)."""


@dataclass(frozen=True, slots=True)
class GiveUp:
    """The job fails with the error."""


Decision = RetryAt | FallBack | GiveUp


def backoff(policy: RetryPolicy, tries: int, retry_after: float | None, rng: random.Random) -> float:
    """Seconds before try `tries + 1`: full jitter under `first_delay * 2 * 3^(tries-1)` (capped at
    `max_delay`), so the first retry is fast (the caller is waiting); never before Retry-After."""
    ceiling = min(policy.max_delay, policy.first_delay * 2 * 3 ** (tries - 1))
    delay = rng.uniform(0, ceiling)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def tries_on_connection(attempt: int, fallback_from: int | None) -> int:
    """How many attempts the connection in use has had, this one included."""
    return attempt - (fallback_from or 1) + 1


def decide(
    err: SendError,
    *,
    attempt: int,
    fallback_from: int | None,
    has_fallback: bool,
    expires_at: datetime,
    now: datetime,
    policy: RetryPolicy,
    rng: random.Random,
) -> Decision:
    """After attempt `attempt` failed with `err`: retry, fall back, or give up.

    `fallback_from` is the attempt at which the send moved to the fallback connection (None: still
    on the primary); `has_fallback` whether the agent has a fallback connection at all.
    """
    tries = tries_on_connection(attempt, fallback_from)
    if err.retryable and tries < policy.max_attempts:
        delay = backoff(policy, tries, err.retry_after, rng)
        at = now + timedelta(seconds=delay)
        if at < expires_at:
            return RetryAt(delay, at)
    if has_fallback and fallback_from is None and err.code in FALLBACK_CODES:
        return FallBack()
    return GiveUp()
