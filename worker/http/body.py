"""Reading a request body with a size limit, enforced while reading: never more is buffered."""

from __future__ import annotations

from starlette.requests import Request


class BodyTooLarge(Exception):
    """The body is over the limit (answered 413)."""


async def read_limited(request: Request, limit: int) -> bytes:
    """The whole body, or `BodyTooLarge` as soon as a declared length or the bytes read pass `limit`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)
