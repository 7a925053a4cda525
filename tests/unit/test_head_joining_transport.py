"""HeadJoiningTransport (app/server.py): a response's head leaves with its body in one write, every
write keeps its order, and nothing is held past the event loop's current pass."""

from __future__ import annotations

import asyncio

import pytest

from app.server import HeadJoiningTransport

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n"


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.events: list[str] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        assert not self.closing, "written after close"
        self.writes.append(bytes(data))

    def write_eof(self) -> None:
        self.events.append("eof")

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.events.append("close")
        self.closing = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


async def next_pass() -> None:
    await asyncio.sleep(0)


async def test_a_head_and_its_body_leave_in_one_write() -> None:
    raw = RecordingTransport()
    transport = HeadJoiningTransport(raw)
    transport.write(HEAD)
    assert raw.writes == []
    transport.write(b"{}")
    assert raw.writes == [HEAD + b"{}"]
    await next_pass()
    assert raw.writes == [HEAD + b"{}"]  # nothing sent twice


async def test_a_head_without_a_body_in_the_same_pass_leaves_alone_at_its_end() -> None:
    raw = RecordingTransport()
    transport = HeadJoiningTransport(raw)
    transport.write(HEAD)  # a HEAD request's answer, or a body that comes later
    await next_pass()
    assert raw.writes == [HEAD]
    transport.write(b"{}")
    assert raw.writes == [HEAD, b"{}"]


async def test_a_streamed_body_keeps_its_order() -> None:
    raw = RecordingTransport()
    transport = HeadJoiningTransport(raw)
    chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    transport.write(chunked)
    transport.write(b"2\r\nab\r\n")
    transport.write(b"2\r\ncd\r\n")
    transport.writelines([b"0\r\n", b"\r\n"])
    await next_pass()
    assert raw.writes == [chunked + b"2\r\nab\r\n", b"2\r\ncd\r\n", b"0\r\n\r\n"]


async def test_answers_on_a_kept_alive_connection_each_join_their_own_body() -> None:
    raw = RecordingTransport()
    transport = HeadJoiningTransport(raw)
    for body in (b"{}", b"[]"):
        transport.write(HEAD)
        transport.write(body)
    assert raw.writes == [HEAD + b"{}", HEAD + b"[]"]


@pytest.mark.parametrize(("end", "event"), [("close", "close"), ("write_eof", "eof")])
async def test_ending_the_connection_sends_the_held_head_first(end: str, event: str) -> None:
    raw = RecordingTransport()
    transport = HeadJoiningTransport(raw)
    transport.write(HEAD)
    getattr(transport, end)()
    assert raw.writes == [HEAD]
    assert raw.events == [event]
    await next_pass()
    assert raw.writes == [HEAD]  # not sent again at the end of the pass


async def test_a_head_held_when_the_connection_went_away_is_dropped() -> None:
    raw = RecordingTransport()
    transport = HeadJoiningTransport(raw)
    transport.write(HEAD)
    raw.closing = True  # the client hung up: the transport is closing on its own
    await next_pass()
    assert raw.writes == []


async def test_other_writes_go_out_at_once() -> None:
    raw = RecordingTransport()
    transport = HeadJoiningTransport(raw)
    whole = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 3\r\n\r\nbad"  # a whole answer at once
    transport.write(whole)
    transport.write(bytearray(b"HTTP/1.1 \r\n\r\n"))  # not bytes: never held
    assert raw.writes == [whole, b"HTTP/1.1 \r\n\r\n"]


async def test_everything_else_is_the_transports_own() -> None:
    transport = HeadJoiningTransport(RecordingTransport())
    assert transport.get_extra_info("peername") == "info:peername"
    assert transport.is_closing() is False
