"""Immediate Transfer end to end: storefront -> service -> simulator (Connect page, webhooks) ->
/callback and /webhook -> PostgreSQL, everything over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from app.models import IdempotencyKey, OrderTransition, PaymentSession, ProviderEvent
from tests.e2e.conftest import STOREFRONT, Stack, StackFactory, form_action_and_fields, query_of


async def test_happy_path_through_the_connect_page(stack: Stack) -> None:
    order, session = await stack.paying_order()
    assert session["status"] == "awaiting_payment"
    # The provider's webhooks wait on the simulator's clock, so the payer's return is applied first.
    await stack.faults(webhook_delay={"count": 10, "seconds": 120})

    page = await stack.http.get(session["connect_url"])
    assert page.status_code == 200
    action, fields = form_action_and_fields(page.text)
    submit_url = httpx.URL(session["connect_url"]).join(action)
    submitted = await stack.http.post(str(submit_url), data={**fields, "outcome": "confirm"})
    assert submitted.status_code == 303
    back = submitted.headers["location"]
    assert back.startswith(f"{stack.service_url}/callback?")
    assert query_of(back)["status"] == "payment_created"

    result = await stack.follow_callback(back)
    assert result.status_code == 303
    assert result.headers["location"].startswith(STOREFRONT)
    assert query_of(result.headers["location"]) == {"order_id": order["id"], "status": "paid"}

    await stack.advance_clock(120)
    await stack.settle()  # the provider's webhooks arrive too, and change nothing
    assert await stack.count(ProviderEvent) >= 1
    assert await stack.order_status(order["id"]) == "paid"
    assert await stack.transitions(order["id"]) == [
        (None, "pending", "api"),
        ("pending", "awaiting_payment", "api"),
        ("awaiting_payment", "paid", "callback"),
    ]
    async with stack.sessionmaker() as db:
        row = await db.get(PaymentSession, uuid.UUID(session["session_id"]))
        assert row is not None
        assert (row.provider_status, row.transfer_state, row.bank_provider) == (
            "payment_created",
            "completed",
            "ftecfr",
        )


async def test_rejected_payment_fails_the_order_and_a_new_session_may_follow(stack: Stack) -> None:
    order, session = await stack.paying_order()
    back = await stack.complete(session["provider_session_id"], "reject")
    result = await stack.follow_callback(back)
    assert query_of(result.headers["location"])["status"] == "failed"
    assert await stack.order_status(order["id"]) == "failed"

    retry = await stack.open_session(order)
    assert retry.status_code == 201
    assert retry.json()["provider_session_id"] != session["provider_session_id"]
    assert await stack.order_status(order["id"]) == "awaiting_payment"


async def test_abandoned_payment_returns_to_the_shop_and_leaves_the_order_open(stack: Stack) -> None:
    order, session = await stack.paying_order()
    back = await stack.complete(session["provider_session_id"], "abandon")
    assert back.startswith(STOREFRONT)  # origin_uri: straight to the shop, no callback
    await stack.settle()
    assert await stack.order_status(order["id"]) == "awaiting_payment"
    again = await stack.open_session(order)
    assert again.status_code == 200  # the same session is still open: no second one
    assert again.json()["session_id"] == session["session_id"]


async def test_pending_then_settled_by_webhook_only(stack: Stack) -> None:
    order, session = await stack.paying_order()
    psid = session["provider_session_id"]
    await stack.complete(psid, "pending")  # the payer closes the browser: no callback ever
    await stack.settle()
    assert await stack.order_status(order["id"]) == "processing"

    await stack.drive(psid, "payment_created", "completed")  # the bank settles later
    await stack.settle()
    assert await stack.order_status(order["id"]) == "paid"
    assert await stack.transitions(order["id"]) == [
        (None, "pending", "api"),
        ("pending", "awaiting_payment", "api"),
        ("awaiting_payment", "processing", "webhook"),
        ("processing", "paid", "webhook"),
    ]


async def test_callback_only_when_every_webhook_is_dropped(stack: Stack) -> None:
    order, session = await stack.paying_order()
    await stack.faults(webhook_drop={"count": 100})
    back = await stack.complete(session["provider_session_id"], "confirm")
    await stack.settle()
    assert await stack.count(ProviderEvent) == 0
    result = await stack.follow_callback(back)
    assert query_of(result.headers["location"])["status"] == "paid"
    assert [t[2] for t in await stack.transitions(order["id"])] == ["api", "api", "callback"]


async def test_provider_down_during_callback_then_the_sweeper_completes(stack: Stack) -> None:
    order, session = await stack.paying_order()
    await stack.faults(webhook_drop={"count": 100})
    back = await stack.complete(session["provider_session_id"], "confirm")
    await stack.faults(api_error={"status": 503, "count": 50, "path_prefix": "/pis/v2/payments"})

    result = await stack.follow_callback(back)
    assert result.status_code == 303  # never a 500 for the payer
    assert query_of(result.headers["location"]) == {"order_id": order["id"], "status": "processing"}
    assert await stack.order_status(order["id"]) == "awaiting_payment"

    await stack.faults(api_error={"status": 503, "count": 0})
    await stack.sweep()
    assert await stack.order_status(order["id"]) == "paid"
    assert (await stack.transitions(order["id"]))[-1] == ("awaiting_payment", "paid", "poll")


async def test_twenty_duplicate_deliveries_make_one_transition(stack: Stack) -> None:
    order, session = await stack.paying_order()
    await stack.faults(webhook_duplicate={"count": 1, "copies": 20})
    await stack.drive(session["provider_session_id"], "payment_created", "completed")
    await stack.settle()
    deliveries = await stack.deliveries(session["provider_session_id"])
    assert sum(len(d["attempts"]) for d in deliveries) >= 20
    assert await stack.count(ProviderEvent) == 1  # one inbox row per delivery id
    assert await stack.order_status(order["id"]) == "paid"
    assert await stack.count(OrderTransition, OrderTransition.to_status == "paid") == 1


async def test_out_of_order_webhooks_never_downgrade_paid(stack: Stack) -> None:
    order, session = await stack.paying_order()
    psid = session["provider_session_id"]
    await stack.faults(webhook_reorder={"count": 3})
    await stack.drive(psid, "sca_required")
    await stack.drive(psid, "payment_pending", "pending")
    await stack.drive(psid, "payment_created", "completed")
    await stack.settle()
    assert await stack.order_status(order["id"]) == "paid"
    # A late, genuine delivery about an earlier status: a hint, re-checked, nothing moves.
    await stack.faults(webhook_delay={"count": 1, "seconds": 1})
    await stack.drive(psid, "payment_created", "completed")
    await stack.http.post(f"{stack.simulator_url}/_sim/clock/advance", json={"seconds": 2})
    await stack.settle()
    statuses = [t[1] for t in await stack.transitions(order["id"])]
    assert statuses[-1] == "paid" and statuses.count("paid") == 1


async def test_callback_and_webhook_racing_make_exactly_one_transition_each_round(stack: Stack) -> None:
    for _ in range(100):
        order, session = await stack.paying_order()
        back = await stack.complete(session["provider_session_id"], "confirm")  # the webhook leaves now
        callback = await stack.follow_callback(back)
        assert query_of(callback.headers["location"])["status"] == "paid"
        await stack.settle()
        paid = await stack.count(
            OrderTransition,
            OrderTransition.order_id == uuid.UUID(order["id"]),
            OrderTransition.to_status == "paid",
        )
        assert paid == 1


async def test_many_rounds_racing_concurrently(stack: Stack) -> None:
    rounds = [await stack.paying_order() for _ in range(20)]
    backs = await asyncio.gather(*(stack.complete(s["provider_session_id"], "confirm") for _, s in rounds))
    await asyncio.gather(*(stack.follow_callback(b) for b in backs), stack.settle())
    await stack.settle()
    for order, _ in rounds:
        assert [t[1] for t in await stack.transitions(order["id"])] == ["pending", "awaiting_payment", "paid"]


async def test_forged_callback_status_changes_nothing(stack: Stack) -> None:
    order, session = await stack.paying_order()
    await stack.faults(webhook_drop={"count": 100})
    back = await stack.complete(session["provider_session_id"], "pending")
    forged = back.replace("status=payment_pending", "status=payment_created")
    assert "status=payment_created" in forged
    result = await stack.follow_callback(forged)
    assert query_of(result.headers["location"])["status"] == "processing"  # what the provider says
    assert await stack.order_status(order["id"]) == "processing"


async def test_another_orders_session_id_with_this_state_is_rejected_without_a_write(stack: Stack) -> None:
    mine, my_session = await stack.paying_order()
    theirs, their_session = await stack.paying_order()
    await stack.faults(webhook_drop={"count": 100})
    back = await stack.complete(my_session["provider_session_id"], "confirm")
    await stack.complete(their_session["provider_session_id"], "confirm")
    before = await stack.table_counts()
    swapped = back.replace(my_session["provider_session_id"], their_session["provider_session_id"])
    for url in (
        swapped,
        back.replace("state=", "state=x"),
        f"{stack.service_url}/callback",
        f"{stack.service_url}/callback?state=&session_id={my_session['provider_session_id']}",
    ):
        result = await stack.follow_callback(url)
        assert result.status_code == 400
        assert "could not recognise this payment link" in result.text
    assert await stack.table_counts() == before
    assert await stack.order_status(mine["id"]) == "awaiting_payment"
    assert await stack.order_status(theirs["id"]) == "awaiting_payment"


async def test_double_click_opens_one_provider_session(stack: Stack) -> None:
    order = await stack.create_order()
    responses = await asyncio.gather(*(stack.open_session(order) for _ in range(5)))
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 200, 201]
    assert len({r.json()["provider_session_id"] for r in responses}) == 1
    assert await stack.count(PaymentSession) == 1
    connects = [r for r in await stack.api_requests() if r["path"].startswith("/pis/v2/connect")]
    assert len(connects) == 1


async def test_session_carries_order_amount_reference_and_payer(stack: Stack) -> None:
    order, session = await stack.paying_order()
    raw = (
        await stack.http.get(f"{stack.simulator_url}/_sim/sessions/{session['provider_session_id']}")
    ).json()
    flat = str(raw)
    assert "273.50" in flat
    assert order["reference"] in flat
    assert "camille@example.com" in flat


async def test_strict_provider_accepts_every_signed_request(stack_factory: StackFactory) -> None:
    stack = await stack_factory(mode="strict")
    _order, session = await stack.paying_order()
    back = await stack.complete(session["provider_session_id"], "confirm")
    assert query_of((await stack.follow_callback(back)).headers["location"])["status"] == "paid"
    await stack.settle()  # the webhook worker's own reads have finished too
    api_calls = await stack.api_requests()
    paths = {call["path"] for call in api_calls}
    assert {
        "/oauth/accesstoken",
        "/pis/v2/connect",
        f"/pis/v2/payments/{session['provider_session_id']}",
    } <= paths
    for call in api_calls:
        assert call["signed"] and call["verified"], call
        assert call["status_code"] < 400, call


async def test_payment_session_idempotency_key(stack: Stack) -> None:
    order = await stack.create_order()
    headers = {"Authorization": f"Bearer {order['access_token']}", "Idempotency-Key": "pay-once-123"}
    url = f"{stack.service_url}/orders/{order['id']}/payment-session"
    first = await stack.http.post(url, headers=headers, json={"language": "fr"})
    again = await stack.http.post(url, headers=headers, json={"language": "fr"})
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    other = await stack.http.post(url, headers=headers, json={"language": "de"})
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert await stack.count(PaymentSession) == 1
    # The key's stored answer (the payer's page) is never replayed to another order's bearer.
    stranger = await stack.create_order()
    replay = await stack.http.post(
        url,
        headers={"Authorization": f"Bearer {stranger['access_token']}", "Idempotency-Key": "pay-once-123"},
        json={"language": "fr"},
    )
    assert replay.status_code == 404
    assert replay.json()["error"]["code"] == "not_found"
    assert "Idempotent-Replayed" not in replay.headers


async def test_payment_session_needs_the_orders_own_token(stack: Stack) -> None:
    order = await stack.create_order()
    other = await stack.create_order()
    before = await stack.table_counts()
    wrong = {"Authorization": f"Bearer {other['access_token']}"}
    for headers, body in (
        ({}, {}),
        (wrong, {}),
        ({"Authorization": "Bearer nope"}, {}),
        # A key's replay and an unknown provider's 422 are answered only to the order's bearer.
        ({**wrong, "Idempotency-Key": "k-404"}, {}),
        (wrong, {"provider": "nopay"}),
    ):
        response = await stack.http.post(
            f"{stack.service_url}/orders/{order['id']}/payment-session", headers=headers, json=body
        )
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    bad = await stack.open_session(order, bank_id="not a bank id!")
    assert bad.status_code == 422
    assert await stack.table_counts() == before
    assert await stack.count(IdempotencyKey) == 0
    assert await stack.api_requests() == []  # nothing reached the provider


async def test_paid_order_cannot_open_another_session(stack: Stack) -> None:
    order, session = await stack.paying_order()
    await stack.follow_callback(await stack.complete(session["provider_session_id"], "confirm"))
    again = await stack.open_session(order)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "order_not_payable"


async def test_slow_provider_during_callback_shows_processing_then_the_sweeper_completes(
    stack_factory: StackFactory,
) -> None:
    stack = await stack_factory(callback_provider_timeout_seconds=0.3)
    order, session = await stack.paying_order()
    await stack.faults(webhook_drop={"count": 100})
    back = await stack.complete(session["provider_session_id"], "confirm")
    await stack.faults(api_latency={"seconds": 1.5, "count": 1, "path_prefix": "/pis/v2/payments"})
    result = await stack.follow_callback(back)
    assert result.status_code == 303
    assert query_of(result.headers["location"]) == {"order_id": order["id"], "status": "processing"}
    assert await stack.order_status(order["id"]) == "awaiting_payment"
    await stack.sweep()
    assert await stack.order_status(order["id"]) == "paid"


async def test_the_enabled_providers_are_listed_for_the_storefront(stack: Stack) -> None:
    response = await stack.http.get(f"{stack.service_url}/providers")
    assert response.status_code == 200
    assert response.json() == {
        "items": [
            {
                "name": "fintecture",
                "display_name": "Fintecture",
                "default": True,
                "capabilities": {"pay_in": True, "refund": True, "payout": True, "cancel": True},
            }
        ]
    }
    order = await stack.create_order()
    unknown = await stack.open_session(order, provider="nopay")
    assert unknown.status_code == 422
    assert unknown.json()["error"]["code"] == "provider_not_enabled"
    assert await stack.order_status(order["id"]) == "pending"
    assert await stack.count(PaymentSession) == 0
