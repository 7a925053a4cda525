"""Webhooks (contract §3): shape and signature, retries with exponential back-off on the clock."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from simulator.clock import SystemClock
from tests.simulator.conftest import START, Harness, LiveServer, SimFactory, local_socket
from tests.simulator.contract import WebhookRejected, verify_webhook


async def test_webhook_is_a_signed_form_post_that_the_merchant_can_verify(sim: Harness) -> None:
    created = await sim.connect(amount="273.00", state="order-42")
    session_id = created["meta"]["session_id"]
    await sim.complete(session_id, "confirm", bank="ftecfr")
    await sim.flush()

    [received] = sim.receiver.received
    assert received.method == "POST" and received.path == "/webhook"
    assert received.headers["content-type"] == "application/x-www-form-urlencoded"
    assert received.headers["date"] == "Mon, 02 Mar 2026 09:00:00 GMT"
    signature = received.headers["signature"]
    assert signature.startswith(
        f'keyId="{sim.lenient.app_id}",algorithm="rsa-sha256",headers="date digest x-request-id",'
    )
    webhook = verify_webhook(
        received.headers,
        received.body,
        app_id=sim.lenient.app_id,
        private_key=sim.lenient.private_key,
        now=START,
    )
    customer_id = (await sim.payment(session_id))["meta"]["customer_id"]
    assert webhook.fields == {
        "session_id": session_id,
        "status": "payment_created",
        "customer_id": customer_id,
        "provider": "ftecfr",
        "state": "order-42",
        "type": "PayByBank",
        "transfer_state": "completed",
        "amount": "273.00",
        "event": "payment_session.status.payment_created",
    }
    # Field order as documented, quote_plus encoding (what the Python SDK re-encodes to).
    assert [name for name, _ in parse_qsl(received.body.decode())][:5] == [
        "session_id",
        "status",
        "customer_id",
        "provider",
        "state",
    ]


async def test_the_webhook_only_verifies_with_the_right_key_and_untouched_body(
    sim: Harness, keys: dict[str, RSAPrivateKey]
) -> None:
    session_id = (await sim.connect())["meta"]["session_id"]
    await sim.complete(session_id, "confirm")
    await sim.flush()
    [received] = sim.receiver.received
    merchant = sim.lenient
    tampered = received.body.replace(b"payment_created", b"payment_createX")
    for body, key, now in [
        (tampered, merchant.private_key, START),
        (received.body, merchant.private_key, START + timedelta(seconds=301)),
    ]:
        try:
            verify_webhook(received.headers, body, app_id=merchant.app_id, private_key=key, now=now)
        except WebhookRejected:
            continue
        raise AssertionError("a tampered or stale webhook verified")
    try:
        verify_webhook(
            received.headers, received.body, app_id=merchant.app_id, private_key=keys["other"], now=START
        )
    except ValueError:  # OAEP decryption fails with another key
        pass
    else:
        raise AssertionError("decrypted with the wrong key")


async def test_one_webhook_per_change_in_order(sim: Harness) -> None:
    session_id = (await sim.connect())["meta"]["session_id"]
    await sim.set_status(session_id, status="sca_required")
    await sim.set_status(session_id, status="payment_pending", transfer_state="pending")
    await sim.set_status(session_id, status="payment_created", transfer_state="completed")
    await sim.set_status(session_id, status="payment_created", transfer_state="received")
    await sim.flush()
    statuses = [dict(parse_qsl(r.body.decode()))["event"] for r in sim.receiver.received]
    assert sorted(statuses) == sorted(
        [
            "payment_session.status.sca_required",
            "payment_session.status.payment_pending",
            "payment_session.status.payment_created",
            "payment_session.transfer_states.received",
        ]
    )
    assert len({r.headers["x-request-id"] for r in sim.receiver.received}) == 4


async def test_retries_back_off_exponentially_on_the_clock_with_one_request_id(sim: Harness) -> None:
    sim.receiver.statuses = [500, 502, 404]  # then 200
    session_id = (await sim.connect())["meta"]["session_id"]
    await sim.complete(session_id, "confirm")

    summary = await sim.flush()
    assert summary["scheduled"] == 1
    assert summary["next_attempt_at"] == (START + timedelta(seconds=10)).isoformat()
    for wait in (10, 20, 40):  # base 10 s: 10, 20, 40
        await sim.advance(wait - 1)
        await sim.flush()
        assert len(sim.receiver.received) == {10: 1, 20: 2, 40: 3}[wait]
        await sim.advance(1)
        await sim.flush()

    [delivery] = await sim.deliveries(session_id=session_id)
    assert delivery["state"] == "delivered"
    attempts = delivery["attempts"]
    assert [a["status_code"] for a in attempts] == [500, 502, 404, 200]
    offsets = [(datetime.fromisoformat(a["at"]) - START).total_seconds() for a in attempts]
    assert offsets == [0, 10, 30, 70]
    # Same X-Request-ID on every attempt, a fresh Date each time, each one verifiable at its time.
    assert len({r.headers["x-request-id"] for r in sim.receiver.received}) == 1
    assert len({r.headers["date"] for r in sim.receiver.received}) == 4
    for received, offset in zip(sim.receiver.received, offsets, strict=True):
        verify_webhook(
            received.headers,
            received.body,
            app_id=sim.lenient.app_id,
            private_key=sim.lenient.private_key,
            now=START + timedelta(seconds=offset),
            tolerance=0,
        )
    assert [a["date"] for a in attempts] == [r.headers["date"] for r in sim.receiver.received]


async def test_ten_retries_then_the_delivery_fails(make_sim: SimFactory) -> None:
    async with make_sim(webhook_retry_base_delay=1.0) as sim:
        sim.receiver.statuses = [503] * 20
        session_id = (await sim.connect())["meta"]["session_id"]
        await sim.complete(session_id, "reject")
        await sim.flush()
        for retry in range(1, 11):
            await sim.advance(2 ** (retry - 1))
            await sim.flush()
        [delivery] = await sim.deliveries(session_id=session_id)
        assert delivery["state"] == "failed"
        assert len(delivery["attempts"]) == 11  # the first attempt and 10 retries
        times = [datetime.fromisoformat(a["at"]) for a in delivery["attempts"]]
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
        assert gaps == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
        await sim.advance(10_000)
        await sim.flush()
        assert len(sim.receiver.received) == 11


async def test_a_crashing_receiver_is_retried_and_the_error_recorded(sim: Harness) -> None:
    sim.receiver.statuses = ["crash"]
    session_id = (await sim.connect())["meta"]["session_id"]
    await sim.complete(session_id, "confirm")
    await sim.flush()
    await sim.advance(10)
    await sim.flush()
    [delivery] = await sim.deliveries(session_id=session_id)
    first, second = delivery["attempts"]
    assert first["status_code"] is None and "receiver crashed" in first["error"]
    assert second["status_code"] == 200 and delivery["state"] == "delivered"


async def test_flush_can_wait_for_scheduled_retries_with_a_real_clock(make_sim: SimFactory) -> None:
    async with make_sim(clock=SystemClock(), webhook_retry_base_delay=0.01) as sim:
        sim.receiver.statuses = [500, 500]
        session_id = (await sim.connect())["meta"]["session_id"]
        await sim.complete(session_id, "confirm")
        summary = await sim.flush(include_scheduled=True)
        assert summary["scheduled"] == 0
        [delivery] = await sim.deliveries(session_id=session_id)
        assert [a["status_code"] for a in delivery["attempts"]] == [500, 500, 200]


async def test_apps_without_a_webhook_url_get_none(make_sim: SimFactory) -> None:
    async with make_sim() as sim:
        sim.config.applications[0].webhook_url = None
        session_id = (await sim.connect())["meta"]["session_id"]
        await sim.complete(session_id, "confirm")
        await sim.flush()
        assert sim.receiver.received == [] and await sim.deliveries() == []


async def test_a_receiver_that_times_out_is_retried(make_sim: SimFactory) -> None:
    """A live receiver on 127.0.0.1 that answers too late the first time."""
    calls: list[float] = []

    async def slow_then_fast(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        calls.append(time.monotonic())
        if len(calls) == 1:
            await asyncio.sleep(1.0)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sock, base_url = local_socket()
    with LiveServer(slow_then_fast, sock):
        async with make_sim(webhook_timeout_seconds=0.2, webhook_transport=None) as sim:
            sim.config.applications[0].webhook_url = f"{base_url}/webhook"
            session_id = (await sim.connect())["meta"]["session_id"]
            await sim.complete(session_id, "confirm")
            await sim.flush()
            await sim.advance(10)
            await sim.flush()
            [delivery] = await sim.deliveries(session_id=session_id)
    sock.close()
    first, second = delivery["attempts"]
    assert first["status_code"] is None and "Timeout" in first["error"]
    assert second["status_code"] == 200 and delivery["state"] == "delivered"
    assert len(calls) == 2
