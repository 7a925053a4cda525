"""The service as uvicorn serves it (app/server.py), over real HTTP: no server banner, capped
request heads, answers sent whole, and the payer's return leaking nothing through the Referer."""

from __future__ import annotations

import asyncio

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from app.server import MAX_REQUEST_HEAD_BYTES
from tests.e2e.conftest import STOREFRONT, Stack
from tests.e2e.test_hostile_webhooks import assert_refused
from tests.e2e.test_webhook_security import form_body, post_webhook, signed
from tests.support.fintecture import public_key_from_pem


@pytest.fixture
def merchant_public(merchant_keys: tuple[str, str]) -> rsa.RSAPublicKey:
    return public_key_from_pem(merchant_keys[1])


async def test_no_server_banner(stack: Stack) -> None:
    response = await stack.http.get(f"{stack.service_url}/healthz")
    assert response.status_code == 200
    assert "server" not in response.headers


@pytest.mark.parametrize("size", [MAX_REQUEST_HEAD_BYTES + 1024, 8 * 1024 * 1024])
async def test_a_request_whose_headers_exceed_the_cap_is_431_and_writes_nothing(
    stack: Stack, merchant_public: rsa.RSAPublicKey, size: int
) -> None:
    _, session = await stack.paying_order()
    body = form_body(session["provider_session_id"])
    headers = signed(merchant_public, body)
    headers["Signature"] = 'keyId="x",signature="' + "A" * size + '"'
    before = await stack.table_counts()
    # The 431 reaches the client although it was still sending: the server reads the rest, unparsed.
    response = await post_webhook(stack, body, headers)
    assert_refused(response, 431, "request_header_fields_too_large")
    assert response.headers["connection"] == "close"
    assert await stack.table_counts() == before
    # The server still serves the next request.
    assert (await stack.http.get(f"{stack.service_url}/healthz")).status_code == 200


async def test_headers_within_the_cap_are_served(stack: Stack) -> None:
    cookie = "c=" + "x" * (MAX_REQUEST_HEAD_BYTES // 2)
    response = await stack.http.get(f"{stack.service_url}/healthz", headers={"Cookie": cookie})
    assert response.status_code == 200


async def test_a_head_that_never_ends_is_refused_without_waiting_for_it(stack: Stack) -> None:
    host, port = stack.service_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: ")
        for _ in range(4):  # 64 KiB of one header, never finished
            writer.write(b"a" * 16 * 1024)
            await writer.drain()
        answer = await asyncio.wait_for(reader.read(4096), timeout=5)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert b'"code": "request_header_fields_too_large"' in answer


async def test_the_payers_return_sends_no_referrer_to_the_storefront(stack: Stack) -> None:
    _, session = await stack.paying_order()
    back = await stack.complete(session["provider_session_id"], "confirm")
    response = await stack.follow_callback(back)
    assert response.status_code == 303
    assert response.headers["location"].startswith(STOREFRONT)
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"


async def test_an_answer_arrives_whole_in_one_read_and_the_connection_stays_usable(stack: Stack) -> None:
    # Head and body leave in one write (app/server.py, HeadJoiningTransport): on loopback the first
    # read has all of it.
    host, port = stack.service_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        for _ in range(3):  # one kept-alive connection: each answer is joined on its own
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(65536), timeout=5)
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 ")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            assert len(body) == length > 0
    finally:
        writer.close()
