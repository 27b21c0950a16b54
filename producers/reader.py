"""One reader for many waits: every send in flight hears its outcome through one blocking `XREAD`.

Each wait (`SmsClient.wait`, `wait_delivery`, `events`) *subscribes* to its call's stream from
the last id it has seen (a send's first id is its `queued` event's, from the enqueue). The
client's one `Reader` task keeps one connection and reads, in one `XREAD BLOCK`, every subscribed
stream from the oldest id any of its subscribers has seen, hands each subscriber the entries after
its own id, and reads again. However many sends wait, the client holds this one connection for
them (and the `Batcher`'s one for its writes), not one each.

**Waking the read for a newcomer.** A subscriber that joins while a read is blocked on the other
streams must not wait for that read to time out. The read also covers a *wake stream* of its own
(`sms:wake:<client>`, one entry kept, a TTL refreshed every minute), from the last wake id it
saw; a newcomer the blocked read does not cover `XADD`s to it, through the batcher, so in a
burst the wake rides in the same pipeline as the enqueues and costs no extra round trip. At most
one wake is written per read. This is race-free without any timing: if the `XADD` reaches Redis
before the `XREAD` does, the read finds the entry after its wake id and returns at once. The
alternatives cost more: cancelling the blocked read loses the connection (redis-py drops a
connection whose reply was not read); `CLIENT UNBLOCK` from another connection can land before
the `XREAD` it was meant for (and needs the `CLIENT` command, which managed Redis often denies);
a short `BLOCK` without a wake adds up to its length to every send's latency, or polls.
When nobody is subscribed the reader parks (no read, no wake needed: the next subscriber starts it).

**Redis restarts and failovers.** A read that fails or outlives its block (plus a grace) drops
the connection; the reader pauses `RECONNECT_PAUSE` and reads again from the same ids, so no
event is missed (they are in the streams). Each wait keeps its own deadline meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError

from producers.batch import Batcher, pack
from producers.contract import Event, as_text
from producers.streams import StreamId, format_id, parse_id, parse_raw_entries, raw_streams

#: The longest single blocking read, in seconds (below redis-py's usual 5 s socket timeout).
MAX_BLOCK = 2.0
#: Extra seconds allowed past a blocking read's own timeout before the reader gives up on Redis.
GRACE = 0.5
#: Seconds between attempts to read again after Redis dropped the connection.
RECONNECT_PAUSE = 0.1
#: The wake stream's TTL, refreshed at most every `WAKE_TTL_REFRESH` seconds while wakes are written.
WAKE_TTL = 600
WAKE_TTL_REFRESH = 60.0


def wake_key(client_id: str) -> str:
    """The per-client stream whose entries wake the client's blocked read."""
    return f"sms:wake:{client_id}"


class Subscription:
    """One wait's view of a stream: the entries after `last_id`, as `(id, Event)`, as they come."""

    __slots__ = ("_waiter", "entries", "key", "last", "read")

    def __init__(self, key: str, since: str) -> None:
        self.key = key
        self.last: StreamId = parse_id(since)
        self.entries: list[tuple[str, Event]] = []
        #: whether a read that covered this subscription has come back (even empty)
        self.read = False
        self._waiter: asyncio.Future[None] | None = None

    @property
    def last_id(self) -> str:
        return format_id(self.last)

    async def next(self, timeout: float) -> list[tuple[str, Event]]:
        """The entries that came since the last call, waiting up to `timeout` seconds for some
        (or for the first read covering this subscription to come back); `[]` if none came."""
        if not self.entries and timeout > 0:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                async with asyncio.timeout(timeout):
                    await waiter
            except TimeoutError:
                pass
            finally:
                self._waiter = None
        entries, self.entries = self.entries, []
        return entries

    def _notify(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Reader:
    """The client's one reader task; see the module docstring."""

    def __init__(self, redis: Redis, batcher: Batcher, *, block: float = MAX_BLOCK) -> None:
        self._redis = redis
        self._batcher = batcher
        self._block_ms = max(int(block * 1000), 1)
        self._read_timeout = block + GRACE
        self._subs: dict[str, list[Subscription]] = {}
        self._wake_key = wake_key(uuid.uuid4().hex)
        self._wake_id = "0-0"
        self._wake_ttl_due = 0.0
        #: the cursors of the read in flight (None between reads)
        self._reading: dict[str, StreamId] | None = None
        self._woken = False
        self._task: asyncio.Task[None] | None = None
        self._resume: asyncio.Future[None] | None = None
        self._conn: AbstractConnection | None = None
        self._closed = False
        #: reads sent and wakes written, for the tests and the bench
        self.reads = 0
        self.wakes = 0

    @property
    def waiting(self) -> int:
        """Subscriptions open now."""
        return sum(len(subs) for subs in self._subs.values())

    def subscribe(self, key: str, since: str = "0-0") -> Subscription:
        """Start hearing `key` after `since`; `unsubscribe` when done (in a `finally`)."""
        sub = Subscription(key, since)
        self._subs.setdefault(key, []).append(sub)
        self._join(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.key)
        if subs is None:
            return
        try:
            subs.remove(sub)
        except ValueError:
            return
        if not subs:
            del self._subs[sub.key]

    async def aclose(self) -> None:
        """Stop reading, give the connection back and remove the wake stream. A later subscriber
        starts the reader again (a client may be closed and used again, like redis-py's)."""
        self._closed = True
        task = self._task
        if self._resume is not None and not self._resume.done():
            self._resume.set_result(None)
        if task is not None:
            # redis-py may turn the cancellation of a read into a ConnectionError: `_closed` ends
            # the loop whatever the read raised.
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._task = None
        self._closed = False
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.disconnect(nowait=True)
            await self._redis.connection_pool.release(conn)
        if self.wakes:
            with contextlib.suppress(RedisError, OSError):  # else it expires on its own
                await self._batcher.call("DEL", self._wake_key)

    def _join(self, sub: Subscription) -> None:
        if self._closed:
            return  # closing: the subscriber's own deadline ends its wait
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())
            return
        resume = self._resume
        if resume is not None:
            if not resume.done():
                resume.set_result(None)
            return
        reading = self._reading
        if reading is None:
            return  # between reads: the next one includes it
        cursor = reading.get(sub.key)
        if (cursor is not None and cursor <= sub.last) or self._woken:
            return
        self._woken = True
        self.wakes += 1
        self._batcher.fire("XADD", self._wake_key, "MAXLEN", "1", "*", "w", "1")
        now = time.monotonic()
        if now >= self._wake_ttl_due:
            self._wake_ttl_due = now + WAKE_TTL_REFRESH
            self._batcher.fire("EXPIRE", self._wake_key, WAKE_TTL)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closed:
            if not self._subs:
                self._resume = loop.create_future()
                try:
                    await self._resume
                finally:
                    self._resume = None
                continue
            cursors: dict[str, StreamId] = {}
            fresh: list[Subscription] = []
            for key, subs in self._subs.items():
                cursors[key] = min(sub.last for sub in subs)
                fresh.extend(sub for sub in subs if not sub.read)
            self._reading = cursors
            self._woken = False
            try:
                reply = await self._xread(cursors)
            except (TimeoutError, RedisError, OSError):
                # Redis went away (a restart, a failover): read again from the same ids. The wake
                # stream is read from its start again: a new master's clock may be behind.
                self._reading = None
                self._wake_id = "0-0"
                await self._drop()
                await asyncio.sleep(RECONNECT_PAUSE)
                continue
            self._reading = None
            self._dispatch(reply, cursors, fresh)
            # Let the waiters take their entries (and leave) before the next read is sent.
            await asyncio.sleep(0)

    async def _xread(self, cursors: dict[str, StreamId]) -> Any:
        self.reads += 1
        keys = list(cursors)
        ids = [format_id(cursors[key]) for key in keys]
        async with asyncio.timeout(self._read_timeout):
            if self._conn is None:
                self._conn = await self._redis.connection_pool.get_connection()  # type: ignore[no-untyped-call]
            conn = self._conn
            streams = (self._wake_key, *keys, self._wake_id, *ids)
            command = ("XREAD", "BLOCK", self._block_ms, "STREAMS", *streams)
            await conn.send_packed_command(pack(conn, [command]))
            return await conn.read_response()

    async def _drop(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.disconnect(nowait=True)
            await self._redis.connection_pool.release(conn)

    def _dispatch(self, reply: Any, cursors: dict[str, StreamId], fresh: list[Subscription]) -> None:
        """Hand each subscriber the entries after its own id, from a read made from `cursors`.

        A subscriber that joined after the read was sent, with an id older than the read's
        cursor for its stream, is not served from it: the entries between its id and the cursor
        are not in this reply, and the next read (from the older id) brings them.
        """
        for raw_key, entries in raw_streams(reply):
            key = as_text(raw_key)
            if not entries:
                continue
            if key == self._wake_key:
                self._wake_id = as_text(entries[-1][0])
                continue
            subs = self._subs.get(key)
            if not subs:
                continue
            parsed = parse_raw_entries(entries)
            newest = parsed[-1][1]
            cursor = cursors.get(key)
            for sub in subs:
                if sub.last >= newest or cursor is None or sub.last < cursor:
                    continue
                after = sub.last
                sub.entries.extend((sid, e) for sid, tid, e in parsed if e is not None and tid > after)
                sub.last = newest
                sub._notify()
        for sub in fresh:
            sub.read = True
            sub._notify()
