"""Vapi and Retell tool requests through the HTTP service (in-process, Starlette's TestClient) and
a real worker: the payloads as the platforms' docs show them, a Vapi list of two tool calls, a
signed Retell request, and forged, unauthenticated and stale requests that queue nothing.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from starlette.testclient import TestClient

from producers.contract import QUEUE, SENT_MESSAGE, events_key
from tests.integration.conftest import WorkerFactory
from tests.integration.voice import (
    AGENT_ID,
    CALLER,
    CONFIG,
    OUR_NUMBER,
    UNDELIVERED,
    clear_outbox,
    outbox,
    poll_sandbox,
)
from worker.config.models import SmsConfig
from worker.config.source import StaticConfigSource
from worker.http import create_app
from worker.http.metrics import ServiceMetrics
from worker.platforms import retell
from worker.settings import Settings

VAPI_SECRET = "vapi-server-secret-8d1e"  # must never show up in output
RETELL_KEY = "key_retell_3f0c9a"
ASSISTANT_ID = "5b0a4a08-133c-4146-9315-0984f8c6be80"
RETELL_AGENT_ID = "oBeDLoLOeuAbiuaMFXRtDOLriTJ5tSxD"


@pytest.fixture(autouse=True)
def _empty_outbox(redis_url: str) -> None:
    """Counts of texts below are this test's: earlier tests may leave the sandbox outbox behind."""
    clear_outbox(redis_url)


def platform_config() -> dict[str, Any]:
    config = copy.deepcopy(CONFIG)
    sms = config["agents"][AGENT_ID]["voice_tools"]["sms_mid_call"]
    sms["tool_secrets"] = {"vapi": VAPI_SECRET, "retell": RETELL_KEY}
    sms["platform_ids"] = {"vapi": [ASSISTANT_ID], "retell": [RETELL_AGENT_ID]}
    return config


@pytest.fixture
def service(
    redis_url: str, redis_client: redis.Redis, write_config: Callable[..., Path], start_worker: WorkerFactory
) -> Iterator[TestClient]:
    config = platform_config()
    start_worker(write_config(config))
    app = create_app(
        Settings(redis_url=redis_url, tool_timeout=10.0),
        client=redis_client,
        config=StaticConfigSource(SmsConfig.model_validate(config)),
        metrics=ServiceMetrics(process=False),
    )
    with TestClient(app, base_url="http://10.0.0.7:8080") as client:
        yield client


def vapi_message(
    tool_calls: list[dict[str, Any]], *, call_id: str = "vapi-call-1", kind: str = "inboundPhoneCall"
):
    """A `tool-calls` server message as Vapi's docs show it (abridged: the fields read here and a
    few it also sends)."""
    return {
        "message": {
            "timestamp": 1764583200000,
            "type": "tool-calls",
            "toolCallList": tool_calls,
            "toolWithToolCallList": [],
            "artifact": {"messages": []},
            "assistant": {"id": ASSISTANT_ID, "name": "Booking"},
            "call": {
                "id": call_id,
                "orgId": "eb166faa-7145-46ef-8044-589b47eb0c29",
                "type": kind,
                "status": "in-progress",
                "assistantId": ASSISTANT_ID,
                "phoneNumberId": "a3b0a6e4-6a2f-4e37-9a04-1c7b0e1c3f11",
                "customer": {"number": CALLER},
                "phoneNumber": {"number": OUR_NUMBER},
            },
        }
    }


def vapi_call(call_id: str, arguments: Any, *, nested: bool = True) -> dict[str, Any]:
    if nested:  # the current shape: the function under `function`, arguments an object
        return {"id": call_id, "type": "function", "function": {"name": "send_sms", "arguments": arguments}}
    return {"id": call_id, "name": "send_sms", "arguments": arguments}  # the flat shape


BOOKING = {"template": "booking", "variables": {"date": "March 10", "time": "2 PM"}}


def nothing_queued(redis_client: redis.Redis, call_id: str) -> bool:
    return redis_client.llen(QUEUE) == 0 and not redis_client.exists(events_key(call_id))


def test_vapi_list_of_two_tool_calls_sends_two_texts_once(service: TestClient, redis_url: str) -> None:
    """Two tool calls in one message (one nested with an object, one flat with a JSON string) send
    two texts and answer both, by toolCallId, "SMS sent."; Vapi retrying the same message sends
    nothing more (the tool-call ids are the idempotency keys)."""
    body = vapi_message(
        [
            vapi_call("call_VaJOd8ZeZgWCEHDYomyCPfwN", BOOKING),
            vapi_call("call_2", '{"message": "Hi"}', nested=False),
        ]
    )
    headers = {"x-vapi-secret": VAPI_SECRET}
    started = time.monotonic()
    answer = service.post(f"/v1/tools/vapi/{AGENT_ID}", json=body, headers=headers)
    elapsed = time.monotonic() - started
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "results": [
            {"toolCallId": "call_VaJOd8ZeZgWCEHDYomyCPfwN", "result": SENT_MESSAGE},
            {"toolCallId": "call_2", "result": SENT_MESSAGE},
        ]
    }
    again = service.post("/v1/tools/vapi", json=body, headers=headers)  # by assistant id this time
    assert again.json() == answer.json()
    sent = outbox(redis_url)
    print(f"vapi: two tool calls answered in {elapsed * 1000:.0f} ms; outbox after a retry: {len(sent)}")
    assert len(sent) == 2 and {s["to"] for s in sent} == {CALLER}
    assert VAPI_SECRET not in answer.text


@pytest.mark.parametrize(
    "headers",
    [{}, {"x-vapi-secret": "wrong"}, {"x-vapi-secret": VAPI_SECRET[:-1]}, {"authorization": VAPI_SECRET}],
)
def test_vapi_without_the_secret_is_401_and_queues_nothing(
    service: TestClient, redis_client: redis.Redis, redis_url: str, headers: dict[str, str]
) -> None:
    """A missing, wrong or misplaced server secret: 401, no job, no event, no text."""
    body = vapi_message([vapi_call("call_x", BOOKING)], call_id="vapi-forged")
    answer = service.post(f"/v1/tools/vapi/{AGENT_ID}", json=body, headers=headers)
    assert answer.status_code == 401
    assert nothing_queued(redis_client, "vapi-forged") and outbox(redis_url) == []


def test_vapi_unknown_agent_web_call_and_bad_messages(service: TestClient, redis_client: redis.Redis) -> None:
    """An unknown agent in the path is 401 like a wrong secret; a web call (no phone number) gets a
    "couldn't be sent" result; a message that is not tool-calls is 400. Nothing is queued."""
    headers = {"x-vapi-secret": VAPI_SECRET}
    body = vapi_message([vapi_call("call_y", BOOKING)], call_id="vapi-other")
    assert service.post("/v1/tools/vapi/agent_nobody", json=body, headers=headers).status_code == 401
    web = vapi_message([vapi_call("call_w", BOOKING)], call_id="vapi-web", kind="webCall")
    del web["message"]["call"]["customer"]
    answer = service.post(f"/v1/tools/vapi/{AGENT_ID}", json=web, headers=headers)
    assert (
        answer.json()["results"][0]["result"]
        == "SMS couldn't be sent: this call has no phone number to text."
    )
    status = {"message": {"type": "status-update", "call": {"id": "vapi-other"}}}
    assert service.post(f"/v1/tools/vapi/{AGENT_ID}", json=status, headers=headers).status_code == 400
    assert service.post(f"/v1/tools/vapi/{AGENT_ID}", content=b"{", headers=headers).status_code == 400
    assert nothing_queued(redis_client, "vapi-other") and nothing_queued(redis_client, "vapi-web")


def retell_body(call_id: str = "Jabr9TXYYJHfvl6Syypi88rdAHYHmcq6") -> bytes:
    """A custom-function request as Retell's docs show it (abridged call object)."""
    return json.dumps(
        {
            "name": "send_sms",
            "args": BOOKING,
            "call": {
                "call_type": "phone_call",
                "call_id": call_id,
                "agent_id": RETELL_AGENT_ID,
                "call_status": "ongoing",
                "from_number": CALLER,
                "to_number": OUR_NUMBER,
                "direction": "inbound",
                "start_timestamp": 1764583200000,
            },
        }
    ).encode()


def test_retell_signed_request_sends_and_answers_the_sentence(service: TestClient, redis_url: str) -> None:
    """A request signed as Retell signs it (HMAC-SHA256 of body + timestamp with the API key) sends
    one text and answers the sentence as the body the model reads; the same function call again
    in the same call sends nothing more."""
    body = retell_body()
    for path in (f"/v1/tools/retell/{AGENT_ID}", "/v1/tools/retell"):
        signature = retell.sign(body, RETELL_KEY, int(time.time() * 1000))
        answer = service.post(path, content=body, headers={"X-Retell-Signature": signature})
        assert answer.status_code == 200, answer.text
        assert answer.text == SENT_MESSAGE
    print(f"retell: signed request answered {answer.text!r}; outbox={len(outbox(redis_url))}")
    assert len(outbox(redis_url)) == 1


def test_retell_forged_or_stale_signature_is_401_and_queues_nothing(
    service: TestClient, redis_client: redis.Redis, redis_url: str
) -> None:
    """Signed with another key, over another body, six minutes old, malformed or missing: 401,
    nothing queued."""
    body = retell_body("retell-forged")
    now = int(time.time() * 1000)
    forged = [
        retell.sign(body, "key_someone_else", now),
        retell.sign(body + b" ", RETELL_KEY, now),
        retell.sign(body, RETELL_KEY, now - 6 * 60 * 1000),
        f"v={now},d=" + "0" * 64,
        "sha256=abc",
        None,
    ]
    for signature in forged:
        headers = {"X-Retell-Signature": signature} if signature else {}
        answer = service.post(f"/v1/tools/retell/{AGENT_ID}", content=body, headers=headers)
        assert answer.status_code == 401, signature
    assert nothing_queued(redis_client, "retell-forged") and outbox(redis_url) == []


def test_vapi_sms_status_after_an_undelivered_text(service: TestClient, redis_url: str) -> None:
    """`sms_status` through Vapi: after the receipt says undelivered, the result is the
    receipt's sentence."""
    body = vapi_message([vapi_call("call_s1", {"message": "Your code is 1234"})], call_id="vapi-status")
    body["message"]["call"]["customer"]["number"] = UNDELIVERED
    headers = {"x-vapi-secret": VAPI_SECRET}
    assert (
        service.post(f"/v1/tools/vapi/{AGENT_ID}", json=body, headers=headers).json()["results"][0]["result"]
        == SENT_MESSAGE
    )
    assert poll_sandbox(redis_url, outbox(redis_url)[0]["message_id"]) in ("published", "duplicate")
    status = vapi_message(
        [{"id": "call_s2", "type": "function", "function": {"name": "sms_status", "arguments": {}}}],
        call_id="vapi-status",
    )
    status["message"]["call"]["customer"]["number"] = UNDELIVERED
    answer = service.post(f"/v1/tools/vapi/{AGENT_ID}", json=status, headers=headers).json()
    print(f"vapi: sms_status -> {answer!r}")
    assert answer["results"][0]["result"].startswith("SMS wasn't delivered: the carrier filtered it as spam")
