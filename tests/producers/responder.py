"""A quick fake worker for producer tests: pops task messages off `sms`, publishes `sending` and,
`hold` seconds later, a terminal `accepted` for each, on the job's call stream."""

from __future__ import annotations

import base64
import json
import threading
from types import TracebackType
from typing import Any, Self

import redis

from producers.contract import EVENT_FIELD, QUEUE, Event, Status, events_key, utcnow


def job_of(message: bytes) -> dict[str, Any]:
    """The `job` keyword argument of a task message."""
    body = json.loads(base64.b64decode(json.loads(message)["body"]))
    job: dict[str, Any] = body[1]["job"]
    return job


class Responder:
    """Runs in a thread; `with Responder(url, hold=0.3):` answers every job until the block ends."""

    def __init__(self, url: str, *, hold: float = 0.0) -> None:
        self._client = redis.Redis.from_url(url, client_name="responder")
        self._hold = hold
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.answered = 0

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(5)
        self._client.close()

    def _publish(self, jobs: list[dict[str, Any]], status: Status) -> None:
        pipe = self._client.pipeline(transaction=False)
        for job in jobs:
            event = Event(
                job_id=job["job_id"],
                call_id=job["call"]["call_id"],
                status=status,
                terminal=status == Status.ACCEPTED,
                at=utcnow(),
                attempt=1,
                provider="sandbox",
                provider_message_id=f"SB{job['job_id']}" if status == Status.ACCEPTED else None,
                tool_message="SMS sent." if status == Status.ACCEPTED else "SMS is being sent.",
            )
            pipe.xadd(events_key(event.call_id), {EVENT_FIELD: event.dumps()})
        pipe.execute()

    def _run(self) -> None:
        while not self._stop.is_set():
            popped: Any = self._client.brpop([QUEUE], timeout=0.2)
            if popped is None:
                continue
            more: Any = self._client.rpop(QUEUE, 1000) or []
            jobs = [job_of(message) for message in [popped[1], *more]]
            self._publish(jobs, Status.SENDING)
            if self._hold:
                self._stop.wait(self._hold)
            self._publish(jobs, Status.ACCEPTED)
            self.answered += len(jobs)
