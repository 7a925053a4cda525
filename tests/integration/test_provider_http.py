"""The provider HTTP client (httpx's API over aiohttp's pool) against real sockets on 127.0.0.1.

What the adapters rely on: the request leaves byte for byte as built (a signed target must not be
re-encoded), the answer comes back as received, and every failure is the httpx error that says
whether the request may have reached the provider: the shared `Transport` sends a payment again
only when it certainly did not.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
from pytest import MonkeyPatch

from app.providers.base import ProviderError
from app.providers.http import provider_http_client
from app.providers.transport import Transport, TransportOptions
from tests.support.servers import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, list[bytes]], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One HTTP/1.1 request as it arrived: head and Content-Length body."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + (await reader.readexactly(length) if length else b"")


@asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A loopback server running `handler` per connection; yields its origin and the requests read."""
    seen: list[bytes] = []

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer, seen)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    srv = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        srv.close()
        await srv.wait_closed()


def transport_over(http: httpx.AsyncClient, *, retries: int = 2, timeout: float = 5.0) -> Transport:
    async def no_wait(_: float) -> None:
        return None

    return Transport(
        http,
        TransportOptions(timeout_seconds=timeout, max_retries=retries, sleep=no_wait),
        provider="Example",
    )


async def test_the_request_leaves_as_built_and_the_answer_comes_back_as_received() -> None:
    body = gzip.compress(json.dumps({"meta": {"session_id": "s-1"}}).encode())

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: list[bytes]) -> None:
        seen.append(await read_request(reader))
        writer.write(
            b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
            b"X-Log-Id: log-7\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()

    # Escapes that a URL library would normalise (%7e, %2f in lower case, an encoded slash): the
    # provider checks the signature against the target exactly as sent.
    target = "/pis/v2/connect?state=a%2fb%7e&redirect_uri=https%3A%2F%2Fshop.example%2Freturn&origin_uri"
    async with server(answer) as (origin, seen), provider_http_client(5.0) as http:
        request = http.build_request(
            "POST", origin + target, content=b'{"amount":"12.50"}', headers={"X-Signature": "sig"}
        )
        response = await http.send(request)

    assert response.status_code == 201
    assert response.json() == {"meta": {"session_id": "s-1"}}  # decoded from gzip by httpx
    assert response.headers["x-log-id"] == "log-7"
    assert response.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert response.http_version == "HTTP/1.1"
    assert response.reason_phrase == "Created"

    [raw] = seen
    head, _, sent_body = raw.partition(b"\r\n\r\n")
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    assert request_line == f"POST {target} HTTP/1.1"
    names = [line.split(":", 1)[0].lower() for line in header_lines]
    assert len(names) == len(set(names)), f"a header was sent twice: {names}"
    headers = dict(line.split(": ", 1) for line in header_lines)
    assert headers["X-Signature"] == "sig"
    assert headers["Content-Length"] == str(len(b'{"amount":"12.50"}'))
    assert headers["User-Agent"].startswith("python-httpx/")
    assert "content-type" not in names  # nothing added that the adapter did not set
    assert sent_body == b'{"amount":"12.50"}'


async def test_connections_are_reused_between_requests() -> None:
    connections = 0

    async def keep_alive(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: list[bytes]
    ) -> None:
        nonlocal connections
        connections += 1
        while True:
            seen.append(await read_request(reader))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()

    async with server(keep_alive) as (origin, seen), provider_http_client(5.0) as http:
        for _ in range(5):
            assert (await http.get(origin + "/payments/1")).status_code == 200
    assert len(seen) == 5
    assert connections == 1


async def test_a_cookie_a_provider_sets_is_never_sent_back() -> None:
    # One client serves every merchant request: a provider's cookie (a load balancer's, say) must
    # not ride along on the next call, nor be kept by the client.
    async def set_cookie(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: list[bytes]
    ) -> None:
        while True:
            seen.append(await read_request(reader))
            writer.write(
                b"HTTP/1.1 200 OK\r\nSet-Cookie: route=node-2; Path=/\r\nContent-Length: 2\r\n\r\n{}"
            )
            await writer.drain()

    async with server(set_cookie) as (origin, seen), provider_http_client(5.0) as http:
        transport = transport_over(http)
        for _ in range(3):
            response = await transport.send(
                lambda: transport.build_request(
                    "POST", origin + "/pis/v2/connect", content=b"{}", headers={}
                ),
                idempotent=False,
            )
            assert response.status_code == 200
            assert response.headers["set-cookie"] == "route=node-2; Path=/"  # the answer is as received
        assert len(http.cookies) == 0

    assert len(seen) == 3
    for raw in seen:
        head = raw.partition(b"\r\n\r\n")[0].lower()
        assert b"\r\ncookie:" not in head


async def test_a_closed_client_sends_nothing() -> None:
    async with server(answer_ok) as (origin, seen):
        http = provider_http_client(5.0)
        await http.aclose()
        with pytest.raises(RuntimeError, match="closed"):
            await http.send(http.build_request("GET", origin + "/payments/1"))
    assert seen == []


# A server in a process of its own, as the provider is: uvicorn (the simulator's server) with its
# default keep-alive, answering every request with 201.
_UVICORN_SERVER = """
import sys, uvicorn

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 201, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"{}"})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", lifespan="off")
"""


async def test_a_connection_is_not_reused_when_the_server_may_be_closing_it_as_idle() -> None:
    """uvicorn closes a connection idle for 5 s. A POST sent on one as it closes fails, and may not
    be sent again: the client must give up idle connections before the server does."""
    server_keep_alive = 5.0  # uvicorn's default
    port = free_port()
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", _UVICORN_SERVER, str(port))
    try:
        async with provider_http_client(5.0) as http:
            origin = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 20
            while True:
                try:
                    await http.get(origin + "/ready")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "the server did not start"
                    await asyncio.sleep(0.05)

            async def posts() -> list[int | str]:
                sent = [http.post(origin + "/pis/v2/connect", content=b"{}") for _ in range(64)]
                answers = await asyncio.gather(*sent, return_exceptions=True)
                return [a.status_code if isinstance(a, httpx.Response) else type(a).__name__ for a in answers]

            for gap in (0.05, 0.03):
                assert await posts() == [201] * 64
                # Just short of the server's keep-alive: a client still trusting these connections
                # sends some of the next POSTs as the server closes them.
                await asyncio.sleep(server_keep_alive - gap)
                assert await posts() == [201] * 64
    finally:
        process.terminate()
        await process.wait()


async def test_a_refused_connection_is_sent_again_even_for_a_post_as_it_never_left() -> None:
    async with server(lambda *_: asyncio.sleep(0)) as (origin, _):
        pass  # closed: nothing listens on its port any more
    attempts = 0
    async with provider_http_client(5.0) as http:
        transport = transport_over(http, retries=2)

        def build() -> httpx.Request:
            nonlocal attempts
            attempts += 1
            return transport.build_request("POST", origin + "/pis/v2/connect", content=b"{}", headers={})

        with pytest.raises(ProviderError) as caught:
            await transport.send(build, idempotent=False)
    assert attempts == 3
    assert caught.value.code == "network_error"
    assert caught.value.retryable
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


async def test_a_post_whose_connection_drops_after_it_was_read_is_never_sent_twice() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: list[bytes]) -> None:
        seen.append(await read_request(reader))  # received, maybe acted on, then the line drops

    async with server(hang_up) as (origin, seen), provider_http_client(5.0) as http:
        transport = transport_over(http, retries=2)
        with pytest.raises(ProviderError) as caught:
            await transport.send(
                lambda: transport.build_request(
                    "POST", origin + "/pis/v2/connect", content=b"{}", headers={}
                ),
                idempotent=False,
            )
        assert len(seen) == 1
        assert "may have been processed" in str(caught.value)
        assert isinstance(caught.value.__cause__, httpx.RemoteProtocolError)

        # A read is safe to repeat: every attempt goes out, and the pool itself sends each one once
        # more on a fresh connection when the line drops (RFC 9112 9.3.1, idempotent methods only).
        with pytest.raises(ProviderError):
            await transport.send(
                lambda: transport.build_request("GET", origin + "/payments/1", content=None, headers={}),
                idempotent=True,
            )
        assert len(seen) == 1 + 3 * 2


async def test_a_provider_that_never_answers_is_a_read_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: list[bytes]) -> None:
        seen.append(await read_request(reader))
        await asyncio.sleep(30)

    async with server(silent) as (origin, seen), provider_http_client(0.3) as http:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            await http.post(origin + "/pis/v2/connect", content=b"{}")
        assert time.monotonic() - started < 3
        assert len(seen) == 1


async def test_no_free_connection_in_time_is_a_timeout_that_never_sent_the_request() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: list[bytes]) -> None:
        seen.append(await read_request(reader))
        await asyncio.sleep(30)

    async with server(silent) as (origin, seen), provider_http_client(0.3, max_connections=1) as http:
        first = asyncio.create_task(http.get(origin + "/payments/1", timeout=10))
        while not seen:
            await asyncio.sleep(0.01)
        with pytest.raises(httpx.ConnectTimeout):  # one of the "never sent" errors: safe to retry
            await http.post(origin + "/pis/v2/connect", content=b"{}")
        first.cancel()
        assert len(seen) == 1


async def answer_ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: list[bytes]) -> None:
    seen.append(await read_request(reader))
    writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}")
    await writer.drain()


def proxy_environment(monkeypatch: MonkeyPatch, **variables: str) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


async def test_a_proxy_named_by_the_environment_carries_the_request_as_built(
    monkeypatch: MonkeyPatch,
) -> None:
    async with server(answer_ok) as (proxy, through_proxy):
        proxy_environment(monkeypatch, http_proxy=proxy)
        target = "http://provider.example/pis/v2/connect?state=a%2fb%7e"
        async with provider_http_client(5.0) as http:
            response = await http.post(target, content=b"{}")
    assert response.status_code == 201
    [raw] = through_proxy
    assert raw.split(b"\r\n", 1)[0] == f"POST {target} HTTP/1.1".encode()


async def test_a_host_named_by_no_proxy_is_reached_directly(monkeypatch: MonkeyPatch) -> None:
    async with server(answer_ok) as (proxy, through_proxy), server(answer_ok) as (origin, direct):
        proxy_environment(monkeypatch, http_proxy=proxy, no_proxy="127.0.0.1")
        async with provider_http_client(5.0) as http:
            assert (await http.post(origin + "/pis/v2/connect", content=b"{}")).status_code == 201
    assert len(direct) == 1
    assert through_proxy == []
