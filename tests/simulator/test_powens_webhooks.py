"""PAYMENT_STATE_UPDATED webhooks (contract §5): body, HMAC signature, gzip, retries and faults.

Signatures are checked with `tests/simulator/powens_contract.py`, the contract's formula over the
standard library's `hmac`, never with the simulator's own helper.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import itertools
import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from tests.simulator.conftest import (
    POWENS_CLIENTS,
    START,
    Harness,
    PowensClient,
    Received,
    SimFactory,
    powens_config,
)
from tests.simulator.powens_contract import PowensWebhookRejected, expected_signature, verify_powens_webhook

PATH = "/webhooks/powens"


def powens_received(sim: Harness) -> list[Received]:
    return [r for r in sim.receiver.received if r.path == PATH]


def verify(received: Received, client: PowensClient | None = None) -> dict[str, Any]:
    data, _ = verify_powens_webhook(
        received.headers, received.body, path=PATH, secret=(client or POWENS_CLIENTS["shop"]).webhook_secret
    )
    return data


async def paid(sim: Harness, client: PowensClient | None = None, label: str = "done - x") -> int:
    """A payment validated in the webview: validating, then done (two webhooks)."""
    payment_id: int = (await sim.powens.create(client, label=label))["id"]
    await sim.powens.complete(payment_id)
    return payment_id


async def test_the_webhook_is_the_payment_resource_signed_per_the_contract(sim: Harness) -> None:
    payment_id = await paid(sim)
    await sim.flush()
    validating, done = powens_received(sim)
    for received in (validating, done):
        assert received.method == "POST" and received.path == PATH
        assert received.headers["content-type"] == "application/json"
        assert received.headers["bi-signature-date"] == "2026-03-02T09:00:00.000000Z"
        assert "content-encoding" not in received.headers
    data = verify(done)
    resource = await sim.powens.payment(payment_id)
    assert {key: value for key, value in data.items() if key != "id_webhook_data"} == resource
    assert data["state"] == "done" and data["instructions"][0]["state"] == "done"
    assert isinstance(data["id_webhook_data"], int) and not isinstance(data["id_webhook_data"], bool)
    assert verify(validating)["id_webhook_data"] != data["id_webhook_data"]
    # The signed message, spelled out: method, path, date and the raw body, joined by dots.
    message = b"POST./webhooks/powens.2026-03-02T09:00:00.000000Z." + done.body
    secret = POWENS_CLIENTS["shop"].webhook_secret.encode()
    signature = base64.b64encode(hmac.new(secret, message, hashlib.sha256).digest()).decode()
    assert done.headers["bi-signature"] == signature
    # Amounts are JSON numbers, with ten decimals as in the API.
    assert b'"amount":50.9000000000' in done.body
    assert json.loads(done.body, parse_float=Decimal)["instructions"][0]["amount"] == Decimal("50.90")


async def test_the_signature_fails_for_any_other_body_path_date_or_secret(sim: Harness) -> None:
    await paid(sim)
    await sim.flush()
    received = powens_received(sim)[-1]
    shop = POWENS_CLIENTS["shop"]
    tampered = received.body.replace(b'"state":"done"', b'"state":"dona"')
    for body, path, secret, headers in [
        (tampered, PATH, shop.webhook_secret, received.headers),
        (received.body, "/webhook", shop.webhook_secret, received.headers),
        (received.body, PATH, "another-secret", received.headers),
        (
            received.body,
            PATH,
            shop.webhook_secret,
            {**received.headers, "bi-signature-date": "2026-03-02T09:00:01.000000Z"},
        ),
        # Re-serialised JSON is other bytes: verify the raw body.
        (json.dumps(json.loads(received.body)).encode(), PATH, shop.webhook_secret, received.headers),
    ]:
        with pytest.raises(PowensWebhookRejected):
            verify_powens_webhook(headers, body, path=path, secret=secret)


async def test_one_webhook_per_state_change_only(sim: Harness) -> None:
    payment_id = (await sim.powens.create(label="pdng - x"))["id"]
    await sim.flush()
    assert powens_received(sim) == []  # creating a payment is no state change
    await sim.powens.complete(payment_id)
    await sim.powens.api("POST", f"/payments/{payment_id}", json={"cancel": True})  # only state_detail moves
    await sim.powens.set_state(payment_id, state="pending", error_code=None)  # the same state: none
    await sim.powens.set_state(payment_id, state="accepted")
    await sim.flush()
    assert [verify(r)["state"] for r in powens_received(sim)] == ["validating", "pending", "accepted"]
    ids = [verify(r)["id_webhook_data"] for r in powens_received(sim)]
    assert len(set(ids)) == 3


async def test_gzip_bodies_are_signed_over_the_uncompressed_payload(sim: Harness) -> None:
    gzip_client = POWENS_CLIENTS["gzip"]
    payment_id = await paid(sim, gzip_client)
    await sim.flush()
    received = powens_received(sim)[-1]
    assert received.headers["content-encoding"] == "gzip"
    payload = gzip.decompress(received.body)
    data = verify(received, gzip_client)
    assert data["id"] == payment_id and data["state"] == "done"
    secret, date = gzip_client.webhook_secret, received.headers["bi-signature-date"]
    assert received.headers["bi-signature"] == expected_signature(secret, PATH, date, payload)
    assert received.headers["bi-signature"] != expected_signature(secret, PATH, date, received.body)
    [delivery] = [d for d in await sim.deliveries(provider="powens") if d["fields"]["state"] == "done"]
    assert delivery["content_encoding"] == "gzip"
    assert delivery["body"] == payload.decode()  # the record shows the payload


async def test_retries_keep_the_body_and_id_webhook_data_and_sign_each_attempt(sim: Harness) -> None:
    sim.receiver.statuses = [500, 404, "crash"]  # then 200
    payment_id = (await sim.powens.create(label="done - x"))["id"]
    await sim.powens.set_state(payment_id, state="expired")
    await sim.flush()
    for wait in (10, 20, 40):  # base 10 s: 10, 20, 40
        await sim.advance(wait)
        await sim.flush()
    [delivery] = await sim.deliveries(provider="powens")
    assert delivery["state"] == "delivered" and delivery["event"] == "PAYMENT_STATE_UPDATED"
    assert delivery["session_id"] == str(payment_id) and delivery["payment_id"] == payment_id
    assert delivery["request_id"] == str(delivery["id_webhook_data"])
    attempts = delivery["attempts"]
    assert [a["status_code"] for a in attempts] == [500, 404, None, 200]
    offsets = [(datetime.fromisoformat(a["at"]) - START).total_seconds() for a in attempts]
    assert offsets == [0, 10, 30, 70]
    received = powens_received(sim)
    assert len({r.body for r in received}) == 1
    assert len({r.headers["bi-signature-date"] for r in received}) == 4
    for one, offset, attempt in zip(received, offsets, attempts, strict=True):
        data, sent_at = verify_powens_webhook(
            one.headers, one.body, path=PATH, secret=POWENS_CLIENTS["shop"].webhook_secret
        )
        assert sent_at == START + timedelta(seconds=offset)
        assert attempt["date"] == one.headers["bi-signature-date"]
        assert data["id_webhook_data"] == delivery["id_webhook_data"] and data["state"] == "expired"


async def test_ten_retries_then_the_delivery_fails(make_sim: SimFactory) -> None:
    async with make_sim(webhook_retry_base_delay=1.0) as sim:
        sim.receiver.statuses = [503] * 20
        payment_id = (await sim.powens.create())["id"]
        await sim.powens.set_state(payment_id, state="accepted")
        await sim.flush()
        for retry in range(1, 11):
            await sim.advance(2 ** (retry - 1))
            await sim.flush()
        [delivery] = await sim.deliveries(provider="powens")
        assert delivery["state"] == "failed" and len(delivery["attempts"]) == 11
        times = [datetime.fromisoformat(a["at"]) for a in delivery["attempts"]]
        assert [(b - a).total_seconds() for a, b in itertools.pairwise(times)] == [
            1,
            2,
            4,
            8,
            16,
            32,
            64,
            128,
            256,
            512,
        ]


async def test_fault_knobs_apply_to_powens_deliveries(sim: Harness) -> None:
    ids = [(await sim.powens.create(label=f"ORDER-{n}"))["id"] for n in range(4)]
    await sim.control(
        "POST",
        "/faults",
        {"webhook_drop": {"count": 1}, "webhook_duplicate": {"count": 1, "copies": 3}},
    )
    for payment_id in ids[:2]:
        await sim.powens.set_state(payment_id, state="done")
    await sim.control("POST", "/faults", {"webhook_reorder": {"count": 2}})
    for payment_id in ids[2:]:
        await sim.powens.set_state(payment_id, state="done")
    await sim.flush()
    arrived = [verify(r) for r in powens_received(sim)]
    # The first dropped; the second three times, same body; the last two newest first.
    assert [d["id"] for d in arrived] == [ids[1]] * 3 + [ids[3], ids[2]]
    assert len({d["id_webhook_data"] for d in arrived[:3]}) == 1
    states = {d["payment_id"]: (d["state"], d["faults"]) for d in await sim.deliveries(provider="powens")}
    assert states[ids[0]] == ("dropped", ["dropped"])
    assert states[ids[1]] == ("delivered", ["duplicated x3"])
    assert states[ids[2]][1] == ["reordered"]


async def test_the_delay_knob_holds_a_powens_delivery_on_the_clock(sim: Harness) -> None:
    payment_id = (await sim.powens.create())["id"]
    await sim.control("POST", "/faults", {"webhook_delay": {"count": 1, "seconds": 120}})
    await sim.powens.set_state(payment_id, state="done")
    await sim.flush()
    assert powens_received(sim) == []
    await sim.advance(120)
    await sim.flush()
    [received] = powens_received(sim)
    _, sent_at = verify_powens_webhook(
        received.headers, received.body, path=PATH, secret=POWENS_CLIENTS["shop"].webhook_secret
    )
    assert sent_at == START + timedelta(seconds=120)


async def test_both_providers_share_the_delivery_list(sim: Harness) -> None:
    session_id = (await sim.connect())["meta"]["session_id"]
    await sim.complete(session_id, "confirm")
    payment_id = await paid(sim)
    await sim.flush()
    everything = await sim.deliveries()
    assert {d["provider"] for d in everything} == {"fintecture", "powens"}
    assert [d["session_id"] for d in await sim.deliveries(provider="fintecture")] == [session_id]
    assert {d["session_id"] for d in await sim.deliveries(provider="powens")} == {str(payment_id)}
    assert len(await sim.deliveries(app_id=POWENS_CLIENTS["shop"].client_id)) == 2


async def test_clients_without_a_webhook_url_get_none(make_sim: SimFactory) -> None:
    shop = POWENS_CLIENTS["shop"]
    quiet = powens_config(shop)
    quiet.webhook_url = None
    async with make_sim(powens_applications=[quiet]) as sim:
        await paid(sim)
        await sim.flush()
        assert sim.receiver.received == [] and await sim.deliveries() == []
