"""Celery task events only while someone watches.

Each task event (`task-received`, `task-started`, `task-succeeded`) is a Redis PUBLISH, three
per text, which no one reads unless a monitor is running. So workers start with task events
off (`SMS_TASK_EVENTS=false`, Celery's `worker_send_task_events`) and turn them on when a
monitor asks:

- Flower asks every 5 seconds: it broadcasts Celery's `enable_events` remote-control command on
  a timer (`flower.events.Events.events_enable_interval`, on unless `--enable-events=false`), so
  a worker started before or after Flower sends task events within 5 s of Flower's start, and
  Flower lists every task from then on. Tasks that ran before that are not in Flower.
- Nothing ever tells a worker to stop: Flower does not send `disable_events` when it exits, and
  Celery keeps a remote `enable_events` until the worker restarts. Left as it is, one look at
  Flower would cost three PUBLISHes per text for the rest of the worker's life.

So `enable_events` is a lease here: `TaskEventsLease`, a consumer bootstep, turns task events
off again when no `enable_events` has come for `SMS_TASK_EVENTS_LEASE` seconds (30: six of
Flower's requests missed). A monitor that asks once (`celery -A worker control enable_events`,
`celery events`) gets them for that long; `SMS_TASK_EVENTS=true` keeps them on for good, with no
lease. `celery -A worker control disable_events` still turns them off at once. Worker heartbeat
events (`worker-heartbeat`, one PUBLISH every 2 s per worker, not per text) are not task events;
Flower's worker list and `celery inspect` work with task events off.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import structlog
from celery import bootsteps
from celery.worker import control

log = structlog.get_logger("worker.task_events")

#: Celery's own handler, which the lease wraps
_celery_enable_events = control.Panel.data["enable_events"]


class Watchers:
    """When a monitor last asked this process for task events (monotonic seconds, None: never)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: float | None = None

    def asked(self, now: float | None = None) -> None:
        with self._lock:
            self._last = time.monotonic() if now is None else now

    def idle_for(self, now: float | None = None) -> float | None:
        """Seconds since the last request, or None when none came."""
        with self._lock:
            last = self._last
        if last is None:
            return None
        return (time.monotonic() if now is None else now) - last


WATCHERS = Watchers()


def enable_events(state: Any) -> dict[str, str]:
    """Tell worker(s) to send task-related events (for `SMS_TASK_EVENTS_LEASE` seconds, renewed by
    every request; Flower repeats it every 5 s)."""
    WATCHERS.asked()
    answer: dict[str, str] = _celery_enable_events(state)
    return answer


# Replaces Celery's handler of the same name (the worker's pidbox reads `Panel.data` when it starts).
control.control_command(name="enable_events")(enable_events)


def expire(dispatcher: Any, lease: float, watchers: Watchers = WATCHERS, now: float | None = None) -> bool:
    """Turn the dispatcher's task events off when no monitor asked within `lease` seconds; True
    when it did."""
    if dispatcher is None or "task" not in (dispatcher.groups or ()):
        return False
    idle = watchers.idle_for(now)
    if idle is not None and idle < lease:
        return False
    dispatcher.groups.discard("task")
    log.info("task_events.off", reason="no monitor asked for task events", lease_seconds=lease)
    return True


class TaskEventsLease(bootsteps.StartStopStep):  # type: ignore[misc]
    """Consumer bootstep: with task events off by default, checks every few seconds that a
    monitor still asks for them, and turns them off when none has for the lease."""

    label = "midcall-sms task events lease"
    requires = ("celery.worker.consumer.events:Events",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._timer: Any = None

    def start(self, parent: Any) -> None:
        settings = parent.app.midcall_settings
        if settings.task_events:
            return  # forced on: no lease
        lease = settings.task_events_lease
        self._timer = parent.timer.call_repeatedly(
            min(5.0, lease / 3), lambda: expire(parent.event_dispatcher, lease)
        )

    def stop(self, parent: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def shutdown(self, parent: Any) -> None:
        self.stop(parent)
