"""The idempotency store against a real Redis: claims, leases, takeovers, stored outcomes, quotas."""

from __future__ import annotations

import time

import redis

from producers.contract import call_counter_key, events_key, idempotency_key
from worker.idempotency import IdempotencyStore
from worker.liveness import alive_key_of_owner

LEASE = 0.05  # seconds; tests sleep past it to simulate a dead worker
PAST_LEASE = LEASE + 0.05


def store(client: redis.Redis, lease_seconds: float = 30.0) -> IdempotencyStore:
    return IdempotencyStore(client, ttl=3600, lease_seconds=lease_seconds)


def finish(client: redis.Redis, idem: IdempotencyStore, key: str, outcome: dict[str, object]) -> None:
    with client.pipeline(transaction=True) as pipe:
        idem.finish(pipe, key, outcome)
        pipe.execute()


def test_first_claims_are_new_and_count_the_calls_sends(redis_client: redis.Redis) -> None:
    """Each first claim of a key is `new`, with the call's count of distinct sends 1, 2, 3."""
    idem = store(redis_client)
    claims = [idem.claim(f"k{i}", job_id=f"j{i}", owner="w1", call_id="CA1") for i in range(3)]
    assert [c.kind for c in claims] == ["new", "new", "new"]
    assert [c.call_count for c in claims] == [1, 2, 3]
    assert not any(c.ambiguous for c in claims)


def test_counts_are_per_call(redis_client: redis.Redis) -> None:
    """Sends of another call do not add to this call's count."""
    idem = store(redis_client)
    assert idem.claim("a", job_id="ja", owner="w", call_id="CA1").call_count == 1
    assert idem.claim("b", job_id="jb", owner="w", call_id="CA2").call_count == 1
    assert idem.claim("c", job_id="jc", owner="w", call_id="CA1").call_count == 2


def test_a_second_job_is_busy_while_the_first_holds_a_live_lease(redis_client: redis.Redis) -> None:
    """Another job claiming a key whose owner's lease is live is told `busy`, with the lease left."""
    idem = store(redis_client)
    idem.claim("k", job_id="j1", owner="w1", call_id="CA1")
    busy = idem.claim("k", job_id="j2", owner="w2", call_id="CA1")
    assert busy.kind == "busy"
    assert 0 < busy.lease_left_ms <= 30_000
    assert busy.call_count == 0


def test_the_same_job_redelivered_is_busy_while_its_lease_is_live(redis_client: redis.Redis) -> None:
    """A redelivery of the same job while the first delivery holds a live lease is `busy` too."""
    idem = store(redis_client)
    idem.claim("k", job_id="j1", owner="w1", call_id="CA1")
    assert idem.claim("k", job_id="j1", owner="w2", call_id="CA1").kind == "busy"


def test_a_busy_claim_does_not_count_a_send(redis_client: redis.Redis) -> None:
    """Claims that find the key taken do not add to the call's count."""
    idem = store(redis_client)
    idem.claim("k", job_id="j1", owner="w1", call_id="CA1")
    idem.claim("k", job_id="j2", owner="w2", call_id="CA1")
    assert int(redis_client.get(call_counter_key("CA1")) or 0) == 1


def test_after_finish_every_claim_is_done_with_the_outcome_and_owner(redis_client: redis.Redis) -> None:
    """Once finished, a key answers `done` with the stored outcome and the job that owned it."""
    idem = store(redis_client)
    idem.claim("k", job_id="j1", owner="w1", call_id="CA1")
    outcome = {"status": "accepted", "provider_message_id": "SM42", "attempt": 1}
    finish(redis_client, idem, "k", outcome)

    for job_id in ("j2", "j1"):
        done = idem.claim("k", job_id=job_id, owner="w9", call_id="CA1")
        assert done.kind == "done"
        assert done.outcome == outcome
        assert done.owner_job_id == "j1"
    assert int(redis_client.get(call_counter_key("CA1")) or 0) == 1


def test_finish_keeps_the_record_for_the_ttl(redis_client: redis.Redis) -> None:
    """The finished record expires after the store's TTL, not before."""
    idem = store(redis_client)
    idem.claim("k", job_id="j1", owner="w1", call_id="CA1")
    finish(redis_client, idem, "k", {"status": "failed"})
    assert 3500 < redis_client.ttl(idempotency_key("k")) <= 3600


def test_an_expired_lease_in_claimed_is_taken_over_safely(redis_client: redis.Redis) -> None:
    """A lease that ran out before the provider was called is taken over and not flagged ambiguous."""
    idem = store(redis_client, lease_seconds=LEASE)
    idem.claim("k", job_id="j1", owner="w1", call_id="CA1")
    time.sleep(PAST_LEASE)
    takeover = idem.claim("k", job_id="j1", owner="w2", call_id="CA1")
    assert takeover.kind == "takeover"
    assert takeover.previous_state == "claimed"
    assert takeover.ambiguous is False
    assert int(redis_client.get(call_counter_key("CA1")) or 0) == 1


def test_an_expired_lease_in_calling_is_taken_over_as_ambiguous(redis_client: redis.Redis) -> None:
    """A lease that ran out while calling the provider is taken over and flagged ambiguous, for good."""
    idem = store(redis_client, lease_seconds=LEASE)
    idem.claim("k", job_id="j1", owner="w1", call_id="CA1")
    idem.mark_calling("k", owner="w1")
    time.sleep(PAST_LEASE)
    takeover = idem.claim("k", job_id="j1", owner="w2", call_id="CA1")
    assert takeover.kind == "takeover"
    assert takeover.previous_state == "calling"
    assert takeover.ambiguous is True
    # the flag survives a second takeover from `claimed`
    time.sleep(PAST_LEASE)
    again = idem.claim("k", job_id="j1", owner="w3", call_id="CA1")
    assert (again.kind, again.previous_state, again.ambiguous) == ("takeover", "claimed", True)


def test_the_new_owner_holds_a_fresh_lease_after_a_takeover(redis_client: redis.Redis) -> None:
    """After a takeover the new owner holds the key: another job is busy again."""
    idem = store(redis_client, lease_seconds=0.5)
    idem.claim("k", job_id="j1", owner="w1", call_id="CA1")
    redis_client.hset(idempotency_key("k"), "lease_until", 0)  # the first owner's lease ran out long ago
    assert idem.claim("k", job_id="j1", owner="w2", call_id="CA1").kind == "takeover"
    assert idem.claim("k", job_id="j2", owner="w3", call_id="CA1").kind == "busy"


def test_only_the_owner_can_move_the_key_to_calling(redis_client: redis.Redis) -> None:
    """mark_calling by a worker that does not own the key changes nothing."""
    idem = store(redis_client, lease_seconds=LEASE)
    idem.claim("k", job_id="j1", owner="w1", call_id="CA1")
    idem.mark_calling("k", owner="intruder")
    assert redis_client.hget(idempotency_key("k"), "state") == b"claimed"
    time.sleep(PAST_LEASE)
    assert idem.claim("k", job_id="j1", owner="w2", call_id="CA1").ambiguous is False


def test_a_claim_with_a_plan_enters_calling_and_publishes_sending(redis_client: redis.Redis) -> None:
    """With a `sending` event, the claim enters `calling` and appends the event to the call's stream
    in the same round trip."""
    idem = store(redis_client)
    claim = idem.claim("k", job_id="j1", owner="w1", call_id="CA1", sending='{"status":"sending"}')
    assert claim.kind == "new"
    assert redis_client.hget(idempotency_key("k"), "state") == b"calling"
    [(_, fields)] = redis_client.xrange(events_key("CA1"))  # type: ignore[misc]
    assert fields == {b"event": b'{"status":"sending"}'}
    assert redis_client.ttl(events_key("CA1")) > 0


def test_a_claim_past_the_cap_is_limit_and_publishes_nothing(redis_client: redis.Redis) -> None:
    """The call's cap is checked in the claim: the send past it is `limit`, owned but not calling."""
    idem = store(redis_client)
    assert idem.claim("k1", job_id="j1", owner="w", call_id="CA1", cap=1, sending="{}").kind == "new"
    over = idem.claim("k2", job_id="j2", owner="w", call_id="CA1", cap=1, sending="{}")
    assert (over.kind, over.call_count, over.owned) == ("limit", 2, True)
    assert redis_client.hget(idempotency_key("k2"), "state") == b"claimed"
    assert redis_client.xlen(events_key("CA1")) == 1


def test_waiting_lets_the_same_job_retake_the_key_while_others_stay_busy(redis_client: redis.Redis) -> None:
    """After mark_waiting, the same job's next attempt takes the key over; another job stays busy."""
    idem = store(redis_client)
    idem.claim("k", job_id="j1", owner="w1", call_id="CA1")
    idem.mark_calling("k", owner="w1")
    idem.mark_waiting("k", owner="w1", ambiguous=False, hold_seconds=0.3)

    other = idem.claim("k", job_id="j2", owner="w2", call_id="CA1")
    assert other.kind == "busy"
    assert other.lease_left_ms > 300

    retry = idem.claim("k", job_id="j1", owner="w3", call_id="CA1")
    assert retry.kind == "takeover"
    assert retry.previous_state == "waiting"
    assert retry.ambiguous is False
    assert idem.claim("k", job_id="j2", owner="w2", call_id="CA1").kind == "busy"


def test_waiting_after_an_ambiguous_error_keeps_the_flag(redis_client: redis.Redis) -> None:
    """mark_waiting with ambiguous=True flags the next attempt as a possible duplicate."""
    idem = store(redis_client)
    idem.claim("k", job_id="j1", owner="w1", call_id="CA1")
    idem.mark_calling("k", owner="w1")
    idem.mark_waiting("k", owner="w1", ambiguous=True, hold_seconds=0.1)
    retry = idem.claim("k", job_id="j1", owner="w2", call_id="CA1")
    assert (retry.kind, retry.ambiguous) == ("takeover", True)


def test_release_count_gives_the_per_call_quota_back(redis_client: redis.Redis) -> None:
    """After release_count, the call's next distinct send counts as if the released one never happened."""
    idem = store(redis_client)
    assert idem.claim("k1", job_id="j1", owner="w", call_id="CA1").call_count == 1
    with redis_client.pipeline(transaction=True) as pipe:
        idem.finish(pipe, "k1", {"status": "failed"})
        idem.release_count(pipe, "CA1")
        pipe.execute()
    assert idem.claim("k2", job_id="j2", owner="w", call_id="CA1").call_count == 1
    assert idem.claim("k3", job_id="j3", owner="w", call_id="CA1").call_count == 2


def test_the_call_counter_expires(redis_client: redis.Redis) -> None:
    """The per-call counter gets the store's TTL, so counters of ended calls do not pile up."""
    idem = store(redis_client)
    idem.claim("k", job_id="j", owner="w", call_id="CA1")
    assert 0 < redis_client.ttl(call_counter_key("CA1")) <= 3600
    assert 0 < redis_client.ttl(idempotency_key("k")) <= 3600


def test_a_cap_of_zero_refuses_every_send(redis_client: redis.Redis) -> None:
    """`max_per_call: 0` means no texts in a call, not "no limit"."""
    idem = store(redis_client)
    assert idem.claim("k1", job_id="j1", owner="w", call_id="CA1", cap=0, sending="{}").kind == "limit"
    assert idem.claim("k2", job_id="j2", owner="w", call_id="CA2", sending="{}").kind == "new"


def _wait_for_uptime(client: redis.Redis, seconds: int) -> None:
    while int(client.info("server")["uptime_in_seconds"]) < seconds:
        time.sleep(0.1)


def test_a_calling_claim_whose_owners_heartbeat_is_gone_is_taken_over_at_once(
    redis_client: redis.Redis,
) -> None:
    """The owner's heartbeat key disappears (its worker died): the next claim takes over without
    waiting for the 30 s lease, flagged as a possible duplicate (the provider may have accepted)."""
    idem = IdempotencyStore(redis_client, ttl=3600, lease_seconds=30.0, heartbeat_ttl=1)
    _wait_for_uptime(redis_client, 1)
    owner = "host:1:aaaa:deadbeef0001"
    redis_client.set(alive_key_of_owner(owner), "1", px=60_000)
    idem.claim("k", job_id="j1", owner=owner, call_id="CA1", sending='{"e":1}')
    assert idem.claim("k", job_id="j1", owner="host:2:bbbb:x", call_id="CA1").kind == "busy"
    redis_client.delete(alive_key_of_owner(owner))
    takeover = idem.claim("k", job_id="j1", owner="host:2:bbbb:x", call_id="CA1", sending='{"e":2}')
    assert (takeover.kind, takeover.previous_state, takeover.ambiguous) == ("takeover", "calling", True)
    redis_client.delete(alive_key_of_owner("host:2:bbbb:x"))


def test_an_owner_without_a_heartbeat_keeps_the_lease_rule(redis_client: redis.Redis) -> None:
    """A claim made by an owner that had no heartbeat key at the time (old worker, tests) is only
    taken over when its lease runs out."""
    idem = IdempotencyStore(redis_client, ttl=3600, lease_seconds=30.0, heartbeat_ttl=1)
    _wait_for_uptime(redis_client, 1)
    idem.claim("k", job_id="j1", owner="nohb:1:cccc:1", call_id="CA1", sending='{"e":1}')
    assert idem.claim("k", job_id="j2", owner="nohb:2:dddd:2", call_id="CA1").kind == "busy"


def test_a_waiting_claim_is_not_taken_from_a_dead_owner_by_another_job(redis_client: redis.Redis) -> None:
    """A retry's wait is its own lease: another job with the same key stays busy even when the
    owner died (so it cannot send before the Retry-After), while the same job's retry takes over."""
    idem = IdempotencyStore(redis_client, ttl=3600, lease_seconds=30.0, heartbeat_ttl=1)
    _wait_for_uptime(redis_client, 1)
    owner = "host:3:eeee:1"
    redis_client.set(alive_key_of_owner(owner), "1", px=60_000)
    idem.claim("k", job_id="j1", owner=owner, call_id="CA1", sending='{"e":1}')
    idem.mark_waiting("k", owner=owner, ambiguous=False, hold_seconds=20)
    redis_client.delete(alive_key_of_owner(owner))
    assert idem.claim("k", job_id="j2", owner="host:4:ffff:1", call_id="CA1").kind == "busy"
    assert idem.claim("k", job_id="j1", owner="host:4:ffff:2", call_id="CA1").kind == "takeover"
