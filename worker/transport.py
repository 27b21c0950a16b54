"""kombu's Redis transport, hardened for this queue (loaded by `broker_transport` in worker/app.py).

What it changes, and why:

- **Poison entries never reach Celery.** Every entry popped from the queue is screened before
  kombu builds a message from it: JSON object, envelope (`properties` with a delivery tag and
  `delivery_info`), body (base64 that decodes to a JSON protocol-2 body `[args, kwargs, embed]`),
  headers (`task`, `id`, readable `eta`/`expires`/`retries`/`timelimit`). What fails goes to the
  dead-letter list (`worker/deadletter.py`) with one log line and a metric, and the consumer goes
  on; stock kombu raises inside Celery's consumer loop instead, and the worker exits. A corrupt
  `unacked` record found while restoring is dead-lettered the same way.
- **Who reserved what.** Reserving a message also records which worker instance holds it
  (`unacked_owner`, `unacked_by:<instance>`, unprefixed like kombu's own keys), in the same round
  trip as kombu's `unacked` bookkeeping; acknowledging removes it.
- **Dead workers' messages come back in seconds.** The restore sweep (every
  `SMS_RESTORE_INTERVAL` s on each worker) hands back at once every message reserved by an
  instance whose heartbeat (`worker/liveness.py`) is gone — reserved, started, or waiting for its
  ETA — to the consuming end of the queue. It does nothing for `SMS_HEARTBEAT_TTL` seconds after
  Redis itself (re)started, so heartbeats lost with a restart are not taken for deaths. kombu's
  visibility-timeout restore stays as a backstop, but a live worker renews the reservation time
  of every message it still holds (every quarter of the timeout), so the backstop only restores
  messages nobody holds (a lost acknowledgement, a failed hand-back, an old worker's): a slow
  worker keeps its work.
- **A message that keeps killing workers stops.** Each restore of a dead worker's message counts
  in its headers (`x-sms-orphaned`); past `MAX_ORPHANED` it is dead-lettered (`orphaned`) instead
  of being handed to the next worker, so a message that crashes its worker cannot crash the fleet.
- **Retries wait in Redis.** A message published with an ETA in the future (Celery's retry) goes to
  the delayed sorted set (`worker/delayed.py`) instead of the queue, so no worker holds it while it
  waits and no visibility timeout can hand it out early.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from datetime import datetime
from queue import Empty
from typing import Any

import structlog
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

from producers.contract import (
    DELAYED_KEY,
    QUEUE,
    RESERVED_BY_KEY,
    WORKERS_KEY,
    worker_alive_key,
    worker_reserved_key,
)
from worker import deadletter, delayed, metrics
from worker.liveness import instance_id

log = structlog.get_logger("worker.transport")

#: A message restored from dead workers more often than this is dead-lettered (`orphaned`).
MAX_ORPHANED = 5
ORPHANED_HEADER = "x-sms-orphaned"
#: Entries larger than this are not task messages of this queue.
MAX_ENTRY_BYTES = 1 << 20
#: A message whose ETA is at most this far ahead goes straight onto the queue.
_ETA_SLACK_S = 0.02

_DIGITS = re.compile(r"\d{5,}")


class Poison(Exception):
    """An entry no worker can run: `reason` is a short code, `detail` says what (never the bytes)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _iso(value: Any, name: str) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise Poison("bad_headers", f"header {name!r} is not a string")
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise Poison("bad_headers", f"header {name!r} is not an ISO 8601 time") from None


def screen(item: bytes | str, *, task: bool = True, max_bytes: int = MAX_ENTRY_BYTES) -> dict[str, Any]:
    """The entry as kombu's payload dict, or `Poison` saying why no worker can run it.

    Every queue's entries must be kombu messages (an object with a delivery tag and a body that
    decodes); with `task` (the `sms` queue) they must also be Celery protocol-2 task messages.
    Other queues (Celery's remote-control replies, which Flower reads) carry other bodies."""
    raw = item.encode("utf-8", "surrogateescape") if isinstance(item, str) else item
    if len(raw) > max_bytes:
        raise Poison("too_large", f"{len(raw)} bytes")
    try:
        message = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Poison("not_json", "the entry is not JSON") from None
    if not isinstance(message, dict):
        raise Poison("not_an_object", f"the entry is a JSON {type(message).__name__}")
    properties = message.get("properties")
    if not isinstance(properties, dict):
        raise Poison("bad_envelope", "no 'properties' object")
    tag = properties.get("delivery_tag")
    if not isinstance(tag, str) or not tag:
        raise Poison("bad_envelope", "no delivery tag")
    if not isinstance(properties.get("delivery_info"), dict):
        raise Poison("bad_envelope", "no 'delivery_info' object")
    decoded = _decoded_body(message, properties.get("body_encoding"))
    if not task:
        return message
    _screen_body(message, decoded)
    headers = message.get("headers")
    if not isinstance(headers, dict):
        raise Poison("bad_headers", "no 'headers' object")
    _screen_headers(headers)
    return message


def _decoded_body(message: dict[str, Any], encoding: Any) -> bytes:
    body = message.get("body")
    if not isinstance(body, str):
        raise Poison("bad_body", "the body is not a string")
    if encoding == "base64":
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise Poison("bad_base64", "the body is not valid base64") from None
    if encoding in (None, "utf-8"):
        return body.encode("utf-8", "surrogateescape")
    raise Poison("bad_envelope", "unsupported body encoding")


def _screen_body(message: dict[str, Any], decoded: bytes) -> None:
    if message.get("content-type") != "application/json":
        raise Poison("bad_body", "the content type is not application/json")
    if message.get("content-encoding") not in (None, "utf-8"):
        raise Poison("bad_body", "the content encoding is not utf-8")
    try:
        parsed = json.loads(decoded.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise Poison("bad_body", "the body is not UTF-8 JSON") from None
    if not (
        isinstance(parsed, list)
        and len(parsed) == 3
        and isinstance(parsed[0], list)
        and isinstance(parsed[1], dict)
        and isinstance(parsed[2], dict | None)
    ):
        raise Poison("bad_body", "the body is not [args, kwargs, embed]")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _screen_headers(headers: dict[str, Any]) -> None:
    for name in ("task", "id"):
        if not isinstance(headers.get(name), str) or not headers[name]:
            raise Poison("bad_headers", f"no {name!r} header")
    _iso(headers.get("eta"), "eta")
    _iso(headers.get("expires"), "expires")
    retries = headers.get("retries", 0)
    if retries is not None and not (isinstance(retries, int) and _is_number(retries) and retries >= 0):
        raise Poison("bad_headers", "header 'retries' is not a count")
    timelimit = headers.get("timelimit")
    if timelimit is not None and not (
        isinstance(timelimit, list)
        and len(timelimit) == 2
        and all(v is None or _is_number(v) for v in timelimit)
    ):
        raise Poison("bad_headers", "header 'timelimit' is not [soft, hard]")
    for name in ("root_id", "parent_id", "group", "argsrepr", "kwargsrepr", "origin", "shadow"):
        if headers.get(name) is not None and not isinstance(headers[name], str):
            raise Poison("bad_headers", f"header {name!r} is not a string")
    orphaned = headers.get(ORPHANED_HEADER, 0)
    if isinstance(orphaned, int) and orphaned > MAX_ORPHANED:
        raise Poison("orphaned", f"its workers died {orphaned} times while holding it")


def safe_text(value: str, limit: int = 60) -> str:
    """A producer-chosen string fit for a log line: digit runs masked, length capped."""
    return _DIGITS.sub(lambda m: m.group()[:2] + "…", value[:limit])


def _due_epoch(message: dict[str, Any]) -> float | None:
    headers = message.get("headers")
    eta = headers.get("eta") if isinstance(headers, dict) else None
    if not isinstance(eta, str):
        return None
    try:
        return datetime.fromisoformat(eta).timestamp()
    except ValueError:
        return None


def dumps(value: Any) -> str:
    return json.dumps(value)


def bytes_to_str(value: Any) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


def _raw_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    return dumps(value).encode()


class QoS(kombu_redis.QoS):
    """kombu's ack emulation, plus the owner of each reservation and the dead-worker sweep."""

    channel: Any
    _renewed_at = 0.0

    def ack(self, delivery_tag: str) -> None:
        try:
            super().ack(delivery_tag)  # type: ignore[no-untyped-call]
        except Exception:
            # Not held any more (its outcome is stored): not renewed, so the backstop restores it
            # after the visibility timeout, and the redelivery replays the stored outcome.
            virtual.QoS.ack(self, delivery_tag)  # type: ignore[no-untyped-call]
            raise

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        try:
            super().reject(delivery_tag, requeue=requeue)  # type: ignore[no-untyped-call]
        except Exception:
            # The hand-back failed (Redis away): stop renewing it, so the backstop restores it.
            virtual.QoS.ack(self, delivery_tag)  # type: ignore[no-untyped-call]
            raise

    def _renew_held(self, client: Any) -> None:
        """Refresh the reservation time of every message this worker still holds, so that only
        messages nobody holds (a lost ack, a failed hand-back, an old worker's) age past the
        visibility timeout."""
        now = time.time()
        if now - self._renewed_at < max(1.0, self.visibility_timeout / 4):
            return
        self._renewed_at = now
        for _ in range(3):
            try:
                held = [tag for tag in list(self._delivered) if tag not in self._dirty]
                break
            except RuntimeError:  # changed by another thread while copied
                continue
        else:
            return
        if held:
            client.zadd(self.unacked_index_key, dict.fromkeys(held, now), xx=True)

    def append(self, message: Any, delivery_tag: str) -> None:
        delivery = message.delivery_info
        me = instance_id()
        with self.pipe_or_acquire() as pipe:
            pipe.zadd(self.unacked_index_key, {delivery_tag: time.time()}).hset(
                self.unacked_key,
                delivery_tag,
                dumps([message._raw, delivery["exchange"], delivery["routing_key"]]),
            ).hset(RESERVED_BY_KEY, delivery_tag, me).sadd(worker_reserved_key(me), delivery_tag).execute()
            virtual.QoS.append(self, message, delivery_tag)  # type: ignore[no-untyped-call]

    def _remove_from_indices(self, delivery_tag: str, pipe: Any = None) -> Any:
        with self.pipe_or_acquire(pipe) as pipe:
            return (
                pipe.zrem(self.unacked_index_key, delivery_tag)
                .hdel(self.unacked_key, delivery_tag)
                .hdel(RESERVED_BY_KEY, delivery_tag)
                .srem(worker_reserved_key(instance_id()), delivery_tag)
            )

    def restore_by_tag(self, tag: Any, client: Any = None, leftmost: bool = False) -> None:
        self._restore_tag(tag, client, leftmost=leftmost, orphaned=False)

    def _restore_tag(self, tag: Any, client: Any, *, leftmost: bool, orphaned: bool) -> bool:
        """Move one reserved message back onto its queue (one WATCH transaction); True if moved."""
        restored = False
        poison: tuple[bytes, str] | None = None

        def transaction(pipe: Any) -> None:
            nonlocal restored, poison
            restored, poison = False, None
            record = pipe.hget(self.unacked_key, tag)
            pipe.multi()
            self._remove_from_indices(tag, pipe)
            if not record:
                return
            try:
                payload, exchange, routing_key = json.loads(bytes_to_str(record))
                if not isinstance(payload, dict):
                    raise ValueError("not an object")
            except (ValueError, TypeError, UnicodeDecodeError):
                poison = (_raw_bytes(record), "the unacked record is not [message, exchange, routing key]")
                deadletter.push(
                    pipe, poison[0], reason="bad_unacked", detail=poison[1], worker=instance_id(),
                    policy=self.channel.dead_letter_policy,
                )  # fmt: skip
                return
            headers = payload.get("headers")
            if orphaned and isinstance(headers, dict):
                count = headers.get(ORPHANED_HEADER, 0)
                headers[ORPHANED_HEADER] = (count if isinstance(count, int) else 0) + 1
            self.channel._do_restore_message(payload, exchange, routing_key, pipe, leftmost)
            restored = True

        with self.channel.conn_or_acquire(client) as client:
            client.transaction(transaction, self.unacked_key)
        return restored

    def restore_visible(self, start: int = 0, num: int | None = 10, interval: int = 10) -> None:
        """Every sweep: dead instances' messages at once; then messages nobody has renewed for
        the visibility timeout (live workers renew what they hold)."""
        with self.channel.conn_or_acquire() as client:
            try:
                with kombu_redis.Mutex(client, self.unacked_mutex_key, self.unacked_mutex_expire):
                    self._sweep_dead(client)
                    self._renew_held(client)
                    self._sweep_expired(client, num)
            except kombu_redis.MutexHeld:
                pass

    def _redis_uptime(self, client: Any) -> float:
        try:
            return float(client.info("server").get("uptime_in_seconds", 0))
        except Exception:  # an INFO-less server: no guard
            return float("inf")

    def _sweep_dead(self, client: Any) -> None:
        me = instance_id()
        others = [bytes_to_str(w) for w in client.smembers(WORKERS_KEY) if bytes_to_str(w) != me]
        if not others:
            return
        with client.pipeline(transaction=False) as pipe:
            for worker in others:
                pipe.exists(worker_alive_key(worker))
            alive = pipe.execute()
        dead = [w for w, a in zip(others, alive, strict=True) if not a]
        if not dead or self._redis_uptime(client) < float(self.channel.sms_heartbeat_ttl):
            return
        for worker in dead:
            tags = client.smembers(worker_reserved_key(worker))
            restored = sum(self._restore_tag(tag, client, leftmost=False, orphaned=True) for tag in tags)
            with client.pipeline(transaction=True) as pipe:
                pipe.srem(WORKERS_KEY, worker)
                pipe.delete(worker_reserved_key(worker))
                pipe.execute()
            if restored:
                metrics.RECOVERED.inc(restored)
                log.warning("queue.worker_dead", worker=worker, restored=restored)

    def _sweep_expired(self, client: Any, num: int | None) -> None:
        ceil = time.time() - self.visibility_timeout
        expired = client.zrange(
            self.unacked_index_key, ceil, 0, desc=True, byscore=True, offset=0 if num else None,
            num=num or None, withscores=True,
        )  # fmt: skip
        for tag, _ in expired or []:
            owner = client.hget(RESERVED_BY_KEY, tag)
            if self._restore_tag(tag, client, leftmost=False, orphaned=True):
                log.warning("queue.visibility_restore", owner=bytes_to_str(owner) if owner else None)


class HardenedChannel:
    """The channel behaviour shared by the plain and the Sentinel transports."""

    QoS = QoS
    extra_transport_options = ("sms_dead_letter_max", "sms_dead_letter_ttl", "sms_heartbeat_ttl")
    sms_dead_letter_max = deadletter.DEFAULT_POLICY.max_entries
    sms_dead_letter_ttl = deadletter.DEFAULT_POLICY.ttl_seconds
    sms_heartbeat_ttl = 5.0

    # provided by kombu's redis Channel
    client: Any
    connection: Any
    sep: str
    _queue_cycle: Any
    _in_poll: Any
    conn_or_acquire: Any
    _flush_brpop_reauth: Any

    @property
    def dead_letter_policy(self) -> deadletter.DeadLetterPolicy:
        return deadletter.DeadLetterPolicy(int(self.sms_dead_letter_max), int(self.sms_dead_letter_ttl))

    def _accept(self, item: bytes, queue: str) -> dict[str, Any] | None:
        """The payload to deliver, or None when the entry was dead-lettered."""
        try:
            return screen(item, task=queue == QUEUE)
        except Poison as poison:
            with self.conn_or_acquire() as client:
                deadletter.push(
                    client, _raw_bytes(item), reason=poison.reason, detail=poison.detail, queue=queue,
                    worker=instance_id(), policy=self.dead_letter_policy,
                )  # fmt: skip
            return None

    def _brpop_read(self, **options: Any) -> bool:
        # kombu's, with the entry screened before it becomes a message.
        try:
            try:
                dest__item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:  # type: ignore[attr-defined]
                self.client.connection.disconnect()
                raise
            if dest__item:
                dest, item = dest__item
                dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]
                self._queue_cycle.rotate(dest)
                payload = self._accept(item, dest)
                if payload is None:
                    raise Empty()
                self.connection._deliver(payload, dest)
                return True
            raise Empty()
        finally:
            self._in_poll = None
            self._flush_brpop_reauth()

    def _get(self, queue: str) -> dict[str, Any]:
        with self.conn_or_acquire() as client:
            for pri in self.priority_steps:  # type: ignore[attr-defined]
                item = client.rpop(self._q_for_pri(queue, pri))  # type: ignore[attr-defined]
                if item:
                    payload = self._accept(item, queue)
                    if payload is not None:
                        return payload
            raise Empty()

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        due = _due_epoch(message) if queue == QUEUE else None
        if due is None or due <= time.time() + _ETA_SLACK_S:
            super()._put(queue, message, **kwargs)  # type: ignore[misc]
            return
        batch = kwargs.pop("_publish_batch", None)
        member = {dumps(message): int(due * 1000)}
        if batch is not None:
            batch.add("zadd", DELAYED_KEY, member)
        else:
            with self.conn_or_acquire() as client:
                client.zadd(DELAYED_KEY, member)
        delayed.notify(due)

    def _do_restore_message(
        self, payload: Any, exchange: Any, routing_key: Any, pipe: Any, leftmost: bool = False
    ) -> None:
        if not isinstance(payload, dict):
            deadletter.push(
                pipe, _raw_bytes(payload), reason="bad_unacked", worker=instance_id(),
                detail="the restored message is not an object", policy=self.dead_letter_policy,
            )  # fmt: skip
            return
        super()._do_restore_message(payload, exchange, routing_key, pipe, leftmost)  # type: ignore[misc]


def _options(base: Any) -> Any:
    return tuple(base.from_transport_options) + HardenedChannel.extra_transport_options


class Channel(HardenedChannel, kombu_redis.Channel):  # type: ignore[misc]
    from_transport_options = _options(kombu_redis.Channel)


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelChannel(HardenedChannel, kombu_redis.SentinelChannel):  # type: ignore[misc]
    from_transport_options = _options(kombu_redis.SentinelChannel)


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel


def transport_for(url: str) -> str | None:
    """The transport class path for a broker URL (None: a scheme this module does not harden)."""
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("redis", "rediss"):
        return "worker.transport:Transport"
    if scheme == "sentinel":
        return "worker.transport:SentinelTransport"
    return None
