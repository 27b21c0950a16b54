"""`SmsService.handle()` without Celery: a real Redis, a static config and the sandbox provider."""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
import redis

from producers.contract import EVENT_FIELD, SANDBOX_OUTBOX_KEY, CallContext, events_key
from producers.jobs import build_job
from worker.config.models import SmsConfig
from worker.config.source import StaticConfigSource
from worker.providers import ProviderPool
from worker.service import SmsService
from worker.settings import Settings

CALLER = "+14155551234"
SENDER = "+14155550000"
FLAKY_ONCE = "+15005550010"
OPTED_OUT = "+15005550004"
RATE_LIMITED = "+15005550008"
UNAVAILABLE = "+15005550009"

Entries = list[tuple[bytes, dict[bytes, bytes]]]


def sandbox_config(**sms: Any) -> SmsConfig:
    settings: dict[str, Any] = {
        "enabled": True,
        "provider": "sandbox",
        "templates": {"code": "Your code is {code}", "booking": "See you on {date} at {time}"},
    }
    settings.update(sms)
    return SmsConfig.model_validate(
        {
            "connections": [
                {"label": "Sandbox", "provider": "sandbox", "default": True, "from_number": SENDER}
            ],
            "agents": {"agent_abc123": {"voice_tools": {"sms_mid_call": settings}}},
        }
    )


class Harness:
    """A service on the test's Redis, plus readers for the result channel and the sandbox outbox."""

    def __init__(self, client: redis.Redis, settings: Settings, **sms: Any) -> None:
        self.redis = client
        self.pool = ProviderPool(settings, client)
        self.service = SmsService(
            settings, client, StaticConfigSource(sandbox_config(**sms)), self.pool, rng=random.Random(7)
        )

    def handle(self, job: Any, attempt: int = 1, owner: str = "worker-1") -> float | None:
        return self.service.handle(job, attempt=attempt, owner=owner)

    def events(self, call_id: str = "CA42", job_id: str | None = None) -> list[dict[str, Any]]:
        entries = cast(Entries, self.redis.xrange(events_key(call_id)))
        found = [json.loads(fields[EVENT_FIELD.encode()]) for _, fields in entries]
        return [e for e in found if job_id is None or e["job_id"] == job_id]

    def statuses(self, call_id: str = "CA42", job_id: str | None = None) -> list[str]:
        return [e["status"] for e in self.events(call_id, job_id)]

    def outbox(self) -> list[dict[str, str]]:
        entries = cast(Entries, self.redis.xrange(SANDBOX_OUTBOX_KEY))
        return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(redis_url=redis_url)


@pytest.fixture
def sms(redis_client: redis.Redis, settings: Settings) -> Iterator[Harness]:
    harness = Harness(redis_client, settings)
    yield harness
    harness.pool.close()


def job(caller: str = CALLER, call_id: str = "CA42", **overrides: Any) -> dict[str, Any]:
    """A job as it arrives from the queue: the JSON form of a valid Job."""
    call = CallContext(call_id=call_id, direction="inbound", from_number=caller, to_number=SENDER)
    arguments: dict[str, Any] = {
        "agent_id": "agent_abc123",
        "call": call,
        "template": "code",
        "variables": {"code": "1234"},
    }
    arguments.update(overrides)
    return build_job(**arguments).model_dump(mode="json")


# -- accepted -------------------------------------------------------------------------------------


def test_an_accepted_send_publishes_sending_then_accepted_and_reaches_the_outbox(sms: Harness) -> None:
    """A good job publishes `sending` then a terminal `accepted` with the masked number and the sandbox id."""
    j = job()
    assert sms.handle(j) is None

    sending, accepted = sms.events()
    assert (sending["status"], sending["terminal"]) == ("sending", False)
    assert (accepted["status"], accepted["terminal"]) == ("accepted", True)
    assert accepted["job_id"] == j["job_id"]
    assert accepted["call_id"] == "CA42"
    assert accepted["to"] == "+1415****234"
    assert accepted["provider"] == "sandbox"
    assert accepted["from_"] == SENDER
    assert accepted["segments"] == 1
    assert accepted["encoding"] == "gsm7"
    assert sending["encoding"] == "gsm7"
    assert accepted["attempt"] == 1
    assert accepted["tool_message"] == "SMS sent."
    assert "error" not in accepted

    (message,) = sms.outbox()
    assert message["message_id"] == accepted["provider_message_id"]
    assert message["message_id"].startswith("SB")
    assert message == {
        **message,
        "to": CALLER,
        "from": SENDER,
        "body": "Your code is 1234",
        "job_id": j["job_id"],
    }


def test_events_never_carry_the_full_number_or_the_body(sms: Harness) -> None:
    """No event on the result channel contains the recipient's full number or the message text."""
    sms.handle(job(template=None, variables=None, message="Secret code 998877"))
    raw = json.dumps(sms.events())
    assert CALLER not in raw
    assert "998877" not in raw


# -- refused before the provider ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        pytest.param({"to": "+1415555"}, "invalid_number", id="invalid-number"),
        pytest.param(
            {"template": "booking", "variables": {"date": "March 10"}},
            "template_error",
            id="missing-variable",
        ),
        pytest.param({"template": "nope"}, "template_error", id="unknown-template"),
        pytest.param({"to": "+19005550100"}, "recipient_not_allowed", id="injected-recipient"),
        pytest.param({"agent_id": "agent_unknown"}, "sms_disabled", id="unknown-agent"),
        pytest.param(
            {"template": None, "variables": None, "message": "x" * 1601}, "message_too_long", id="too-long"
        ),
    ],
)
def test_a_refused_job_gets_one_failed_event_and_sends_nothing(
    sms: Harness, overrides: dict[str, Any], code: str
) -> None:
    """A job refused by policy, template or number gets exactly one terminal `failed` event and no SMS."""
    assert sms.handle(job(**overrides)) is None
    (event,) = sms.events()
    assert (event["status"], event["terminal"]) == ("failed", True)
    assert event["error"]["code"] == code
    assert event["error"]["retryable"] is False
    assert event["tool_message"].startswith("SMS couldn't be sent: ")
    assert sms.outbox() == []


def test_an_expired_job_fails_as_expired(sms: Harness) -> None:
    """A job whose expires_at has passed fails with `expired` and is not sent."""
    j = job()
    j["expires_at"] = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    assert sms.handle(j) is None
    (event,) = sms.events()
    assert (event["status"], event["error"]["code"]) == ("failed", "expired")
    assert sms.outbox() == []


# -- malformed jobs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda j: j.pop("agent_id"), id="missing-agent"),
        pytest.param(lambda j: j.update(variables="code=1234"), id="variables-not-a-mapping"),
        pytest.param(lambda j: j["call"].update(direction=5), id="bad-direction"),
        pytest.param(lambda j: j.update(expires_at="soon"), id="bad-datetime"),
        pytest.param(lambda j: j.update(message="hi"), id="template-and-message"),
        pytest.param(lambda j: j.update(v=2), id="future-version"),
        pytest.param(lambda j: j.update(unexpected={"a": 1}), id="unknown-field"),
    ],
)
def test_a_malformed_job_that_names_its_job_and_call_gets_invalid_request(sms: Harness, mangle: Any) -> None:
    """A job that fails validation but has a job_id and call.call_id gets a `failed` invalid_request event."""
    j = job()
    mangle(j)
    assert sms.handle(j) is None
    (event,) = sms.events()
    assert event["job_id"] == j["job_id"]
    assert (event["status"], event["terminal"]) == ("failed", True)
    assert event["error"]["code"] == "invalid_request"
    assert event["tool_message"] == "SMS couldn't be sent: the request was malformed."
    assert sms.outbox() == []


@pytest.mark.parametrize(
    "raw",
    [
        None,
        [],
        "job",
        42,
        {},
        {"job_id": "j1"},
        {"job_id": "j1", "call": "CA42"},
        {"call": {"call_id": "CA42"}},
    ],
    ids=["none", "list", "str", "int", "empty", "no-call", "call-not-a-mapping", "no-job-id"],
)
def test_an_unanswerable_job_is_dropped_without_raising(sms: Harness, raw: Any) -> None:
    """A job without a readable job_id and call.call_id is logged and dropped; handle() does not raise."""
    assert sms.handle(raw) is None
    assert sms.events() == []
    assert sms.outbox() == []


GARBAGE: list[Any] = [
    None, 0, -1, 1.5, float("nan"), float("inf"), True, "", " ", "x", "😀" * 5, "\x00", "a" * 5000,
    [], [1, "a"], {}, {"a": {"b": []}}, "+1", "+19005550100", "9" * 40, "{code.__class__}",
    "2020-01-01T00:00:00", "2020-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "inbound", "outbound",
]  # fmt: skip


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, child in value.items():
            yield (*prefix, key)
            yield from _paths(child, (*prefix, key))


def mangled_jobs(count: int, seed: int = 20240611) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """`count` valid jobs, each with 1-3 fields dropped or replaced by garbage (deterministically)."""
    rng = random.Random(seed)
    for i in range(count):
        job_id, call_id = f"fuzz-{i}", f"CAfuzz{i}"
        j = job(call_id=call_id, job_id=job_id)
        if rng.random() < 0.3:
            j = job(call_id=call_id, job_id=job_id, template=None, variables=None, message="hello")
        for _ in range(rng.randint(1, 3)):
            path = rng.choice(list(_paths(j)))
            parent: Any = j
            for key in path[:-1]:
                parent = parent[key] if isinstance(parent, dict) else None
            if not isinstance(parent, dict) or path[-1] not in parent:
                continue
            if rng.random() < 0.3:
                del parent[path[-1]]
            else:
                parent[path[-1]] = copy.deepcopy(rng.choice(GARBAGE))
        yield job_id, call_id, j


def test_no_exception_escapes_handle_for_randomly_mangled_jobs(sms: Harness) -> None:
    """Hundreds of mangled jobs never make handle() raise; each readable one gets one terminal event."""
    unanswered = []
    for job_id, call_id, j in mangled_jobs(300):
        delay = sms.handle(j)
        assert delay is None, j
        readable = (
            j.get("job_id") == job_id
            and isinstance(j.get("call"), dict)
            and j["call"].get("call_id") == call_id
        )
        if readable:
            terminal = [e for e in sms.events(call_id, job_id) if e["terminal"]]
            if len(terminal) != 1:
                unanswered.append((j, terminal))
    assert not unanswered


@pytest.mark.parametrize("field", ["job_id", "call_id"])
def test_a_lone_surrogate_in_the_ids_of_a_malformed_job_does_not_escape(sms: Harness, field: str) -> None:
    """A malformed job whose job_id or call_id holds a lone surrogate is dropped without raising."""
    j = job()
    del j["agent_id"]
    if field == "job_id":
        j["job_id"] = "\ud800"
    else:
        j["call"]["call_id"] = "\ud800"
    assert sms.handle(j) is None


def test_a_lone_surrogate_in_a_variable_fails_the_job_instead_of_raising(sms: Harness) -> None:
    """A job with a lone surrogate in a variable gets a terminal `failed` event; handle() does not raise."""
    j = job()
    j["variables"] = {"code": "12\ud80034"}
    assert sms.handle(j) is None
    (event,) = sms.events()
    assert event["status"] == "failed"
    assert sms.outbox() == []


# -- idempotency ----------------------------------------------------------------------------------


def test_two_jobs_with_one_idempotency_key_send_once_and_both_hear_accepted(sms: Harness) -> None:
    """A second job with the same idempotency key sends nothing and gets the first job's accepted outcome."""
    first = job(idempotency_key="CA42:tool-call-7")
    second = job(idempotency_key="CA42:tool-call-7")
    assert first["job_id"] != second["job_id"]
    sms.handle(first)
    sms.handle(second)

    assert len(sms.outbox()) == 1
    (one,) = [e for e in sms.events(job_id=first["job_id"]) if e["terminal"]]
    (two,) = sms.events(job_id=second["job_id"])
    assert one["status"] == two["status"] == "accepted"
    assert two["terminal"] is True
    assert two["provider_message_id"] == one["provider_message_id"] == sms.outbox()[0]["message_id"]
    assert two["tool_message"] == "SMS sent."


def test_a_key_that_failed_replays_the_failure(sms: Harness) -> None:
    """A second job with the key of a failed one gets the same failure and sends nothing."""
    sms.handle(job(idempotency_key="k-1", to="+19005550100"))
    second = job(idempotency_key="k-1")
    sms.handle(second)
    (event,) = sms.events(job_id=second["job_id"])
    assert (event["status"], event["error"]["code"]) == ("failed", "recipient_not_allowed")
    assert sms.outbox() == []


def test_a_redelivered_job_that_already_ended_publishes_nothing_more(sms: Harness) -> None:
    """Handling the same job again after it ended sends nothing and adds no event."""
    j = job()
    sms.handle(j)
    before = sms.events()
    sms.handle(j, owner="worker-2")
    assert sms.events() == before
    assert len(sms.outbox()) == 1


# -- retries --------------------------------------------------------------------------------------


def test_a_retryable_error_returns_a_fast_delay_and_the_next_attempt_accepts(sms: Harness) -> None:
    """A provider that fails once: attempt 1 publishes `retrying` and returns ≤ 0.5 s; attempt 2 accepts."""
    j = job(caller=FLAKY_ONCE)
    delay = sms.handle(j, attempt=1, owner="worker-1")
    assert delay is not None
    assert 0 <= delay <= 0.5
    assert sms.statuses() == ["sending", "retrying"]
    retrying = sms.events()[-1]
    assert retrying["terminal"] is False
    assert retrying["error"]["code"] == "provider_unavailable"
    assert retrying["error"]["retryable"] is True
    assert "next_attempt_at" in retrying
    assert sms.outbox() == []

    assert sms.handle(j, attempt=2, owner="worker-2") is None
    assert sms.statuses() == ["sending", "retrying", "sending", "accepted"]
    accepted = sms.events()[-1]
    assert accepted["attempt"] == 2
    assert accepted.get("possible_duplicate", False) is False
    assert len(sms.outbox()) == 1


def test_a_permanent_provider_error_fails_at_once_without_retry(sms: Harness) -> None:
    """An opted-out recipient fails with recipient_opted_out after one provider call; no retry delay."""
    assert sms.handle(job(caller=OPTED_OUT)) is None
    assert sms.statuses() == ["sending", "failed"]
    failed = sms.events()[-1]
    assert failed["error"]["code"] == "recipient_opted_out"
    assert failed["error"]["provider_code"] == "21610"
    assert failed["tool_message"].startswith("SMS couldn't be sent: ")
    assert sms.outbox() == []


def test_retries_stop_after_max_attempts(redis_client: redis.Redis, redis_url: str) -> None:
    """A provider that is always unavailable fails with provider_unavailable on the last attempt."""
    harness = Harness(redis_client, Settings(redis_url=redis_url, max_attempts=2))
    j = job(caller=UNAVAILABLE)
    assert harness.handle(j, attempt=1) is not None
    assert harness.handle(j, attempt=2) is None
    assert harness.statuses() == ["sending", "retrying", "sending", "failed"]
    assert harness.events()[-1]["error"]["code"] == "provider_unavailable"
    harness.pool.close()


def test_a_retry_that_would_land_after_expiry_fails_now(sms: Harness) -> None:
    """When the provider's Retry-After reaches past the job's deadline, the job fails instead of retrying."""
    assert sms.handle(job(caller=RATE_LIMITED, expires_in=0.5)) is None
    assert sms.statuses() == ["sending", "failed"]
    assert sms.events()[-1]["error"]["code"] == "rate_limited"


def test_a_rate_limited_send_waits_at_least_retry_after(sms: Harness) -> None:
    """A 429 with Retry-After 1 s returns a delay of at least 1 s."""
    delay = sms.handle(job(caller=RATE_LIMITED))
    assert delay is not None and delay >= 1.0
    assert sms.statuses() == ["sending", "retrying"]


# -- per-call cap ---------------------------------------------------------------------------------


def test_the_second_distinct_send_of_a_call_hits_max_per_call(
    redis_client: redis.Redis, settings: Settings
) -> None:
    """With max_per_call 1, a call's second distinct SMS fails with limit_reached and is not sent."""
    harness = Harness(redis_client, settings, max_per_call=1)
    harness.handle(job())
    second = job()
    harness.handle(second)
    (event,) = harness.events(job_id=second["job_id"])
    assert (event["status"], event["error"]["code"]) == ("failed", "limit_reached")
    assert len(harness.outbox()) == 1
    harness.handle(job(call_id="CA43"))
    assert len(harness.outbox()) == 2  # another call has its own quota
    harness.pool.close()


def test_failed_sends_do_not_consume_the_quota(redis_client: redis.Redis, settings: Settings) -> None:
    """Sends that failed (refused by policy, refused by the provider) give their place in the quota back."""
    harness = Harness(redis_client, settings, max_per_call=1, recipient_policy="any")
    refused = job(to="+1415555")
    opted_out = job(to=OPTED_OUT)
    good = job()
    third = job()
    for j in (refused, opted_out, good, third):
        harness.handle(j)
    outcomes = [
        [
            (e["status"], e.get("error", {}).get("code"))
            for e in harness.events(job_id=j["job_id"])
            if e["terminal"]
        ]
        for j in (refused, opted_out, good, third)
    ]
    assert outcomes == [
        [("failed", "invalid_number")],
        [("failed", "recipient_opted_out")],
        [("accepted", None)],
        [("failed", "limit_reached")],
    ]
    harness.pool.close()


def test_a_replayed_key_does_not_count_against_the_quota(
    redis_client: redis.Redis, settings: Settings
) -> None:
    """A repeated tool call (same idempotency key) is not a second send for the per-call cap."""
    harness = Harness(redis_client, settings, max_per_call=1)
    harness.handle(job(idempotency_key="CA42:t1"))
    again = job(idempotency_key="CA42:t1")
    harness.handle(again)
    (event,) = harness.events(job_id=again["job_id"])
    assert event["status"] == "accepted"
    harness.pool.close()


# -- backoff --------------------------------------------------------------------------------------


def backoff_service(redis_client: redis.Redis, **settings: Any) -> SmsService:
    s = Settings(**settings)
    return SmsService(
        s, redis_client, StaticConfigSource(SmsConfig()), ProviderPool(s, redis_client), rng=random.Random(3)
    )


def test_the_first_retry_is_fast(redis_client: redis.Redis) -> None:
    """With default settings, the delay before the second attempt is between 0 and 0.5 s, with jitter."""
    service = backoff_service(redis_client)
    delays = [service.backoff(1, None) for _ in range(500)]
    assert all(0 <= d <= 0.5 for d in delays)
    assert max(delays) > 0.4 and min(delays) < 0.1  # full jitter spreads over the whole range


def test_backoff_grows_with_the_attempt(redis_client: redis.Redis) -> None:
    """Later attempts wait longer: the third attempt's delays reach well beyond the first's ceiling."""
    service = backoff_service(redis_client)
    assert max(service.backoff(3, None) for _ in range(200)) > 2.0


def test_backoff_never_goes_below_retry_after(redis_client: redis.Redis) -> None:
    """A provider's Retry-After is a floor on the delay."""
    service = backoff_service(redis_client)
    assert all(service.backoff(1, 1.5) >= 1.5 for _ in range(200))
    assert all(service.backoff(2, 0.2) >= 0.2 for _ in range(200))


def test_backoff_is_capped_by_retry_max_delay(redis_client: redis.Redis) -> None:
    """However many attempts, the delay never exceeds retry_max_delay."""
    service = backoff_service(redis_client, retry_max_delay=1.0)
    delays = [service.backoff(attempt, None) for attempt in range(1, 30) for _ in range(20)]
    assert all(0 <= d <= 1.0 for d in delays)
    assert max(delays) > 0.9


def test_a_retry_that_cannot_be_published_is_handed_back_not_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """When Celery cannot publish a retry it raises Reject(requeue=False); the task turns it into
    Reject(requeue=True), so the message comes back instead of being lost."""
    from types import SimpleNamespace

    from celery.exceptions import Reject

    from worker import runtime, tasks

    service = SimpleNamespace(handle=lambda job, attempt, owner: 0.2)
    monkeypatch.setattr(runtime, "get", lambda settings: SimpleNamespace(service=service))

    def retry(**_: object) -> None:
        raise Reject("connection refused", requeue=False)

    task = SimpleNamespace(
        app=SimpleNamespace(midcall_settings=None),
        request=SimpleNamespace(retries=0, id="job-1"),
        retry=retry,
    )
    with pytest.raises(Reject) as caught:
        tasks.send(task, job={"job_id": "job-1"})
    assert caught.value.requeue is True


def test_a_bug_in_the_provider_call_fails_the_job_once_and_gives_the_quota_back(
    sms: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected exception (not a SendError) after the claim: the job ends `failed` /
    `provider_error` with exactly one terminal event, the plan's fields in it, and the call's quota
    is given back (nothing was sent)."""
    from worker.providers.sandbox import SandboxProvider

    def broken(self: Any, message: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(SandboxProvider, "_send", broken)
    j = job()
    assert sms.handle(j) is None
    terminal = [e for e in sms.events(job_id=j["job_id"]) if e["terminal"]]
    assert [(e["status"], e["error"]["code"], e["provider"]) for e in terminal] == [
        ("failed", "provider_error", "sandbox")
    ]
    assert "RuntimeError" in terminal[0]["error"]["message"]
    assert int(sms.redis.get("sms:count:CA42") or 0) == 0
    assert sms.outbox() == []


def test_an_outcome_stored_by_an_older_worker_still_replays(sms: Harness) -> None:
    """Older workers stored a subset of the terminal event's fields as the key's outcome (newer ones
    store the event itself): a job with that key is answered with it and sends nothing."""
    old = {"status": "accepted", "attempt": 2, "provider": "sandbox", "provider_message_id": "SB-old",
           "to": "+1415****234", "segments": 1, "encoding": "gsm7", "possible_duplicate": True}  # fmt: skip
    sms.redis.hset(
        "sms:idem:k-old", mapping={"state": "done", "job_id": "j-first", "outcome": json.dumps(old)}
    )
    second = job(idempotency_key="k-old")
    sms.handle(second)
    (event,) = sms.events(job_id=second["job_id"])
    assert (event["status"], event["provider_message_id"], event["attempt"]) == ("accepted", "SB-old", 2)
    assert event["terminal"] is True and event["possible_duplicate"] is True
    assert event["tool_message"] == "SMS sent."
    assert sms.outbox() == []
