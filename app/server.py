"""How uvicorn serves the app: the one place its options are set (`checkout serve`, the demo and the
live servers of the tests all come here).

- No `Server: uvicorn` banner.
- A request's head (request line and headers) is capped at `MAX_REQUEST_HEAD_BYTES`, as h11 caps
  it by default: httptools, the parser uvicorn prefers, has no cap at all, so an 8 MB header would
  be read, buffered and handed to the app. Past the cap the client gets a 431 in the API's error
  shape and the connection is closed. The cap is checked on what has arrived, so a head that never
  ends is refused after the first chunk over it rather than buffered whole; the rest is dropped
  unparsed.
- A response's head and the first bytes of its body leave in one write (`HeadJoiningTransport`).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app import logging_setup
from app import request_id as request_ids

log = logging_setup.get_logger("app.access")

# Browsers send a few kilobytes at most; a provider's signed webhook, under 2 KiB of headers.
MAX_REQUEST_HEAD_BYTES = 16 * 1024
# After the 431, what the client is still sending is read and dropped for a moment before the
# connection closes: closing with unread data makes the kernel reset the connection, and the
# client would lose the answer. Bounded in time and bytes.
LINGER_SECONDS = 2.0
MAX_LINGER_BYTES = 16 * 1024 * 1024


class _HeadTooLarge(Exception):
    pass


def _head_too_large_response(request_id: str) -> bytes:
    body = json.dumps(
        {
            "error": {
                "code": "request_header_fields_too_large",
                "message": f"the request line and headers exceed {MAX_REQUEST_HEAD_BYTES} bytes",
            }
        }
    ).encode()
    head = (
        "HTTP/1.1 431 Request Header Fields Too Large\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "cache-control: no-store\r\n"
        "x-content-type-options: nosniff\r\n"
        f"x-request-id: {request_id}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class HeadJoiningTransport:
    """A connection's transport that sends a response's head together with its body.

    uvicorn writes the head (status line and headers) as soon as the app starts its answer, and the
    body when the app sends it: two sends, two TCP segments and two wake-ups of the client for
    every small JSON answer. Here a head is held until the next write, which it goes out with, or
    until the end of the event loop's current pass, when it goes out alone (an answer whose body
    comes later, or never, as for a HEAD request). Writes keep their order; nothing is held past
    the pass it was written in, and closing sends what is held first.
    """

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._held: bytes | None = None
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
        elif type(data) is bytes and data.startswith(b"HTTP/1.1 ") and data.endswith(b"\r\n\r\n"):
            self._held = data
            self._loop.call_soon(self._send_held)
        else:
            self._transport.write(data)

    def writelines(self, chunks: Any) -> None:
        self.write(b"".join(chunks))

    def _send_held(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def write_eof(self) -> None:
        self._send_held()
        self._transport.write_eof()

    def close(self) -> None:
        self._send_held()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        # Everything else (reading, flow control, peer names, abort) is the transport's own.
        return getattr(self._transport, name)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a cap on the request head, writing through
    `HeadJoiningTransport`."""

    def connection_made(self, transport: Any) -> None:
        transport = HeadJoiningTransport(transport)
        # Before the first message, and between messages, bytes received are a head's.
        self._in_head = True
        self._head_bytes = 0  # of the current head, as the parser hands it over
        self._received_in_head = 0  # raw bytes received while the current head is incomplete
        self._head_too_large = False
        self._lingered = 0
        self._linger: asyncio.TimerHandle | None = None
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._linger is not None:
            self._linger.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._head_too_large:  # answered already: drop the rest of the request
            self._lingered += len(data)
            if self._lingered > MAX_LINGER_BYTES:
                self.transport.close()
            return
        if self._in_head:
            self._received_in_head += len(data)
        super().data_received(data)
        if self._in_head and self._received_in_head > MAX_REQUEST_HEAD_BYTES and not self._head_too_large:
            self._refuse_head()

    def _refuse_head(self) -> None:
        self._head_too_large = True
        if not self.transport.is_closing() and self._linger is None:
            # The app never sees this request: the id and the access line are made here.
            request_id = request_ids.new_id()
            log.info("request", request_id=request_id, status=431, reason="request head too large")
            self.transport.write(_head_too_large_response(request_id))
            self._linger = asyncio.get_running_loop().call_later(LINGER_SECONDS, self.transport.close)

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_REQUEST_HEAD_BYTES:
            self._head_too_large = True
            raise _HeadTooLarge  # the parser stops; uvicorn answers through send_400_response

    def send_400_response(self, msg: str) -> None:
        if self._head_too_large:
            self._refuse_head()
        else:
            super().send_400_response(msg)

    def on_message_begin(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._received_in_head = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head = True
        super().on_message_complete()


def server_config(app: Any, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration for `app`; `options` are uvicorn's (host, port, log_level...).

    The server's own lines are JSON (uvicorn's default log_config installs plain-text formatters),
    and its access log is off: the app logs one access line per request with its request id and
    duration (app/request_id.py)."""
    options.setdefault("log_config", logging_setup.server_log_config())
    options.setdefault("access_log", False)
    return uvicorn.Config(
        app,
        http=BoundedHttpToolsProtocol,
        server_header=False,
        h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,
        **options,
    )
