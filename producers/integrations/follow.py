"""Late news about one text, for adapters whose framework can hand the model a result later.

A tool call answers within its timeout ("SMS sent.", "SMS couldn't be sent: …", or "SMS not
confirmed yet: …"); what happens next arrives on the call's stream: the outcome of a `pending`
job, then the delivery receipt. `follow()` yields each piece of news that changes what the agent
should say, with whether it is worth saying aloud while the caller is on the line.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import cast

from redis.exceptions import RedisError

from producers.client import SmsClient
from producers.contract import Event, Status
from producers.results import SendResult

#: Seconds an adapter follows a text for a receipt after the tool answered (receipts usually come
#: within seconds; the caller may hang up long before a late one).
DEFAULT_FOLLOW_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class News:
    """One late event of a text: its status, the exact sentence for the model, whether to speak."""

    status: Status
    message: str
    #: True when the caller should hear it (not delivered, or the outcome of a `pending` text);
    #: False when the model should only know it (delivered, probably delivered).
    speak: bool


def news_of(event: Event, *, answered: bool) -> News | None:
    """What `event` tells the model, given whether the tool already answered with an outcome
    (`accepted`/`failed`), or None when it tells nothing new (`queued`, `sending`, `sent`, …)."""
    if event.status in (Status.ACCEPTED, Status.FAILED):
        return None if answered else News(event.status, event.tool_message, speak=True)
    if event.status == Status.UNDELIVERED:
        return News(event.status, event.tool_message, speak=True)
    if event.status in (Status.DELIVERED, Status.UNCONFIRMED):
        return News(event.status, event.tool_message, speak=False)
    return None


async def follow(
    client: SmsClient, call_id: str, result: SendResult, *, within: float = DEFAULT_FOLLOW_SECONDS
) -> AsyncIterator[News]:
    """The news about `result`'s text from its call's stream, for up to `within` seconds.

    Ends after a final status (`delivered`, `undelivered`, `unconfirmed`, or `failed`) or when the
    time is up; a text the tool already knew failed has no news. Redis trouble ends it quietly
    (the model keeps what it was told).
    """
    if result.status == "failed":
        return
    answered = result.status != "pending"
    deadline = time.monotonic() + within
    # No timeout context spans the yields: the consumer awaits its framework between them.
    stream = cast(AsyncGenerator[Event, None], client.events(call_id, idle_timeout=within))
    try:
        async for event in stream:
            if time.monotonic() > deadline:
                return
            if event.job_id != result.job_id:
                continue
            news = news_of(event, answered=answered)
            if event.status in (Status.ACCEPTED, Status.FAILED):
                answered = True
            if news is not None:
                yield news
                if news.status != Status.ACCEPTED:
                    return
    except (TimeoutError, RedisError, OSError):
        return
    finally:
        await stream.aclose()
