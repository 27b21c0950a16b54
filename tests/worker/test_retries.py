"""The retry and fallback decisions (`worker.retries`): pure, so every case is one call."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from producers.contract import ErrorCode
from worker.errors import SendError
from worker.retries import FallBack, GiveUp, RetryAt, RetryPolicy, backoff, decide, tries_on_connection

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=4, first_delay=0.25, max_delay=20.0)
UNAVAILABLE = SendError(ErrorCode.PROVIDER_UNAVAILABLE, "down")
INVALID = SendError(ErrorCode.INVALID_NUMBER, "no such number")


def call(err: SendError, *, attempt: int = 1, fallback_from: int | None = None, has_fallback: bool = False,
         deadline_s: float = 300.0, seed: int = 1) -> RetryAt | FallBack | GiveUp:  # fmt: skip
    return decide(
        err, attempt=attempt, fallback_from=fallback_from, has_fallback=has_fallback,
        expires_at=NOW + timedelta(seconds=deadline_s), now=NOW, policy=POLICY, rng=random.Random(seed),
    )  # fmt: skip


def test_a_retryable_error_is_retried_at_now_plus_the_backoff() -> None:
    """The first failure of a retryable error: retry, at `now` + the delay, within 2x the first delay."""
    decision = call(UNAVAILABLE)
    assert isinstance(decision, RetryAt)
    assert 0 <= decision.delay <= 2 * POLICY.first_delay
    assert decision.at == NOW + timedelta(seconds=decision.delay)


def test_attempts_run_out_per_connection() -> None:
    """The primary gets `max_attempts` attempts; the fallback as many again, counted from its first."""
    assert isinstance(call(UNAVAILABLE, attempt=3), RetryAt)
    assert isinstance(call(UNAVAILABLE, attempt=4), GiveUp)
    assert isinstance(call(UNAVAILABLE, attempt=4, has_fallback=True), FallBack)
    assert isinstance(call(UNAVAILABLE, attempt=6, fallback_from=4), RetryAt)  # the fallback's 3rd
    assert isinstance(call(UNAVAILABLE, attempt=7, fallback_from=4, has_fallback=True), GiveUp)
    assert tries_on_connection(7, 4) == 4 and tries_on_connection(3, None) == 3


def test_a_retry_past_the_deadline_falls_back_or_gives_up() -> None:
    """A retry that would come after the job's deadline is not scheduled."""
    assert isinstance(call(UNAVAILABLE, deadline_s=0.001), GiveUp)
    assert isinstance(call(UNAVAILABLE, deadline_s=0.001, has_fallback=True), FallBack)


@pytest.mark.parametrize(
    "code", [ErrorCode.PROVIDER_UNAVAILABLE, ErrorCode.AUTH_FAILED, ErrorCode.RATE_LIMITED]
)
def test_errors_of_the_connection_fall_back_once(code: ErrorCode) -> None:
    """Unavailable, refused credentials, rate limited: the fallback connection, never twice."""
    err = SendError(code, "connection trouble")
    assert isinstance(call(err, attempt=POLICY.max_attempts, has_fallback=True), FallBack)
    assert isinstance(call(err, attempt=9, fallback_from=5, has_fallback=True), GiveUp)


def test_an_error_of_the_recipient_never_falls_back() -> None:
    """Another provider would refuse an invalid number too: the job fails at once."""
    assert isinstance(call(INVALID, has_fallback=True), GiveUp)


def test_the_backoff_grows_is_capped_and_respects_retry_after() -> None:
    """Full jitter under first_delay * 2 * 3^(n-1), at most max_delay, never before Retry-After."""
    rng = random.Random(3)
    assert all(backoff(POLICY, 1, None, rng) <= 0.5 for _ in range(200))
    assert max(backoff(POLICY, 3, None, rng) for _ in range(200)) > 2.0
    assert all(backoff(POLICY, 30, None, rng) <= POLICY.max_delay for _ in range(200))
    assert all(backoff(POLICY, 1, 1.5, rng) >= 1.5 for _ in range(200))
    retry = call(SendError(ErrorCode.RATE_LIMITED, "slow down", retry_after=7.0))
    assert isinstance(retry, RetryAt) and retry.delay >= 7.0


def test_the_same_seed_gives_the_same_decision() -> None:
    """No hidden randomness or clock: equal inputs, equal answers."""
    assert call(UNAVAILABLE, seed=5) == call(UNAVAILABLE, seed=5)
