"""Reading a whole Redis database as bytes, to prove a secret is stored nowhere."""

from __future__ import annotations

from typing import Any


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode()


def dump_all(client: Any, match: str | None = None) -> bytes:
    """Every key (or every key matching `match`) and its value, whatever its type, as one blob."""
    chunks: list[bytes] = []
    # Sorted: SCAN's order changes when other keys come and go (heartbeats, retries waiting).
    for key in sorted(client.scan_iter(match=match, count=1000)):
        kind = _bytes(client.type(key))
        values: list[Any] = []
        if kind == b"string":
            values = [client.get(key)]
        elif kind == b"hash":
            values = [item for pair in client.hgetall(key).items() for item in pair]
        elif kind == b"list":
            values = client.lrange(key, 0, -1)
        elif kind == b"set":
            values = list(client.smembers(key))
        elif kind == b"zset":
            values = [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == b"stream":
            values = [item for _, fields in client.xrange(key) for pair in fields.items() for item in pair]
        chunks.append(_bytes(key))
        chunks.extend(_bytes(v) for v in values if v is not None)
    return b"\n".join(chunks)
