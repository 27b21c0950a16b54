"""HTTP/1.1 on an asyncio stream, through h11: read one request, write one response, or reset.

Kept apart from `FakeServer` so that the server module holds only behaviour (recording, scripting,
lifecycle) and this one only the byte-level protocol.
"""

from __future__ import annotations

import asyncio
import http
import socket
import struct
import time
from urllib.parse import parse_qs, urlsplit

import h11
import httpx

from worker.testing.exchange import RecordedRequest, Response

READ_SIZE = 65536


async def read_request(
    conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> RecordedRequest | None:
    """The next complete request on `conn`, or None once the client closed an idle connection.

    Raises h11.RemoteProtocolError for bytes that are not HTTP/1.1.
    """
    head: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            if conn.they_are_waiting_for_100_continue:
                writer.write(_send(conn, h11.InformationalResponse(status_code=100, headers=[])))
            conn.receive_data(await reader.read(READ_SIZE))
        elif isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage) and head is not None:
            return _recorded(head, bytes(body))
        else:
            return None  # ConnectionClosed


async def write_response(conn: h11.Connection, writer: asyncio.StreamWriter, response: Response) -> None:
    """Send `response` in one write, with a Content-Length computed here."""
    headers = [(name, value) for name, value in response.headers.items() if name.lower() != "content-length"]
    headers.append(("Content-Length", str(len(response.body))))
    head = h11.Response(status_code=response.status, headers=headers, reason=phrase(response.status).encode())
    data = _send(conn, head)
    data += _send(conn, h11.Data(data=response.body))
    data += _send(conn, h11.EndOfMessage())
    writer.write(data)
    await writer.drain()


def abort_with_rst(writer: asyncio.StreamWriter) -> None:
    """Close the connection with a TCP RST ("connection reset by peer") instead of a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        # SO_LINGER on with a zero timeout makes close() discard the socket and send RST.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def phrase(status: int) -> str:
    """The standard reason phrase for `status` ("" for unknown codes)."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def _send(conn: h11.Connection, event: h11.Event) -> bytes:
    return conn.send(event) or b""


def _recorded(head: h11.Request, body: bytes) -> RecordedRequest:
    target = urlsplit(head.target.decode("latin-1"))
    return RecordedRequest(
        method=head.method.decode("ascii"),
        path=target.path,
        query=parse_qs(target.query, keep_blank_values=True),
        headers=httpx.Headers(
            [(name.decode("latin-1"), value.decode("latin-1")) for name, value in head.headers]
        ),
        body=body,
        received_at=time.monotonic(),
    )
