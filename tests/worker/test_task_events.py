"""Task events as a lease (`worker/task_events.py`): a monitor's `enable_events` turns them on and
renews them; without it for the lease, they go off again. Integration: tests/integration/test_flower.py."""

from __future__ import annotations

from types import SimpleNamespace

from celery.worker import control

from worker import task_events
from worker.settings import Settings
from worker.task_events import Watchers, expire


def dispatcher(*groups: str) -> SimpleNamespace:
    return SimpleNamespace(groups=set(groups))


def test_task_events_are_off_by_default_with_a_30_second_lease() -> None:
    """With no SMS_TASK_EVENTS in the environment a worker sends no task events until asked."""
    settings = Settings()
    assert (settings.task_events, settings.task_events_lease) == (False, 30.0)


def test_the_workers_enable_events_command_records_the_request_and_turns_task_events_on() -> None:
    """The worker's `enable_events` handler is ours: it keeps Celery's effect (the `task` group
    added, Celery's answer) and records when a monitor asked."""
    assert control.Panel.data["enable_events"] is task_events.enable_events
    before = task_events.WATCHERS.idle_for()
    events = dispatcher("worker")
    answer = task_events.enable_events(SimpleNamespace(consumer=SimpleNamespace(event_dispatcher=events)))
    assert answer == {"ok": "task events enabled"}
    assert events.groups == {"worker", "task"}
    idle = task_events.WATCHERS.idle_for()
    assert idle is not None and idle < 1.0
    assert before is None or idle <= before


def test_task_events_go_off_once_no_monitor_asked_for_the_lease() -> None:
    """Asked at t=100 with a 30 s lease: still on at t=129, off at t=130, and a later check
    changes nothing; asking again turns the lease on again."""
    watchers = Watchers()
    events = dispatcher("worker", "task")
    watchers.asked(now=100.0)
    assert expire(events, 30.0, watchers, now=129.0) is False
    assert events.groups == {"worker", "task"}
    assert expire(events, 30.0, watchers, now=130.0) is True
    assert events.groups == {"worker"}
    assert expire(events, 30.0, watchers, now=131.0) is False

    events.groups.add("task")  # a new `enable_events`
    watchers.asked(now=200.0)
    assert expire(events, 30.0, watchers, now=210.0) is False
    assert events.groups == {"worker", "task"}


def test_events_turned_on_without_any_request_recorded_go_off_at_the_first_check() -> None:
    """The `task` group with no recorded request (turned on some other way) is not a lease: off;
    a worker without task events or without a dispatcher is left alone."""
    events = dispatcher("worker", "task")
    assert expire(events, 30.0, Watchers(), now=1.0) is True
    assert events.groups == {"worker"}
    assert expire(dispatcher("worker"), 30.0, Watchers(), now=1.0) is False
    assert expire(None, 30.0, Watchers(), now=1.0) is False
