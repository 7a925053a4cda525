"""Operator refunds end to end: service -> simulator (POST /pis/v2/refund, the refund session, its
webhooks) -> inbox / sweeper / sync -> the writer -> PostgreSQL, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import httpx

from app.models import OrderTransition, ProviderEvent, Refund
from app.providers.base import Capabilities, Provider
from tests.e2e.conftest import Stack

PAID = 27350  # two lamps at 136.75 EUR


async def paid_order(stack: Stack) -> tuple[dict[str, Any], dict[str, Any]]:
    order, session = await stack.paying_order()
    back = await stack.complete(session["provider_session_id"], "confirm")
    await stack.follow_callback(back)
    await stack.settle()
    assert await stack.order_status(order["id"]) == "paid"
    return order, session


async def refund(stack: Stack, order: dict[str, Any], key: str | None = None, **body: Any) -> httpx.Response:
    headers = dict(stack.admin)
    if key is not None:
        headers["Idempotency-Key"] = key
    return await stack.http.post(
        f"{stack.service_url}/orders/{order['id']}/refunds", headers=headers, json=body
    )


async def refunds_of(stack: Stack, order: dict[str, Any]) -> list[dict[str, Any]]:
    response = await stack.http.get(f"{stack.service_url}/orders/{order['id']}/refunds", headers=stack.admin)
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


async def refund_transitions(
    stack: Stack, order_id: str
) -> list[tuple[str | None, str, str, uuid.UUID | None]]:
    async with stack.sessionmaker() as db:
        rows = await db.execute(
            OrderTransition.__table__.select()
            .where(OrderTransition.order_id == uuid.UUID(order_id), OrderTransition.refund_id.is_not(None))
            .order_by(OrderTransition.id)
        )
        return [(r.from_status, r.to_status, r.source, r.refund_id) for r in rows]


async def complete_refund(stack: Stack, provider_refund_id: str) -> None:
    """The merchant confirms the refund at the provider (an external account: reverse PIS)."""
    await stack.drive(provider_refund_id, "payment_created", "completed")
    await stack.settle()


async def provider_refund_calls(stack: Stack) -> list[dict[str, Any]]:
    return [r for r in await stack.api_requests() if r["path"].startswith("/pis/v2/refund")]


async def test_full_refund_by_default_lands_through_the_webhook(stack: Stack) -> None:
    order, session = await paid_order(stack)
    created = await refund(stack, order, reason="customer changed their mind")
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["amount"] == PAID and body["currency"] == "EUR"
    assert body["status"] == "open"  # refund_waiting: the merchant confirms it at the provider
    assert body["provider_status"] == "refund_waiting"
    assert body["payment_session_id"] == session["session_id"]
    assert await stack.order_status(order["id"]) == "paid"

    sim = (await stack.http.get(f"{stack.simulator_url}/_sim/sessions/{body['provider_refund_id']}")).json()
    assert "273.50" in str(sim)

    await complete_refund(stack, body["provider_refund_id"])
    assert await stack.order_status(order["id"]) == "refunded"
    [listed] = await refunds_of(stack, order)
    assert (listed["status"], listed["provider_status"], listed["transfer_state"]) == (
        "succeeded",
        "payment_created",
        "completed",
    )
    assert await refund_transitions(stack, order["id"]) == [
        ("paid", "refunded", "webhook", uuid.UUID(body["id"]))
    ]
    # Nothing left to refund.
    again = await refund(stack, order, amount=1)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "order_not_refundable"


async def test_two_partial_refunds_make_a_refunded_order(stack: Stack) -> None:
    order, _ = await paid_order(stack)
    first = await refund(stack, order, amount=10000, reason="one lamp returned")
    assert first.status_code == 201, first.text
    await complete_refund(stack, first.json()["provider_refund_id"])
    assert await stack.order_status(order["id"]) == "partially_refunded"

    rest = await refund(stack, order)  # no amount: the rest of what was paid
    assert rest.status_code == 201, rest.text
    assert rest.json()["amount"] == PAID - 10000
    await complete_refund(stack, rest.json()["provider_refund_id"])
    assert await stack.order_status(order["id"]) == "refunded"
    assert [t[:3] for t in await refund_transitions(stack, order["id"])] == [
        ("paid", "partially_refunded", "webhook"),
        ("partially_refunded", "refunded", "webhook"),
    ]
    assert [r["amount"] for r in await refunds_of(stack, order)] == [10000, PAID - 10000]


async def test_over_refund_unpaid_order_and_wrong_currency_write_nothing(stack: Stack) -> None:
    order, _ = await paid_order(stack)
    before = await stack.table_counts()
    over = await refund(stack, order, amount=PAID + 1)
    assert over.status_code == 409
    assert over.json()["error"]["code"] == "refund_exceeds_payment"
    assert over.json()["error"]["message"]
    other_currency = await refund(stack, order, amount=100, currency="GBP")
    assert other_currency.status_code == 422
    assert other_currency.json()["error"]["code"] == "currency_mismatch"
    for bad in ({"amount": 0}, {"amount": -5}, {"reason": "x" * 141}, {"amount": "12.50"}):
        invalid = await refund(stack, order, **bad)
        assert invalid.status_code == 422, bad
        assert invalid.json()["error"]["code"] == "validation_error"

    unpaid, _session = await stack.paying_order()
    not_paid = await refund(stack, unpaid, amount=100)
    assert not_paid.status_code == 409
    assert not_paid.json()["error"]["code"] == "order_not_refundable"
    pending = await stack.create_order()
    assert (await refund(stack, pending)).json()["error"]["code"] == "order_not_refundable"

    no_key = await stack.http.post(f"{stack.service_url}/orders/{order['id']}/refunds", json={"amount": 1})
    assert no_key.status_code == 401
    store_token = await stack.http.post(
        f"{stack.service_url}/orders/{order['id']}/refunds",
        headers={"Authorization": f"Bearer {order['access_token']}"},
        json={"amount": 1},
    )
    assert store_token.status_code == 401  # the storefront's token never refunds

    after = await stack.table_counts()
    assert after["order_transitions"] == before["order_transitions"] + 3  # the two new orders only
    assert await stack.count(Refund) == 0
    assert await provider_refund_calls(stack) == []


async def test_concurrent_refunds_never_exceed_what_was_paid(stack: Stack) -> None:
    order, _ = await paid_order(stack)
    responses = await asyncio.gather(*(refund(stack, order, amount=3000) for _ in range(20)))
    codes = sorted(r.status_code for r in responses)
    assert codes.count(201) == PAID // 3000  # 9 fit in 273.50, the others are refused
    refused = [r.json()["error"]["code"] for r in responses if r.status_code != 201]
    assert set(refused) == {"refund_exceeds_payment"}
    async with stack.sessionmaker() as db:
        from sqlalchemy import func, select

        total = await db.scalar(
            select(func.sum(Refund.amount)).where(Refund.order_id == uuid.UUID(order["id"]))
        )
    assert total == 27000
    assert len(await provider_refund_calls(stack)) == 9
    sim = await stack.http.get(
        f"{stack.simulator_url}/_sim/sessions/{(await refunds_of(stack, order))[0]['provider_refund_id']}"
    )
    assert sim.status_code == 200
    for response in responses:
        if response.status_code == 201:
            await stack.drive(response.json()["provider_refund_id"], "payment_created", "completed")
    await stack.settle()
    assert await stack.order_status(order["id"]) == "partially_refunded"
    last = await refund(stack, order)
    assert last.status_code == 201 and last.json()["amount"] == PAID - 27000
    await complete_refund(stack, last.json()["provider_refund_id"])
    assert await stack.order_status(order["id"]) == "refunded"


async def test_a_refund_webhook_is_applied_exactly_once(stack: Stack) -> None:
    order, _ = await paid_order(stack)
    created = (await refund(stack, order, amount=5000)).json()
    refund_id = created["provider_refund_id"]
    await complete_refund(stack, refund_id)
    events = await stack.count(ProviderEvent, ProviderEvent.provider_session_id == refund_id)
    assert events >= 1
    assert (
        await stack.count(
            ProviderEvent, ProviderEvent.provider_session_id == refund_id, ProviderEvent.outcome == "applied"
        )
        == events
    )
    # Every other path reads the same refund again: nothing moves twice.
    await stack.sweep()
    sync = await stack.http.post(f"{stack.service_url}/orders/{order['id']}/sync", headers=stack.admin)
    assert sync.status_code == 200
    await stack.settle()
    assert await refund_transitions(stack, order["id"]) == [
        ("paid", "partially_refunded", "webhook", uuid.UUID(created["id"]))
    ]


async def test_sweeper_and_sync_complete_a_refund_whose_webhook_was_lost(stack: Stack) -> None:
    order, _ = await paid_order(stack)
    first = (await refund(stack, order, amount=5000)).json()
    second = (await refund(stack, order)).json()
    await stack.faults(webhook_drop={"count": 100})
    await stack.drive(first["provider_refund_id"], "payment_created", "completed")
    await stack.drive(second["provider_refund_id"], "payment_created", "completed")
    await stack.sweep()
    assert await stack.order_status(order["id"]) == "refunded"
    assert [t[2] for t in await refund_transitions(stack, order["id"])] == ["poll", "poll"]


async def test_operator_sync_reads_open_refunds(stack: Stack) -> None:
    order, _ = await paid_order(stack)
    created = (await refund(stack, order)).json()
    await stack.faults(webhook_drop={"count": 100})
    await stack.drive(created["provider_refund_id"], "payment_created", "completed")
    sync = await stack.http.post(f"{stack.service_url}/orders/{order['id']}/sync", headers=stack.admin)
    assert sync.status_code == 200, sync.text
    assert sync.json()["refunds_synced"] == 1
    assert sync.json()["status"] == "refunded"
    assert [t[2] for t in await refund_transitions(stack, order["id"])] == ["operator"]


async def test_a_refund_cancelled_at_the_provider_is_no_longer_counted(stack: Stack) -> None:
    order, _ = await paid_order(stack)
    created = (await refund(stack, order)).json()
    assert (await refund(stack, order, amount=1)).json()["error"]["code"] == "nothing_to_refund"
    await stack.drive(created["provider_refund_id"], "payment_cancelled")
    await stack.settle()
    assert (await refunds_of(stack, order))[0]["status"] == "cancelled"
    assert await stack.order_status(order["id"]) == "paid"
    assert (await refund(stack, order, amount=1)).status_code == 201


async def test_idempotent_replay_returns_the_same_refund(stack: Stack) -> None:
    order, _ = await paid_order(stack)
    first = await refund(stack, order, key="refund-once-1", amount=2500)
    again = await refund(stack, order, key="refund-once-1", amount=2500)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    other = await refund(stack, order, key="refund-once-1", amount=2600)
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    # The same key at once from many operators' clicks: still one refund.
    burst = await asyncio.gather(*(refund(stack, order, key="refund-once-2", amount=100) for _ in range(5)))
    assert {r.status_code for r in burst} <= {201, 409}
    assert len({r.json()["id"] for r in burst if r.status_code == 201}) == 1
    assert await stack.count(Refund) == 2
    assert len(await provider_refund_calls(stack)) == 2


async def test_a_payment_account_refunds_at_once_once_funds_are_received(stack: Stack) -> None:
    stack.simulator.state.fintecture.config.applications[0].acquiring_account = True
    order, session = await paid_order(stack)  # transfer_state completed, not received
    refused = await refund(stack, order, amount=1000)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "refund_refused"
    [failed] = await refunds_of(stack, order)
    assert failed["status"] == "failed" and "refund_aborted" in failed["last_error"]

    await stack.drive(session["provider_session_id"], "payment_created", "received")
    await stack.settle()
    accepted = await refund(stack, order, amount=1000)
    assert accepted.status_code == 201, accepted.text
    assert (accepted.json()["status"], accepted.json()["provider_status"]) == (
        "processing",
        "refund_accepted",
    )
    # The provider executed it at once; its webhook may overtake our own commit: it is retried.
    assert await stack.wait_for_status(order["id"], "partially_refunded", timeout=15) == "partially_refunded"


class _NoRefunds:
    """The real adapter, told it cannot refund (as Powens Pay)."""

    def __init__(self, inner: Provider) -> None:
        self._inner = inner
        self.name = inner.name
        self.capabilities = Capabilities(pay_in=True, refund=False)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_a_provider_that_cannot_refund_answers_not_supported(stack: Stack) -> None:
    order, _ = await paid_order(stack)
    providers = stack.service.state.providers
    real = providers["fintecture"]
    providers["fintecture"] = _NoRefunds(real)
    try:
        response = await refund(stack, order, amount=Decimal(1000).__int__())
    finally:
        providers["fintecture"] = real
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_supported"
    assert await stack.count(Refund) == 0
    assert await provider_refund_calls(stack) == []
    assert await stack.order_status(order["id"]) == "paid"
