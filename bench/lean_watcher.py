"""Lean clients for the event benchmark: many ``WatchRun`` streams, little CPU.

The event benchmark runs a thousand watchers on the same two cores as Baton. A grpc.aio
client spends ~40 us of CPU on every message it receives, so with a thousand of them the
watchers, not Baton, would set the latency: like the lean agent of the executor
benchmark, this client keeps the load generator out of the figure (its CPU is reported
separately). It speaks real gRPC over HTTP/2 to the unmodified server, written by hand
and only as much of it as server-streaming calls need:

* one connection carries many streams; the request headers are HPACK literals (no
  table), and response headers are skipped without decoding;
* flow control: the client opens the largest windows at the start and tops them up;
* SETTINGS and PING are acknowledged; RST_STREAM and GOAWAY end streams as failures;
* each DATA payload is cut into gRPC messages (5-byte prefix), which may span frames.

A stream succeeds when the server ends it after at least one message; the caller sees
each message with the time its bytes were read.

For the REST face there is the same thing over HTTP/1.1: :func:`run_sse_stream` reads one
Server-Sent Events response (chunked or not) and hands over each event's ``data``,
where an httpx client spends about a millisecond of CPU per event.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable, Sequence
from typing import Final, cast

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
END_STREAM, ACK, END_HEADERS, PADDED = 0x1, 0x1, 0x4, 0x8
MAX_WINDOW: Final = 2**31 - 1
DEFAULT_WINDOW: Final = 65_535
REFILL_AT: Final = 2**30

#: Called with (stream index, message bytes, time read); the stream index is the
#: position of its request in the list the connection was given.
OnMessage = Callable[[int, bytes, float], None]


def _frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes((kind, flags))
        + struct.pack(">I", stream_id)
        + payload
    )


def _literal(value: bytes) -> bytes:
    """An HPACK string literal without Huffman coding (lengths < 127 only)."""
    if len(value) >= 127:
        raise ValueError("header value too long for this client")
    return bytes((len(value),)) + value


def request_headers(authority: str, path: str) -> bytes:
    """HPACK block of a gRPC request: indexed or literal fields, no dynamic table."""
    return (
        b"\x83"  # :method POST (static index 3)
        + b"\x86"  # :scheme http (static index 6)
        + b"\x04"  # :path, literal without indexing, name from static index 4
        + _literal(path.encode())
        + b"\x01"  # :authority (static index 1)
        + _literal(authority.encode())
        + b"\x0f\x10"  # content-type (static index 31)
        + _literal(b"application/grpc")
        + b"\x00"  # te: literal name and value
        + _literal(b"te")
        + _literal(b"trailers")
    )


class StreamsConnection(asyncio.Protocol):
    """One HTTP/2 connection running one server-streaming call per request body."""

    def __init__(
        self, authority: str, path: str, bodies: Sequence[bytes], on_message: OnMessage
    ) -> None:
        self._headers = request_headers(authority, path)
        self._bodies = bodies
        self._on_message = on_message
        self._transport: asyncio.Transport | None = None
        self._inbox = bytearray()
        self._buffers: dict[int, bytearray] = {}
        self._received: dict[int, int] = {}
        self._consumed = 0
        self.failures: list[str] = []
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not subclasses of asyncio.Transport.)
        self._transport = transport = cast(asyncio.Transport, transport)
        out = [
            PREFACE,
            # ENABLE_PUSH = 0, INITIAL_WINDOW_SIZE = max: streams never wait for credit.
            _frame(SETTINGS, 0, 0, struct.pack(">HIHI", 2, 0, 4, MAX_WINDOW)),
            _frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", MAX_WINDOW - DEFAULT_WINDOW)),
        ]
        for index, body in enumerate(self._bodies):
            stream_id = 2 * index + 1
            self._buffers[stream_id] = bytearray()
            self._received[stream_id] = 0
            out.append(_frame(HEADERS, END_HEADERS, stream_id, self._headers))
            message = b"\x00" + struct.pack(">I", len(body)) + body
            out.append(_frame(DATA, END_STREAM, stream_id, message))
        transport.write(b"".join(out))

    def data_received(self, data: bytes) -> None:
        now = time.time()
        inbox = self._inbox
        inbox += data
        offset, size = 0, len(inbox)
        replies: list[bytes] = []
        while size - offset >= 9:
            length = int.from_bytes(inbox[offset : offset + 3], "big")
            end = offset + 9 + length
            if end > size:
                break
            kind, flags = inbox[offset + 3], inbox[offset + 4]
            stream_id = int.from_bytes(inbox[offset + 5 : offset + 9], "big") & MAX_WINDOW
            payload = bytes(inbox[offset + 9 : end])
            offset = end
            if kind == DATA:
                self._data(stream_id, flags, payload, now, replies)
            elif kind == HEADERS:
                if flags & END_STREAM:
                    self._end(stream_id)
            elif kind == SETTINGS:
                if not flags & ACK:
                    replies.append(_frame(SETTINGS, ACK, 0))
            elif kind == PING:
                if not flags & ACK:
                    replies.append(_frame(PING, ACK, 0, payload))
            elif kind == RST_STREAM:
                self._end(stream_id, f"stream reset (code {int.from_bytes(payload, 'big')})")
            elif kind == GOAWAY:
                for open_stream in list(self._buffers):
                    self._end(open_stream, "connection closed by the server (GOAWAY)")
        del inbox[:offset]
        if replies and self._transport is not None:
            self._transport.write(b"".join(replies))

    def _data(
        self, stream_id: int, flags: int, payload: bytes, now: float, replies: list[bytes]
    ) -> None:
        self._consumed += len(payload) + 9
        if self._consumed >= REFILL_AT:
            replies.append(_frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", self._consumed)))
            self._consumed = 0
        if flags & PADDED:
            payload = payload[1 : len(payload) - payload[0]]
        buffer = self._buffers.get(stream_id)
        if buffer is None:
            return
        buffer += payload
        while len(buffer) >= 5:
            length = int.from_bytes(buffer[1:5], "big")
            if len(buffer) < 5 + length:
                break
            self._on_message((stream_id - 1) // 2, bytes(buffer[5 : 5 + length]), now)
            self._received[stream_id] += 1
            del buffer[: 5 + length]
        if flags & END_STREAM:
            self._end(stream_id)

    def _end(self, stream_id: int, failure: str | None = None) -> None:
        if self._buffers.pop(stream_id, None) is None:
            return
        if failure is None and not self._received[stream_id]:
            failure = "stream ended without a message (a gRPC error status)"
        if failure is not None:
            self.failures.append(f"stream {stream_id}: {failure}")
        if not self._buffers and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        for open_stream in list(self._buffers):
            self._end(open_stream, f"connection lost ({exc or 'closed'})")
        if not self.done.done():
            self.done.set_result(None)


async def run_streams(
    target: str, path: str, bodies: Sequence[bytes], on_message: OnMessage
) -> list[str]:
    """Run one call per body on one connection to ``host:port`` until all end; the
    failures, if any."""
    host, _, port = target.rpartition(":")
    loop = asyncio.get_running_loop()
    transport, connection = await loop.create_connection(
        lambda: StreamsConnection(target, path, bodies, on_message), host, int(port)
    )
    try:
        await connection.done
    finally:
        transport.close()
    return connection.failures


#: Called with (an event's data, time read).
OnEvent = Callable[[str, float], None]


class SseStream(asyncio.Protocol):
    """One ``GET`` of a Server-Sent Events response over HTTP/1.1."""

    def __init__(self, authority: str, path: str, on_event: OnEvent) -> None:
        self._request = (
            f"GET {path} HTTP/1.1\r\nHost: {authority}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
        self._on_event = on_event
        self._inbox = bytearray()
        self._headers_done = False
        self._chunked = False
        self._text = bytearray()  # the body, de-chunked, not yet cut into events
        self._events = 0
        self.failure: str | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.Transport, transport).write(self._request)

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return  # failed (or ended): the rest is not an event stream
        now = time.time()
        self._inbox += data
        if not self._headers_done:
            end = self._inbox.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._inbox[:end]).decode("latin-1").lower().split("\r\n")
            del self._inbox[: end + 4]
            self._headers_done = True
            if not head[0].startswith("http/1.1 200"):
                self._finish(f"answered {head[0]!r}")
                return
            self._chunked = "transfer-encoding: chunked" in head
        if self._chunked:
            self._dechunk()
        else:
            self._text += self._inbox
            self._inbox.clear()
        while (end := self._text.find(b"\n\n")) >= 0:
            block = bytes(self._text[:end]).decode()
            del self._text[: end + 2]
            fields = [line[5:].lstrip() for line in block.split("\n") if line.startswith("data:")]
            if fields:
                self._events += 1
                self._on_event("\n".join(fields), now)

    def _dechunk(self) -> None:
        while (line_end := self._inbox.find(b"\r\n")) >= 0:
            size = int(bytes(self._inbox[:line_end]).split(b";")[0], 16)
            if size == 0:
                self._finish(None)
                return
            if len(self._inbox) < line_end + 2 + size + 2:
                return
            self._text += self._inbox[line_end + 2 : line_end + 2 + size]
            del self._inbox[: line_end + 2 + size + 2]

    def _finish(self, failure: str | None) -> None:
        if not self.done.done():
            if failure is None and not self._events:
                failure = "the stream ended without an event"
            self.failure = failure
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._headers_done and not self._chunked:
            self._finish(None)  # the body ends with the connection
        self._finish(f"connection lost ({exc or 'closed'})")


async def run_sse_stream(base_url: str, path: str, on_event: OnEvent) -> str | None:
    """Read ``path`` of ``http://host:port`` as Server-Sent Events until the server ends
    it; the failure, if any."""
    authority = base_url.removeprefix("http://").rstrip("/")
    host, _, port = authority.rpartition(":")
    loop = asyncio.get_running_loop()
    transport, stream = await loop.create_connection(
        lambda: SseStream(authority, path, on_event), host, int(port)
    )
    try:
        await stream.done
    finally:
        transport.close()
    return stream.failure
